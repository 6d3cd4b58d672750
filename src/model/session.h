// One sequence being run through a model: its KV cache, scratch buffers and position.
// (Many sequences at once, with a shared paged cache, is the batching layer's job.)
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "model/model.h"
#include "ops/ops.h"

namespace muse {

class ThreadPool;

struct SessionParams {
  int n_ctx = 4096;    // KV cache capacity in tokens (clamped to the model's training context)
  int n_batch = 512;   // tokens per forward pass when a prompt is longer
};

class Session {
 public:
  Session(const Model& model, ThreadPool& pool, SessionParams params = {});

  // Runs tokens at positions [n_past, n_past + n) and appends them to the cache. Writes
  // logits for every token (logits: n x n_vocab) or, if all_logits is false, for the last
  // one only (n_vocab values).
  void forward(const int32_t* tokens, int n, float* logits, bool all_logits);
  int n_past() const { return n_past_; }
  int n_ctx() const { return n_ctx_; }
  void reset() { n_past_ = 0; }
  // Forgets every position from n on, keeping the cached prefix (a chat turn that shares its
  // history with the previous prompt only runs the new part).
  void truncate(int n);

 private:
  void forward_batch(const int32_t* tokens, int n, float* logits, bool all_logits);
  void attention(int layer, int n);

  const Model& model_;
  const ModelConfig& c_;
  ThreadPool& pool_;
  int n_ctx_, n_batch_;
  int n_past_ = 0;
  Rope rope_;
  // KV cache, F16, per layer: [n_ctx][kv_dim].
  std::vector<std::vector<uint16_t>> k_cache_, v_cache_;
  // Scratch sized for n_batch tokens.
  std::vector<float> x_, xn_, q_, k_, v_, attn_, gate_, up_, tmp_, scores_;
  std::vector<float> rope_cos_, rope_sin_;  // per token of the batch: the rotation angles
  QuantizedActs acts_[3];                   // one input's quantization, per ActFormat
};

}  // namespace muse
