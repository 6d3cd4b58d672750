// The transformer forward pass over a batch of tokens from any number of sequences: each
// token carries its sequence and position, so decode steps of some sequences and prompt chunks
// of others go through one pass, and every weight matrix is read once for the whole batch.
// Keys and values live in a paged KV cache (kv/kv_pool.h); attention reads each sequence's
// blocks.
//
// A token's arithmetic does not depend on the rest of its batch (the quantized matmuls are
// bit-identical for any batch composition, attention is per token), so a sequence computed in
// a batch gives exactly the logits it gives alone.
#pragma once
#include <cstdint>
#include <vector>

#include "kv/kv_pool.h"
#include "model/model.h"
#include "ops/ops.h"

namespace muse {

class ThreadPool;

// A KV pool shaped for this model's layers and rows.
KvPoolConfig kv_pool_config(const ModelConfig& c, KvType type, int block_tokens, size_t budget_bytes);

struct BatchToken {
  int32_t token = 0;
  int32_t pos = 0;   // position in its sequence
  int32_t seq = 0;   // index into the sequences passed to run()
  bool logits = false;
};

class BatchForward {
 public:
  // Scratch for up to max_tokens tokens per pass and attention spans up to max_ctx positions;
  // attention scores are held for at most max_scores floats at a time.
  BatchForward(const Model& model, ThreadPool& pool, int max_tokens, int max_ctx,
               size_t max_scores = size_t(4) << 20);

  // Writes each token's keys and values into its sequence's slot at pos (the caller reserved
  // it) and runs the model. A token attends to positions 0..pos of its sequence, so tokens of
  // one sequence in the same batch must come in position order. Logits (n_vocab floats per
  // token that asked for them, in batch order) go to `logits`.
  void run(const std::vector<BatchToken>& batch, KvPool& kv,
           const std::vector<const KvSequence*>& sequences, float* logits);

  int max_tokens() const { return max_tokens_; }

 private:
  // A token's read of one KV block: the block's index in its sequence, its pool id, and how
  // many of its rows the token sees.
  struct BlockUse {
    int32_t index, block, token, rows;
  };
  // Blocks at consecutive indices read by the same queries (a shared prompt, a sequence's own
  // tail): read in one kernel call, so the weighted sums keep their accumulators in registers
  // across blocks. Its blocks are blocks[b0, b0 + blocks), its readers reads[r0, r1): each
  // token and the rows it sees in the whole span.
  struct BlockSpan {
    int32_t index, blocks;
    size_t b0, r0, r1;
  };
  struct SpanRead {
    int32_t token, rows;
  };
  struct AttentionRange {
    int t0 = 0, t1 = 0;
    std::vector<BlockUse> uses;
    std::vector<BlockSpan> spans;  // in order of first index, so a query meets keys in order
    std::vector<SpanRead> reads;
    std::vector<int32_t> blocks;   // the spans' pool blocks
    std::vector<size_t> score_at;  // where each token's scores start, and the end
  };
  void plan_attention(const std::vector<BatchToken>& batch, const KvPool& kv,
                      const std::vector<const KvSequence*>& sequences);
  static void join_spans(AttentionRange& range, const KvPool& kv);
  void attention(int layer, const std::vector<BatchToken>& batch, const KvPool& kv);

  const Model& model_;
  const ModelConfig& c_;
  ThreadPool& pool_;
  int max_tokens_, max_ctx_;
  size_t max_scores_;
  Rope rope_;
  std::vector<float> x_, xn_, q_, k_, v_, attn_, gate_, up_, tmp_, scores_, rows_;
  std::vector<float> rope_cos_, rope_sin_;  // per token of the batch: the rotation angles
  QuantizedActs acts_[3];                   // one input's quantization, per ActFormat
  std::vector<AttentionRange> ranges_;      // this pass's attention plan
};

}  // namespace muse
