#include "model/forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "quant/types.h"
#include "util/error.h"
#include "util/fp16.h"
#include "util/thread_pool.h"

namespace muse {

namespace {

// One input to several matrices (q, k and v read the same normed rows): quantized once for
// each activation format those matrices need, into buffers the pass keeps.
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

void add_bias(float* y, const std::vector<float>& b, int rows, int dim) {
  if (b.empty()) return;
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < dim; ++j) y[size_t(i) * dim + j] += b[j];
}

}  // namespace

BatchForward::BatchForward(const Model& model, ThreadPool& pool, int max_tokens, int max_ctx)
    : model_(model),
      c_(model.config()),
      pool_(pool),
      max_tokens_(std::max(1, max_tokens)),
      max_ctx_(std::max(1, max_ctx)),
      rope_(c_.n_rot, c_.rope_base, c_.rope_freq_scale, c_.rope_style, model.rope_freq_factors()) {
  const size_t B = size_t(max_tokens_);
  x_.resize(B * c_.n_embd);
  xn_.resize(B * std::max(c_.n_embd, c_.n_head * c_.head_dim_v));
  q_.resize(B * c_.q_dim());
  k_.resize(B * c_.kv_dim());
  v_.resize(B * c_.v_dim());
  attn_.resize(B * c_.n_head * c_.head_dim_v);
  gate_.resize(B * c_.n_ff);
  up_.resize(B * c_.n_ff);
  tmp_.resize(B * c_.n_embd);
  scores_.resize(size_t(pool.size()) * max_ctx_);
  rows_.resize(size_t(pool.size()) * std::max(c_.head_dim, c_.head_dim_v));
  rope_cos_.resize(B * rope_.pairs());
  rope_sin_.resize(B * rope_.pairs());
}

// Causal attention of every batch token over its own sequence's cached positions 0..pos.
void BatchForward::attention(int layer, const std::vector<BatchToken>& batch, const KvPool& kv,
                             const std::vector<const KvSequence*>& sequences) {
  const int hd = c_.head_dim, hdv = c_.head_dim_v, group = c_.n_head / c_.n_head_kv;
  const float scale = 1.0f / std::sqrt(float(hd));
  const KernelSet& kern = kernels();
  const int bt = kv.block_tokens();
  const KvType type = kv.config().type;
  const size_t k_row = kv.k_row_bytes(), v_row = kv.v_row_bytes();
  // Byte offset of a head's slice within a row.
  auto head_offset = [&](int head, int dim) -> size_t {
    switch (type) {
      case KvType::kF16: return size_t(head) * dim * 2;
      case KvType::kF32: return size_t(head) * dim * 4;
      case KvType::kQ8_0: return size_t(head) * dim / 32 * sizeof(BlockQ8_0);
    }
    return 0;
  };
  const int n = int(batch.size());
  pool_.parallel_for(int64_t(n) * c_.n_head, [&](int64_t task, int thread) {
    const int i = int(task / c_.n_head), h = int(task % c_.n_head);
    const int kvh = h / group;
    const KvSequence& seq = *sequences[size_t(batch[size_t(i)].seq)];
    const int n_keys = batch[size_t(i)].pos + 1;
    const float* q_row = q_.data() + size_t(i) * c_.q_dim() + size_t(h) * hd;
    float q[1024];
    // With an F16 cache, products are taken at F16 input precision (q and the attention
    // weights rounded to F16), as llama.cpp computes them: this keeps logits within 1e-3 of
    // the reference on F32 models instead of 5e-3.
    const bool f16 = type == KvType::kF16;
    for (int d = 0; d < hd; ++d) q[d] = f16 ? round_to_fp16(q_row[d]) : q_row[d];
    float* s = scores_.data() + size_t(thread) * max_ctx_;
    float* row = rows_.data() + size_t(thread) * std::max(hd, hdv);
    const size_t k_off = head_offset(kvh, hd), v_off = head_offset(kvh, hdv);
    for (int j = 0; j < n_keys; ++j) {
      const uint8_t* k = kv.keys(seq.blocks()[size_t(j / bt)], layer) + size_t(j % bt) * k_row + k_off;
      float dot = 0;
      if (f16) {
        dot = kern.dot_f16(q, reinterpret_cast<const uint16_t*>(k), hd);
      } else {
        const float* kf = reinterpret_cast<const float*>(k);
        if (type == KvType::kQ8_0) {
          dequantize_row(GgmlType::Q8_0, k, row, hd);
          kf = row;
        }
        for (int d = 0; d < hd; ++d) dot += q[d] * kf[d];
      }
      s[j] = dot * scale;
    }
    softmax(s, n_keys);
    if (f16)
      for (int j = 0; j < n_keys; ++j) s[j] = round_to_fp16(s[j]);
    float* out = attn_.data() + size_t(i) * c_.n_head * hdv + size_t(h) * hdv;
    std::fill(out, out + hdv, 0.0f);
    for (int j = 0; j < n_keys; ++j) {
      const uint8_t* v = kv.values(seq.blocks()[size_t(j / bt)], layer) + size_t(j % bt) * v_row + v_off;
      if (f16) {
        kern.axpy_f16(s[j], reinterpret_cast<const uint16_t*>(v), out, hdv);
        continue;
      }
      const float* vf = reinterpret_cast<const float*>(v);
      if (type == KvType::kQ8_0) {
        dequantize_row(GgmlType::Q8_0, v, row, hdv);
        vf = row;
      }
      for (int d = 0; d < hdv; ++d) out[d] += s[j] * vf[d];
    }
  });
}

void BatchForward::run(const std::vector<BatchToken>& batch, KvPool& kv,
                       const std::vector<const KvSequence*>& sequences, float* logits) {
  const int n = int(batch.size());
  if (n == 0) return;
  if (n > max_tokens_) fail("batch of ", n, " tokens exceeds the pass's limit of ", max_tokens_);
  if (kv.config().type == KvType::kQ8_0 && (c_.head_dim % 32 || c_.head_dim_v % 32))
    fail("KV cache type q8_0 needs a head dimension that is a multiple of 32");
  for (const BatchToken& t : batch) {
    if (t.token < 0 || t.token >= c_.n_vocab) fail("token id ", t.token, " is outside the vocabulary");
    if (t.seq < 0 || size_t(t.seq) >= sequences.size()) fail("batch token refers to sequence ", t.seq);
    const KvSequence& s = *sequences[size_t(t.seq)];
    if (t.pos < 0 || t.pos >= max_ctx_ || size_t(t.pos / kv.block_tokens()) >= s.blocks().size())
      fail("position ", t.pos, " has no reserved KV slot");
  }
  const int E = c_.n_embd;
  const Matrix& emb = model_.token_embedding();
  for (int i = 0; i < n; ++i)
    dequantize_row(emb.type, emb.data + size_t(batch[size_t(i)].token) * emb.row_bytes(), x_.data() + size_t(i) * E, E);
  const int pairs = rope_.pairs();
  for (int i = 0; i < n; ++i)
    rope_.angles(batch[size_t(i)].pos, &rope_cos_[size_t(i) * pairs], &rope_sin_[size_t(i) * pairs]);

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
      const float* cs = &rope_cos_[size_t(i) * pairs];
      const float* sn = &rope_sin_[size_t(i) * pairs];
      rope_.rotate(q, c_.n_head, c_.head_dim, cs, sn);
      rope_.rotate(k, c_.n_head_kv, c_.head_dim, cs, sn);
      const BatchToken& t = batch[size_t(i)];
      const KvSequence& s = *sequences[size_t(t.seq)];
      kv.write(s.block_of(t.pos, kv), t.pos % kv.block_tokens(), l, k, &v_[size_t(i) * c_.v_dim()]);
    }
    attention(l, batch, kv, sequences);
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
  if (!logits) return;
  // The output head only for the tokens that asked.
  int m = 0;
  for (int i = 0; i < n; ++i)
    if (batch[size_t(i)].logits)
      rms_norm(&x_[size_t(i) * E], model_.output_norm().data(), &xn_[size_t(m++) * E], E, c_.rms_eps);
  if (m == 0) return;
  SharedInput head_in(xn_.data(), E, m, acts_, pool_);
  project(model_.output(), head_in, logits, pool_);
}

}  // namespace muse
