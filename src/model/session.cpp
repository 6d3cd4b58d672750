#include "model/session.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "util/error.h"
#include "util/fp16.h"
#include "util/thread_pool.h"

namespace muse {

Session::Session(const Model& model, ThreadPool& pool, SessionParams params)
    : model_(model),
      c_(model.config()),
      pool_(pool),
      n_ctx_(std::max(1, std::min(params.n_ctx, model.config().n_ctx_train))),
      n_batch_(std::max(1, params.n_batch)),
      rope_(c_.n_rot, c_.rope_base, c_.rope_freq_scale, c_.rope_style, model.rope_freq_factors()) {
  k_cache_.assign(c_.n_layer, std::vector<uint16_t>(size_t(n_ctx_) * c_.kv_dim()));
  v_cache_.assign(c_.n_layer, std::vector<uint16_t>(size_t(n_ctx_) * c_.v_dim()));
  const size_t B = n_batch_;
  x_.resize(B * c_.n_embd);
  xn_.resize(B * std::max(c_.n_embd, c_.n_head * c_.head_dim_v));
  q_.resize(B * c_.q_dim());
  k_.resize(B * c_.kv_dim());
  v_.resize(B * c_.v_dim());
  attn_.resize(B * c_.n_head * c_.head_dim_v);
  gate_.resize(B * c_.n_ff);
  up_.resize(B * c_.n_ff);
  tmp_.resize(B * c_.n_embd);
  scores_.resize(size_t(pool.size()) * n_ctx_);
  rope_cos_.resize(B * rope_.pairs());
  rope_sin_.resize(B * rope_.pairs());
}

namespace {

// One input to several matrices (q, k and v read the same normed rows): quantized once for
// each activation format those matrices need, into buffers the session keeps.
class SharedInput {
 public:
  SharedInput(const float* x, int ldx, int T, QuantizedActs (&slots)[3], ThreadPool& pool)
      : x_(x), ldx_(ldx), T_(T), slots_(slots), pool_(pool) {}
  const QuantizedActs& for_matrix(const Matrix& w) {
    const ActFormat fmt = act_format(w.type);
    const int i = int(fmt);
    if (!ready_[i]) {
      quantize_acts(x_, ldx_, T_, int(w.cols), fmt, slots_[i], &pool_);
      ready_[i] = true;
    }
    return slots_[i];
  }

 private:
  const float* x_;
  int ldx_, T_;
  QuantizedActs (&slots_)[3];
  ThreadPool& pool_;
  bool ready_[3] = {};
};

// y (rows of w.rows values) = w times each row of the input.
void project(const Matrix& w, SharedInput& in, float* y, ThreadPool& pool) {
  matmul_quantized(w, in.for_matrix(w), y, w.rows, pool);
}

}  // namespace

void Session::truncate(int n) {
  if (n < 0 || n > n_past_) fail("cannot truncate a session of ", n_past_, " positions to ", n);
  n_past_ = n;
}

void Session::forward(const int32_t* tokens, int n, float* logits, bool all_logits) {
  if (n <= 0) fail("forward needs at least one token");
  if (n_past_ + n > n_ctx_)
    fail("context is full: ", n_past_, " + ", n, " tokens exceed the context size ", n_ctx_);
  for (int i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= c_.n_vocab)
      fail("token id ", tokens[i], " is outside the vocabulary (0..", c_.n_vocab - 1, ")");
  for (int done = 0; done < n; done += n_batch_) {
    const int m = std::min(n_batch_, n - done);
    float* out = nullptr;
    if (all_logits) out = logits + size_t(done) * c_.n_vocab;
    else if (done + m == n) out = logits;
    forward_batch(tokens + done, m, out, all_logits);
  }
}

// Batched causal attention for n new tokens against the cache (which already holds them).
void Session::attention(int layer, int n) {
  const int hd = c_.head_dim, hdv = c_.head_dim_v, group = c_.n_head / c_.n_head_kv;
  const float scale = 1.0f / std::sqrt(float(hd));
  const KernelSet& kern = kernels();
  const uint16_t* kc = k_cache_[layer].data();
  const uint16_t* vc = v_cache_[layer].data();
  pool_.parallel_for(int64_t(n) * c_.n_head, [&](int64_t task, int thread) {
    const int i = int(task / c_.n_head), h = int(task % c_.n_head);
    const int kvh = h / group;
    const int n_keys = n_past_ + i + 1;
    // Products with the F16 cache are taken at F16 input precision (q and the attention
    // weights rounded to F16), as llama.cpp computes them: this keeps logits within 1e-3 of
    // the reference on F32 models instead of 5e-3.
    const float* q_row = q_.data() + size_t(i) * c_.q_dim() + size_t(h) * hd;
    float q[1024];
    for (int d = 0; d < hd; ++d) q[d] = round_to_fp16(q_row[d]);
    float* s = scores_.data() + size_t(thread) * n_ctx_;
    for (int j = 0; j < n_keys; ++j)
      s[j] = kern.dot_f16(q, kc + size_t(j) * c_.kv_dim() + size_t(kvh) * hd, hd) * scale;
    softmax(s, n_keys);
    for (int j = 0; j < n_keys; ++j) s[j] = round_to_fp16(s[j]);
    float* out = attn_.data() + size_t(i) * c_.n_head * hdv + size_t(h) * hdv;
    std::fill(out, out + hdv, 0.0f);
    for (int j = 0; j < n_keys; ++j)
      kern.axpy_f16(s[j], vc + size_t(j) * c_.v_dim() + size_t(kvh) * hdv, out, hdv);
  });
}

void Session::forward_batch(const int32_t* tokens, int n, float* logits, bool all_logits) {
  const int E = c_.n_embd;
  const Matrix& emb = model_.token_embedding();
  for (int i = 0; i < n; ++i)
    dequantize_row(emb.type, emb.data + size_t(tokens[i]) * emb.row_bytes(), x_.data() + size_t(i) * E, E);

  auto add_bias = [](float* y, const std::vector<float>& b, int rows, int dim) {
    if (b.empty()) return;
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < dim; ++j) y[size_t(i) * dim + j] += b[j];
  };
  const int pairs = rope_.pairs();
  for (int i = 0; i < n; ++i) rope_.angles(n_past_ + i, &rope_cos_[size_t(i) * pairs], &rope_sin_[size_t(i) * pairs]);

  for (int l = 0; l < c_.n_layer; ++l) {
    const LayerWeights& L = model_.layers()[l];
    for (int i = 0; i < n; ++i) rms_norm(&x_[size_t(i) * E], L.attn_norm.data(), &xn_[size_t(i) * E], E, c_.rms_eps);
    SharedInput attn_in(xn_.data(), E, n, acts_, pool_);
    project(L.wq, attn_in, q_.data(), pool_);
    project(L.wk, attn_in, k_.data(), pool_);
    project(L.wv, attn_in, v_.data(), pool_);
    add_bias(q_.data(), L.bq, n, c_.q_dim());
    add_bias(k_.data(), L.bk, n, c_.kv_dim());
    add_bias(v_.data(), L.bv, n, c_.v_dim());
    for (int i = 0; i < n; ++i) {
      float* q = &q_[size_t(i) * c_.q_dim()];
      float* k = &k_[size_t(i) * c_.kv_dim()];
      if (!L.q_norm.empty()) {
        for (int h = 0; h < c_.n_head; ++h) rms_norm(q + h * c_.head_dim, L.q_norm.data(), q + h * c_.head_dim, c_.head_dim, c_.rms_eps);
        for (int h = 0; h < c_.n_head_kv; ++h) rms_norm(k + h * c_.head_dim, L.k_norm.data(), k + h * c_.head_dim, c_.head_dim, c_.rms_eps);
      }
      const int64_t pos = n_past_ + i;
      const float* cs = &rope_cos_[size_t(i) * pairs];
      const float* sn = &rope_sin_[size_t(i) * pairs];
      rope_.rotate(q, c_.n_head, c_.head_dim, cs, sn);
      rope_.rotate(k, c_.n_head_kv, c_.head_dim, cs, sn);
      uint16_t* kc = &k_cache_[l][size_t(pos) * c_.kv_dim()];
      uint16_t* vc = &v_cache_[l][size_t(pos) * c_.v_dim()];
      for (int j = 0; j < c_.kv_dim(); ++j) kc[j] = float_to_fp16(k[j]);
      const float* v = &v_[size_t(i) * c_.v_dim()];
      for (int j = 0; j < c_.v_dim(); ++j) vc[j] = float_to_fp16(v[j]);
    }
    attention(l, n);
    const int A = c_.n_head * c_.head_dim_v;
    SharedInput out_in(attn_.data(), A, n, acts_, pool_);
    project(L.wo, out_in, tmp_.data(), pool_);
    for (size_t j = 0; j < size_t(n) * E; ++j) x_[j] += tmp_[j];

    for (int i = 0; i < n; ++i) rms_norm(&x_[size_t(i) * E], L.ffn_norm.data(), &xn_[size_t(i) * E], E, c_.rms_eps);
    SharedInput ffn_in(xn_.data(), E, n, acts_, pool_);
    project(L.w_gate, ffn_in, gate_.data(), pool_);
    project(L.w_up, ffn_in, up_.data(), pool_);
    swiglu(gate_.data(), up_.data(), n * c_.n_ff);
    SharedInput down_in(up_.data(), c_.n_ff, n, acts_, pool_);
    project(L.w_down, down_in, tmp_.data(), pool_);
    for (size_t j = 0; j < size_t(n) * E; ++j) x_[j] += tmp_[j];
  }
  n_past_ += n;
  if (!logits) return;

  // Logits for all n tokens, or only the last.
  const int first = all_logits ? 0 : n - 1;
  const int m = n - first;
  for (int i = first; i < n; ++i)
    rms_norm(&x_[size_t(i) * E], model_.output_norm().data(), &xn_[size_t(i - first) * E], E, c_.rms_eps);
  SharedInput head_in(xn_.data(), E, m, acts_, pool_);
  project(model_.output(), head_in, logits, pool_);
}

}  // namespace muse
