#include "model/config.h"

#include "io/gguf.h"
#include "util/error.h"

namespace muse {

const char* arch_name(Arch arch) {
  switch (arch) {
    case Arch::kQwen2: return "qwen2";
    case Arch::kQwen3: return "qwen3";
    default: return "llama";
  }
}

ModelConfig ModelConfig::from_gguf(const GgufFile& f) {
  ModelConfig c;
  const std::string& path = f.path();
  if (!f.find("general.architecture")) fail(path, ": missing metadata \"general.architecture\"");
  c.arch_name = f.get_string("general.architecture");
  if (c.arch_name == "llama") c.arch = Arch::kLlama;
  else if (c.arch_name == "qwen2") c.arch = Arch::kQwen2;
  else if (c.arch_name == "qwen3") c.arch = Arch::kQwen3;
  else fail(path, ": unsupported architecture \"", c.arch_name, "\" (Muse runs llama, qwen2, qwen3)");

  const std::string a = c.arch_name + ".";
  auto need = [&](const std::string& key) -> int64_t {
    const GgufValue* v = f.find(a + key);
    if (!v) fail(path, ": missing metadata \"", a + key, "\"");
    const int64_t x = v->as_int(a + key);
    if (x <= 0 || x > (int64_t(1) << 31)) fail(path, ": metadata \"", a + key, "\" is out of range (", x, ")");
    return x;
  };
  c.n_embd = int(need("embedding_length"));
  c.n_layer = int(need("block_count"));
  c.n_head = int(need("attention.head_count"));
  c.n_head_kv = int(f.find(a + "attention.head_count_kv") ? need("attention.head_count_kv") : c.n_head);
  c.n_ff = int(need("feed_forward_length"));
  c.n_ctx_train = int(f.get_int(a + "context_length", 4096));
  c.head_dim = int(f.find(a + "attention.key_length") ? need("attention.key_length") : c.n_embd / c.n_head);
  c.head_dim_v = int(f.find(a + "attention.value_length") ? need("attention.value_length") : c.head_dim);
  c.n_rot = int(f.find(a + "rope.dimension_count") ? need("rope.dimension_count") : c.head_dim);
  c.rope_base = f.get_double(a + "rope.freq_base", 10000.0);
  const std::string scaling = f.get_string(a + "rope.scaling.type", "none");
  if (scaling == "linear") {
    const double factor = f.get_double(a + "rope.scaling.factor", 1.0);
    if (factor <= 0) fail(path, ": rope.scaling.factor must be positive");
    c.rope_freq_scale = 1.0 / factor;
  } else if (scaling != "none" && scaling != "") {
    fail(path, ": rope scaling \"", scaling, "\" is not supported (none, linear)");
  }
  if (!f.find(a + "attention.layer_norm_rms_epsilon"))
    fail(path, ": missing metadata \"", a + "attention.layer_norm_rms_epsilon", "\"");
  c.rms_eps = float(f.get_double(a + "attention.layer_norm_rms_epsilon", 1e-5));
  c.rope_style = c.arch == Arch::kLlama ? RopeStyle::kAdjacent : RopeStyle::kHalves;

  if (c.n_head % c.n_head_kv) fail(path, ": head_count ", c.n_head, " is not a multiple of head_count_kv ", c.n_head_kv);
  if (c.n_rot > c.head_dim || c.n_rot % 2 || c.n_rot > 1024) fail(path, ": bad rope dimension ", c.n_rot);
  if (c.head_dim > 1024 || c.head_dim_v > 1024) fail(path, ": head dimension too large");
  if (c.rope_base <= 0) fail(path, ": rope.freq_base must be positive");

  const GgufTensor* emb = f.find_tensor("token_embd.weight");
  if (!emb) fail(path, ": missing tensor \"token_embd.weight\"");
  c.n_vocab = int(emb->ne[1]);
  return c;
}

}  // namespace muse
