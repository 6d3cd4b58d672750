#include "model/model.h"

#include <algorithm>
#include <cstring>
#include <thread>

#include "ops/packed_weights.h"
#include "util/cpu.h"
#include "util/error.h"

namespace muse {
namespace {

class Loader {
 public:
  explicit Loader(const GgufFile& f) : f_(f) {}

  const GgufTensor& tensor(const std::string& name, std::initializer_list<int64_t> shape) {
    const GgufTensor* t = f_.find_tensor(name);
    if (!t) fail(f_.path(), ": missing tensor \"", name, "\"");
    check_shape(*t, shape);
    return *t;
  }
  const GgufTensor* optional(const std::string& name, std::initializer_list<int64_t> shape) {
    const GgufTensor* t = f_.find_tensor(name);
    if (t) check_shape(*t, shape);
    return t;
  }
  Matrix matrix(const std::string& name, int64_t cols, int64_t rows) {
    return to_matrix(tensor(name, {cols, rows}));
  }
  Matrix to_matrix(const GgufTensor& t) {
    if (!type_traits(t.type).computable)
      fail(f_.path(), ": tensor \"", t.name, "\" has type ", type_name(t.type), ", which Muse cannot compute with yet");
    return Matrix{t.type, t.data, t.ne[1], t.ne[0]};
  }
  std::vector<float> vec(const std::string& name, int64_t n) { return to_floats(tensor(name, {n})); }
  std::vector<float> optional_vec(const std::string& name, int64_t n) {
    const GgufTensor* t = optional(name, {n});
    return t ? to_floats(*t) : std::vector<float>();
  }

 private:
  void check_shape(const GgufTensor& t, std::initializer_list<int64_t> shape) {
    int d = 0;
    bool ok = true;
    for (int64_t n : shape) ok &= t.ne[d++] == n;
    for (; d < 4; ++d) ok &= t.ne[d] == 1;
    if (!ok) {
      std::string want = "[";
      for (int64_t n : shape) want += (want.size() > 1 ? ", " : "") + std::to_string(n);
      fail(f_.path(), ": tensor \"", t.name, "\" has shape ", t.shape(), ", expected ", want, "]");
    }
  }
  std::vector<float> to_floats(const GgufTensor& t) {
    if (!type_traits(t.type).computable) fail(f_.path(), ": tensor \"", t.name, "\" has unsupported type ", type_name(t.type));
    std::vector<float> v(t.elements());
    dequantize_row(t.type, t.data, v.data(), t.elements());
    return v;
  }
  const GgufFile& f_;
};

}  // namespace

std::unique_ptr<Model> Model::load(const std::string& path) { return from_file(GgufFile::open(path)); }

std::unique_ptr<Model> Model::from_file(std::unique_ptr<GgufFile> file) {
  std::unique_ptr<Model> m(new Model());
  m->file_ = std::move(file);
  const GgufFile& f = *m->file_;
  m->config_ = ModelConfig::from_gguf(f);
  const ModelConfig& c = m->config_;
  Loader L(f);

  m->tok_embd_ = L.to_matrix(L.tensor("token_embd.weight", {c.n_embd, c.n_vocab}));
  m->output_norm_ = L.vec("output_norm.weight", c.n_embd);
  if (const GgufTensor* out = L.optional("output.weight", {c.n_embd, c.n_vocab})) {
    m->output_ = L.to_matrix(*out);
  } else {
    m->output_ = m->tok_embd_;
    m->tied_output_ = true;
  }
  m->rope_freqs_ = L.optional_vec("rope_freqs.weight", c.n_rot / 2);

  m->layers_.resize(c.n_layer);
  for (int i = 0; i < c.n_layer; ++i) {
    LayerWeights& l = m->layers_[i];
    const std::string p = "blk." + std::to_string(i) + ".";
    l.attn_norm = L.vec(p + "attn_norm.weight", c.n_embd);
    l.wq = L.matrix(p + "attn_q.weight", c.n_embd, c.q_dim());
    l.wk = L.matrix(p + "attn_k.weight", c.n_embd, c.kv_dim());
    l.wv = L.matrix(p + "attn_v.weight", c.n_embd, c.v_dim());
    l.wo = L.matrix(p + "attn_output.weight", c.n_head * c.head_dim_v, c.n_embd);
    l.ffn_norm = L.vec(p + "ffn_norm.weight", c.n_embd);
    l.w_gate = L.matrix(p + "ffn_gate.weight", c.n_embd, c.n_ff);
    l.w_up = L.matrix(p + "ffn_up.weight", c.n_embd, c.n_ff);
    l.w_down = L.matrix(p + "ffn_down.weight", c.n_ff, c.n_embd);
    if (c.arch == Arch::kQwen2) {
      l.bq = L.vec(p + "attn_q.bias", c.q_dim());
      l.bk = L.vec(p + "attn_k.bias", c.kv_dim());
      l.bv = L.vec(p + "attn_v.bias", c.v_dim());
    } else {  // Some llama-family conversions carry biases too.
      l.bq = L.optional_vec(p + "attn_q.bias", c.q_dim());
      l.bk = L.optional_vec(p + "attn_k.bias", c.kv_dim());
      l.bv = L.optional_vec(p + "attn_v.bias", c.v_dim());
    }
    if (c.arch == Arch::kQwen3) {
      l.q_norm = L.vec(p + "attn_q_norm.weight", c.head_dim);
      l.k_norm = L.vec(p + "attn_k_norm.weight", c.head_dim);
    }
  }
  m->pack_weights();
  return m;
}

void Model::pack_weights() {
  const KernelSet& ks = kernels();
  std::vector<Matrix*> matrices;
  for (LayerWeights& l : layers_)
    for (Matrix* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down})
      matrices.push_back(w);
  matrices.push_back(&output_);
  // Float weights only where they all fit in the last-level cache: there the packed kernel is
  // compute-bound and faster at every batch size; streamed from memory, the per-row kernel
  // reads fastest (docs/benchmarks.md).
  size_t float_bytes = 0;
  for (const Matrix* w : matrices)
    if (is_float_type(w->type)) float_bytes += size_t(w->rows) * w->row_bytes();
  const bool pack_floats = float_bytes <= last_level_cache_bytes();
  std::vector<Matrix*> todo;
  for (Matrix* w : matrices)
    if (ks.gemm_packed[int(w->type)] && packable(w->type, w->cols) && w->rows >= kRowGroup &&
        (pack_floats || !is_float_type(w->type)))
      todo.push_back(w);
  // Load time: fn(from, to) for every thread's share of [0, n).
  const int n_threads = int(std::max(1u, std::min(8u, std::thread::hardware_concurrency())));
  auto in_parallel = [n_threads](int64_t n, auto&& fn) {
    std::vector<std::thread> threads;
    for (int i = 0; i < n_threads; ++i)
      threads.emplace_back([&, i] { fn(n * i / n_threads, n * (i + 1) / n_threads); });
    for (std::thread& t : threads) t.join();
  };
  for (Matrix* w : todo) {
    LargeBuffer& buf = weight_copies_.emplace_back(packed_bytes(w->type, w->rows, w->cols));
    in_parallel(w->rows / kRowGroup, [&](int64_t g0, int64_t g1) {
      pack_groups(w->type, w->data, w->cols, g0, g1, buf.data());
    });
    w->packed = buf.data();
  }
  // The rest (float weights too large for the cache, types without a packed layout) are copied
  // out of the file's mapping into memory on huge pages: streamed from 4 KiB file pages, where
  // the hardware prefetchers stop at every page, Qwen3-0.6B F16 decoded about 16% slower on one
  // thread. The file's pages are given back, so resident memory does not grow.
  for (Matrix* w : matrices) {
    if (w->packed || !w->data || w->rows == 0) continue;
    const size_t bytes = size_t(w->rows) * w->row_bytes();
    LargeBuffer& buf = weight_copies_.emplace_back(bytes);
    in_parallel(int64_t(bytes), [&](int64_t from, int64_t to) {
      std::memcpy(buf.data() + from, w->data + from, size_t(to - from));
    });
    file_->release(w->data, bytes);
    w->data = buf.data();
  }
}

size_t Model::weight_bytes() const {
  size_t n = 0;
  for (const GgufTensor& t : file_->tensors()) n += t.nbytes;
  return n;
}

}  // namespace muse
