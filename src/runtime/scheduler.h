// Continuous batching: many requests advance together, one forward pass per step, over one
// paged KV cache whose shared prefixes are stored once.
//
// Each step, every running request that is generating contributes one token (so no request
// starves another), and requests still reading their prompts fill the rest of the step's token
// budget with prompt chunks (chunked prefill). Requests join and leave between steps. A new
// request first takes whatever prefix of its prompt the radix cache already holds; a fork
// starts from another request's sequence without copying it. When the KV budget runs out, the
// cache drops unused prefixes, then the newest running request is preempted: its blocks are
// released and it goes back to the queue to be recomputed later (counted in its statistics).
//
// Thread-safe: submit, cancel, stats and forget may be called from any thread while another
// runs step(), or while the scheduler steps on its own thread (start()). Callbacks run on the
// stepping thread.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kv/kv_pool.h"
#include "kv/prefix_cache.h"
#include "model/forward.h"
#include "runtime/generate.h"
#include "runtime/sampler.h"

namespace muse {

class Model;
class Tokenizer;
class ThreadPool;

using RequestId = int64_t;

struct SchedulerConfig {
  size_t kv_budget_bytes = size_t(512) << 20;
  KvType kv_type = KvType::kF16;
  int block_tokens = 16;
  int max_batch_tokens = 256;  // tokens per forward pass (decode steps plus prompt chunks)
  int max_running = 64;        // requests advanced together
  int max_context = 4096;      // prompt plus generated tokens of one request
};

struct Request {
  std::vector<int32_t> prompt;  // for a fork: the tokens that follow the parent's
  int max_tokens = 256;
  SamplingParams sampling;
  bool stop_at_eog = true;
  // The request ends right after sampling one of these (kept in its sequence, finish reason
  // kStopString): an agent stops exactly at its join tag, even when the scheduler runs its own loop.
  std::vector<int32_t> stop_tokens;
  // A request whose sequence this one continues: a running one (its tokens so far) or a held
  // one (all of its tokens).
  RequestId fork_of = -1;
  // Keep the sequence when the request ends, for forks, until release() or forget(): an agent
  // that waits for its sub-agents parks this way. Under memory pressure a held sequence goes
  // to the prefix cache instead (its forks then take what is still cached, and recompute the rest).
  bool hold = false;
  std::shared_ptr<const Grammar> grammar;  // constrained decoding
  ThinkingBudget thinking;                 // compact thinking (see ThinkingBudget)
  // With k > 0, every token event carries the model's confidence at that step (see
  // token_confidence), for callers that stop or weigh low-confidence generations.
  int confidence_top_k = 0;
  // With n >= 0, every sampled token's event carries its log-probability and the n most likely
  // tokens' (OpenAI's logprobs / top_logprobs), from the model's distribution.
  int logprobs = -1;
};

// DeepConf's token confidence: minus the mean log-probability of the k most likely tokens. A
// peaked distribution (one likely token, the rest improbable) scores high; a flat one low.
float token_confidence(const float* logits, int n_vocab, int k);

// The log-probability of `token` under softmax(logits), and the n most likely tokens' (n may be 0).
float token_logprob(const float* logits, int n_vocab, int32_t token, int n,
                    std::vector<std::pair<int32_t, float>>* top);

struct RequestStats {
  int prompt_tokens = 0;
  int cached_tokens = 0;  // prompt tokens whose KV came from the prefix cache or a fork
  int generated = 0;
  int preemptions = 0;
  int thinking_tokens = 0;    // generated inside the thinking block
  double thinking_seconds = 0;  // from the first token to the end of thinking
  bool thinking_cut = false;  // the thinking budget closed the block
  double queued_seconds = 0, prefill_seconds = 0, decode_seconds = 0;
  bool finished = false;
  FinishReason finish = FinishReason::kLength;
  double decode_rate() const {
    return decode_seconds > 0 && generated > 1 ? (generated - 1) / decode_seconds : 0;
  }
};

struct TokenEvent {
  RequestId id;
  int32_t token = -1;  // -1 on the final event of a cancelled or failed request
  bool done = false;
  FinishReason finish = FinishReason::kLength;
  float confidence = 0;  // with Request::confidence_top_k > 0
  bool inserted = false;  // not sampled: inserted by the thinking budget (its cue and close)
  float logprob = 0;      // with Request::logprobs >= 0
  std::vector<std::pair<int32_t, float>> top_logprobs;  // most likely first
};
using TokenCallbackFn = std::function<void(const TokenEvent&)>;

class Scheduler {
 public:
  Scheduler(const Model& model, const Tokenizer& tokenizer, ThreadPool& pool,
            const SchedulerConfig& config);
  ~Scheduler();

  RequestId submit(Request request, TokenCallbackFn on_token = {});
  void cancel(RequestId id);
  void cancel_all();
  RequestStats stats(RequestId id) const;

  // One forward pass over the current batch; false when there was nothing to do.
  bool step();
  void run_until_idle();
  // Steps on a thread of its own until stop(): between requests it sleeps, and submit or
  // cancel wake it. (Servers use this; tests and benchmarks call step() themselves.)
  void start();
  // Finishes the step in progress; requests not finished stay where they are. Not from a
  // callback (it runs on the loop's own thread).
  void stop();
  // Whether the scheduler steps on its own thread (between start() and stop()).
  bool looping() const { return looping_.load(); }
  // Drops a finished request's statistics (a server calls it once it has reported them), so
  // a long-running scheduler's memory does not grow with every request it ever served; a held
  // sequence is released too.
  void forget(RequestId id);
  // Releases a held request's sequence (its blocks stay in the prefix cache).
  void release(RequestId id);

  // KV bytes in use now (blocks referenced by requests or the prefix cache, each counted once).
  size_t kv_bytes() const;
  const KvPool& kv() const { return *kv_; }
  int running() const;
  int waiting() const;
  int cached_blocks() const;  // blocks the prefix cache holds

 private:
  struct Active;
  struct Event {
    TokenCallbackFn callback;
    TokenEvent event;
  };
  // One step's work under the lock; emit(request, token, last, why) queues a callback.
  template <typename Emit>
  bool advance(const Emit& emit);
  bool admit(Active& a);
  bool reserve(Active& a, int n);
  void preempt_newest(const Active* keep);
  void finish(Active& a, FinishReason why);
  // Takes finished requests out of `list`, keeping the held ones' sequences.
  template <typename List>
  void retire_finished(List& list);
  bool release_oldest_held();

  const Model& model_;
  const Tokenizer& tokenizer_;
  ThreadPool& pool_;
  SchedulerConfig config_;
  std::unique_ptr<KvPool> kv_;
  std::unique_ptr<PrefixCache> prefix_;
  BatchForward forward_;
  mutable std::mutex mu_;
  RequestId next_id_ = 0;
  std::deque<std::unique_ptr<Active>> waiting_;
  std::vector<std::unique_ptr<Active>> running_;
  std::vector<std::unique_ptr<Active>> held_;  // finished, sequences kept (Request::hold)
  std::shared_ptr<const GrammarVocab> grammar_vocab_;  // built on the first grammar
  std::map<RequestId, RequestStats> stats_;
  std::vector<RequestId> cancelled_;
  std::vector<float> logits_;
  std::condition_variable wake_;  // work arrived, or stop
  bool stopping_ = false;
  std::mutex control_mu_;  // start() and stop(), one at a time
  std::atomic<bool> looping_{false};
  std::thread loop_;
};

}  // namespace muse
