#include "model/session.h"

#include <algorithm>

#include "util/error.h"

namespace muse {

namespace {

constexpr int kBlockTokens = 16;

// A pool of exactly the blocks n_ctx tokens need.
KvPoolConfig session_pool(const ModelConfig& c, int n_ctx, KvType type) {
  KvPoolConfig k = kv_pool_config(c, type, kBlockTokens, 0);
  k.budget_bytes = size_t((n_ctx + kBlockTokens - 1) / kBlockTokens) * KvPool::block_bytes_for(k);
  return k;
}

}  // namespace

Session::Session(const Model& model, ThreadPool& pool, SessionParams params)
    : c_(model.config()),
      n_ctx_(std::max(1, std::min(params.n_ctx, model.config().n_ctx_train))),
      n_batch_(std::max(1, params.n_batch)),
      kv_(std::make_unique<KvPool>(session_pool(c_, n_ctx_, params.kv_type))),
      forward_(model, pool, std::min(n_batch_, n_ctx_), n_ctx_) {}

Session::~Session() { seq_.release(*kv_); }

int Session::n_vocab() const { return c_.n_vocab; }

void Session::truncate(int n) {
  if (n < 0 || n > n_past()) fail("cannot truncate a session of ", n_past(), " positions to ", n);
  seq_.truncate(*kv_, n);
}

void Session::forward(const int32_t* tokens, int n, float* logits, bool all_logits) {
  if (n <= 0) fail("forward needs at least one token");
  if (n_past() + n > n_ctx_)
    fail("context is full: ", n_past(), " + ", n, " tokens exceed the context size ", n_ctx_);
  for (int i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= c_.n_vocab)
      fail("token id ", tokens[i], " is outside the vocabulary (0..", c_.n_vocab - 1, ")");
  const std::vector<const KvSequence*> sequences = {&seq_};
  std::vector<BatchToken> batch;
  for (int done = 0; done < n; done += forward_.max_tokens()) {
    const int m = std::min(forward_.max_tokens(), n - done);
    if (!seq_.reserve(*kv_, m)) fail("KV cache exhausted");  // sized for n_ctx: cannot happen
    batch.clear();
    for (int i = 0; i < m; ++i)
      batch.push_back({tokens[done + i], n_past() + i, 0, all_logits || done + i == n - 1});
    float* out = all_logits ? logits + size_t(done) * c_.n_vocab : (done + m == n ? logits : nullptr);
    forward_.run(batch, *kv_, sequences, out);
    seq_.advance(m);
  }
}

}  // namespace muse
