// One sequence being run through a model: its KV cache (a paged pool of its own), the forward
// pass's scratch, and its position. Many sequences sharing one pool are the scheduler's job;
// both run the same forward pass (model/forward.h).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "kv/kv_pool.h"
#include "model/forward.h"
#include "model/model.h"

namespace muse {

class ThreadPool;

struct SessionParams {
  int n_ctx = 4096;    // KV cache capacity in tokens (clamped to the model's training context)
  int n_batch = 512;   // tokens per forward pass when a prompt is longer
  KvType kv_type = KvType::kF16;
};

class Session {
 public:
  Session(const Model& model, ThreadPool& pool, SessionParams params = {});
  ~Session();

  // Runs tokens at positions [n_past, n_past + n) and appends them to the cache. Writes
  // logits for every token (logits: n x n_vocab) or, if all_logits is false, for the last
  // one only (n_vocab values).
  void forward(const int32_t* tokens, int n, float* logits, bool all_logits);
  int n_past() const { return seq_.length(); }
  int n_vocab() const;  // floats per row of logits
  int n_ctx() const { return n_ctx_; }
  void reset() { truncate(0); }
  // Forgets every position from n on, keeping the cached prefix (a chat turn that shares its
  // history with the previous prompt only runs the new part).
  void truncate(int n);

 private:
  const ModelConfig& c_;
  int n_ctx_, n_batch_;
  std::unique_ptr<KvPool> kv_;
  KvSequence seq_;
  BatchForward forward_;
};

}  // namespace muse
