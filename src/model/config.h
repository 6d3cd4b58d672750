// Hyperparameters of a transformer, read from GGUF metadata and checked for consistency.
#pragma once
#include <string>

#include "ops/ops.h"

namespace muse {

class GgufFile;

enum class Arch { kLlama, kQwen2, kQwen3 };

struct ModelConfig {
  Arch arch = Arch::kLlama;
  std::string arch_name;
  int n_vocab = 0;
  int n_embd = 0;
  int n_layer = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;    // attention.key_length, else n_embd / n_head
  int head_dim_v = 0;  // attention.value_length, else head_dim
  int n_ff = 0;
  int n_ctx_train = 0;
  int n_rot = 0;
  double rope_base = 10000;
  double rope_freq_scale = 1;
  RopeStyle rope_style = RopeStyle::kAdjacent;
  float rms_eps = 1e-5f;

  int q_dim() const { return n_head * head_dim; }
  int kv_dim() const { return n_head_kv * head_dim; }
  int v_dim() const { return n_head_kv * head_dim_v; }

  // Throws muse::Error naming the file and the problem (unknown architecture, bad shapes...).
  static ModelConfig from_gguf(const GgufFile& f);
};

const char* arch_name(Arch arch);

}  // namespace muse
