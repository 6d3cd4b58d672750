#include "train/gguf_export.h"

#include <algorithm>

#include "reasoning/contemplation.h"
#include "synth/synth.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace muse {

int64_t NetShape::parameters() const {
  int64_t n = 0;
  for (const NamedTensor& t : net_tensor_layout(*this)) {
    int64_t e = 1;
    for (int64_t d : t.dims) e *= d;
    n += e;
  }
  return n;
}

std::vector<NamedTensor> net_tensor_layout(const NetShape& s) {
  const int64_t d = s.n_embd, q = int64_t(s.n_head) * s.head_dim,
                kv = int64_t(s.n_head_kv) * s.head_dim;
  std::vector<NamedTensor> t = {{"token_embd.weight", {d, s.n_vocab}, {}},
                                {"output_norm.weight", {d}, {}}};
  for (int l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    t.push_back({p + "attn_norm.weight", {d}, {}});
    t.push_back({p + "attn_q.weight", {d, q}, {}});
    t.push_back({p + "attn_k.weight", {d, kv}, {}});
    t.push_back({p + "attn_v.weight", {d, kv}, {}});
    t.push_back({p + "attn_output.weight", {q, d}, {}});
    t.push_back({p + "ffn_norm.weight", {d}, {}});
    t.push_back({p + "ffn_gate.weight", {d, s.n_ff}, {}});
    t.push_back({p + "ffn_up.weight", {d, s.n_ff}, {}});
    t.push_back({p + "ffn_down.weight", {s.n_ff, d}, {}});
  }
  return t;
}

std::vector<SpecialToken> muse_special_tokens() {
  std::vector<SpecialToken> s = {{"<|endoftext|>", 3}, {"<|im_start|>", 3}, {"<|im_end|>", 3}};
  const SpawnMarkup m;
  for (const std::string& tag :
       {std::string("<think>"), std::string("</think>"), m.spawn_open, m.spawn_close, m.join,
        m.task_open, m.task_close, m.result_open, m.result_close, std::string("<tool_call>"),
        std::string("</tool_call>")})
    s.push_back({tag, 4});
  return s;
}

void write_vocab(GgufWriter& w, const BpeVocab& vocab) {
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", "qwen2");
  w.set_string_array("tokenizer.ggml.tokens", vocab.tokens);
  w.set_i32_array("tokenizer.ggml.token_type", vocab.types);
  w.set_string_array("tokenizer.ggml.merges", vocab.merges);
  w.set_u32("tokenizer.ggml.bos_token_id", uint32_t(vocab.id("<|endoftext|>")));
  w.set_u32("tokenizer.ggml.eos_token_id", uint32_t(vocab.id("<|im_end|>")));
  w.set_u32("tokenizer.ggml.padding_token_id", uint32_t(vocab.id("<|endoftext|>")));
  w.set_bool("tokenizer.ggml.add_bos_token", false);
}

std::unique_ptr<Tokenizer> vocab_tokenizer(const BpeVocab& vocab) {
  GgufWriter w;
  write_vocab(w, vocab);
  const std::string bytes = w.to_bytes();
  const auto file = GgufFile::from_memory(reinterpret_cast<const uint8_t*>(bytes.data()),
                                          bytes.size(), "<vocabulary>");
  return Tokenizer::from_gguf(*file);
}

GgufWriter net_to_gguf(const NetShape& s, const std::vector<NamedTensor>& tensors,
                       const BpeVocab& vocab, const ExportOptions& o) {
  if (int(vocab.tokens.size()) != s.n_vocab)
    fail("export: the vocabulary has ", vocab.tokens.size(), " tokens, the network ", s.n_vocab);
  if (o.matrix_type != GgmlType::F32 && s.n_embd % 32 + s.n_ff % 32 + (s.n_head * s.head_dim) % 32)
    fail("export: quantized matrices need every row length to be a multiple of 32");
  const std::vector<NamedTensor> layout = net_tensor_layout(s);
  if (tensors.size() != layout.size())
    fail("export: ", tensors.size(), " tensors, the shape has ", layout.size());

  GgufWriter w;
  const std::string a = "llama";
  w.set_string("general.architecture", a);
  w.set_string("general.name", o.name);
  if (!o.description.empty()) w.set_string("general.description", o.description);
  w.set_u32("general.alignment", 32);
  w.set_u32(a + ".context_length", uint32_t(s.n_ctx));
  w.set_u32(a + ".embedding_length", uint32_t(s.n_embd));
  w.set_u32(a + ".block_count", uint32_t(s.n_layer));
  w.set_u32(a + ".feed_forward_length", uint32_t(s.n_ff));
  w.set_u32(a + ".attention.head_count", uint32_t(s.n_head));
  w.set_u32(a + ".attention.head_count_kv", uint32_t(s.n_head_kv));
  w.set_u32(a + ".attention.key_length", uint32_t(s.head_dim));
  w.set_u32(a + ".attention.value_length", uint32_t(s.head_dim));
  w.set_u32(a + ".rope.dimension_count", uint32_t(s.head_dim));
  w.set_f32(a + ".rope.freq_base", s.rope_base);
  w.set_f32(a + ".attention.layer_norm_rms_epsilon", s.norm_eps);
  w.set_u32(a + ".vocab_size", uint32_t(s.n_vocab));
  write_vocab(w, vocab);
  w.set_string("tokenizer.chat_template", chatml_think_template());
  const SpawnMarkup m;
  w.set_string("muse.spawn.open", m.spawn_open);
  w.set_string("muse.spawn.close", m.spawn_close);
  w.set_string("muse.spawn.join", m.join);
  w.set_string("muse.spawn.task_open", m.task_open);
  w.set_string("muse.spawn.task_close", m.task_close);
  w.set_string("muse.spawn.result_open", m.result_open);
  w.set_string("muse.spawn.result_close", m.result_close);
  w.set_string("muse.spawn.no_answer", m.no_answer);

  for (size_t i = 0; i < layout.size(); ++i) {
    const NamedTensor& want = layout[i];
    const NamedTensor& t = tensors[i];
    if (t.name != want.name || t.dims != want.dims)
      fail("export: tensor ", i, " is ", t.name, ", expected ", want.name);
    int64_t n = 1;
    for (int64_t d : t.dims) n *= d;
    if (int64_t(t.data.size()) != n)
      fail("export: ", t.name, " has ", t.data.size(), " values, expected ", n);
    const bool matrix = t.dims.size() == 2;
    const GgmlType type = matrix ? o.matrix_type : GgmlType::F32;
    if (type == GgmlType::F32) {
      w.add_tensor(t.name, type, t.dims, t.data.data(), t.data.size() * sizeof(float));
      continue;
    }
    const size_t rb = row_bytes(type, t.dims[0]);
    std::string bytes(rb * size_t(t.dims[1]), '\0');
    for (int64_t r = 0; r < t.dims[1]; ++r)
      quantize_row(type, t.data.data() + r * t.dims[0], bytes.data() + size_t(r) * rb, t.dims[0]);
    w.add_tensor(t.name, type, t.dims, bytes.data(), bytes.size());
  }
  return w;
}

NetShape net_shape_from_gguf(const GgufFile& f) {
  if (f.get_string("general.architecture") != "llama") fail(f.path(), ": not a llama model");
  NetShape s;
  auto u = [&](const char* key) { return int(f.at(std::string("llama.") + key).as_int(key)); };
  s.n_embd = u("embedding_length");
  s.n_layer = u("block_count");
  s.n_ff = u("feed_forward_length");
  s.n_head = u("attention.head_count");
  s.n_head_kv = u("attention.head_count_kv");
  s.head_dim = int(f.get_int("llama.attention.key_length", s.n_embd / std::max(1, s.n_head)));
  s.n_ctx = u("context_length");
  s.rope_base = float(f.get_double("llama.rope.freq_base", 10000.0));
  s.norm_eps = float(f.get_double("llama.attention.layer_norm_rms_epsilon", 1e-5));
  s.n_vocab = int(f.at("tokenizer.ggml.tokens").count);
  return s;
}

BpeVocab vocab_from_gguf(const GgufFile& f) {
  if (f.get_string("tokenizer.ggml.model") != "gpt2")
    fail(f.path(), ": not a byte-level BPE vocabulary");
  BpeVocab v;
  for (std::string_view t : f.at("tokenizer.ggml.tokens").strings) v.tokens.emplace_back(t);
  for (std::string_view m : f.at("tokenizer.ggml.merges").strings) v.merges.emplace_back(m);
  for (int64_t t : f.at("tokenizer.ggml.token_type").as_int_array("tokenizer.ggml.token_type"))
    v.types.push_back(int32_t(t));
  if (v.types.size() != v.tokens.size())
    fail(f.path(), ": token types and tokens differ in number");
  return v;
}

std::vector<NamedTensor> net_tensors_from_gguf(const GgufFile& f) {
  std::vector<NamedTensor> out = net_tensor_layout(net_shape_from_gguf(f));
  for (NamedTensor& t : out) {
    const GgufTensor* g = f.find_tensor(t.name);
    if (!g) fail(f.path(), ": tensor ", t.name, " is missing");
    for (size_t d = 0; d < t.dims.size(); ++d)
      if (g->ne[d] != t.dims[d]) fail(f.path(), ": tensor ", t.name, " has shape ", g->shape());
    const int64_t cols = t.dims[0], rows = g->elements() / cols;
    t.data.resize(size_t(g->elements()));
    const size_t rb = row_bytes(g->type, cols);
    if (g->nbytes < rb * size_t(rows)) fail(f.path(), ": tensor ", t.name, " is truncated");
    for (int64_t r = 0; r < rows; ++r)
      dequantize_row(g->type, g->data + size_t(r) * rb, t.data.data() + r * cols, cols);
  }
  return out;
}

}  // namespace muse
