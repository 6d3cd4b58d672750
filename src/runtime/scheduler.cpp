#include "runtime/scheduler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>

#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace muse {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

struct Scheduler::Active {
  RequestId id = 0;
  Request request;
  TokenCallbackFn on_token;
  std::vector<int32_t> tokens;  // the whole sequence: prompt (a fork's includes its parent's), then generated
  KvSequence seq;               // holds the keys and values of tokens[0, seq.length())
  std::unique_ptr<Sampler> sampler;
  ThinkingState thinking;
  bool retired = false;  // finished: leaves the running list after this step
  Clock::time_point submitted, admitted, first_token;
  bool was_admitted = false;
  int pending() const { return int(tokens.size()) - seq.length(); }
};

float token_confidence(const float* logits, int n_vocab, int k) {
  k = std::clamp(k, 1, n_vocab);
  const float mx = *std::max_element(logits, logits + n_vocab);
  double sum = 0;
  for (int i = 0; i < n_vocab; ++i) sum += std::exp(double(logits[i] - mx));
  const double log_z = double(mx) + std::log(sum);
  // The k largest logits, kept in a small sorted list (k is a handful).
  std::vector<float> top;
  top.reserve(size_t(k) + 1);
  for (int i = 0; i < n_vocab; ++i) {
    if (int(top.size()) == k && logits[i] <= top.back()) continue;
    top.insert(std::upper_bound(top.begin(), top.end(), logits[i], std::greater<float>()), logits[i]);
    if (int(top.size()) > k) top.pop_back();
  }
  // Banned tokens (-inf) are not candidates: the mean is over the finite ones.
  double sum_logp = 0;
  int finite = 0;
  for (float x : top)
    if (std::isfinite(x)) {
      sum_logp += double(x) - log_z;
      ++finite;
    }
  return finite ? float(-sum_logp / finite) : 0.0f;
}

float token_logprob(const float* logits, int n_vocab, int32_t token, int n,
                    std::vector<std::pair<int32_t, float>>* top) {
  const float mx = *std::max_element(logits, logits + n_vocab);
  double sum = 0;
  for (int i = 0; i < n_vocab; ++i) sum += std::exp(double(logits[i] - mx));
  const double log_z = double(mx) + std::log(sum);
  if (top) top->clear();
  if (top && n > 0) {
    n = std::min(n, n_vocab);
    std::vector<int32_t> ids(static_cast<size_t>(n_vocab));
    for (int i = 0; i < n_vocab; ++i) ids[static_cast<size_t>(i)] = i;
    std::partial_sort(ids.begin(), ids.begin() + n, ids.end(), [&](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    for (int i = 0; i < n; ++i) top->push_back({ids[size_t(i)], float(double(logits[ids[size_t(i)]]) - log_z)});
  }
  return float(double(logits[token]) - log_z);
}

Scheduler::Scheduler(const Model& model, const Tokenizer& tokenizer, ThreadPool& pool,
                     const SchedulerConfig& config)
    : model_(model),
      tokenizer_(tokenizer),
      pool_(pool),
      config_(config),
      kv_(std::make_unique<KvPool>(
          kv_pool_config(model.config(), config.kv_type, config.block_tokens, config.kv_budget_bytes))),
      prefix_(std::make_unique<PrefixCache>(*kv_)),
      forward_(model, pool, config.max_batch_tokens, std::min(config.max_context, model.config().n_ctx_train)) {
  if (config.max_batch_tokens < 1 || config.max_running < 1) fail("scheduler: batch limits must be positive");
  config_.max_context = std::min(config.max_context, model.config().n_ctx_train);
}

Scheduler::~Scheduler() {
  stop();
  for (auto& a : running_) a->seq.release(*kv_);
  for (auto& a : waiting_) a->seq.release(*kv_);
  for (auto& a : held_) a->seq.release(*kv_);
  prefix_.reset();  // releases the cached blocks before the pool goes
}

RequestId Scheduler::submit(Request request, TokenCallbackFn on_token) {
  request.sampling.validate(model_.config().n_vocab);
  if (request.max_tokens < 0) fail("max_tokens must not be negative");
  for (int32_t t : request.prompt)
    if (t < 0 || t >= model_.config().n_vocab) fail("token id ", t, " is outside the vocabulary");
  request.thinking.validate(model_.config().n_vocab);
  std::lock_guard<std::mutex> lock(mu_);
  auto a = std::make_unique<Active>();
  a->request = std::move(request);
  a->on_token = std::move(on_token);
  a->submitted = Clock::now();
  // Everything that can fail is checked before a fork takes references on its parent's blocks.
  Active* parent = nullptr;
  if (a->request.fork_of >= 0) {
    auto named = [&](const auto& r) { return r->id == a->request.fork_of; };
    auto it = std::find_if(running_.begin(), running_.end(), named);
    if (it != running_.end()) {
      parent = it->get();
      // A parent still reading its prompt has no complete state to continue from.
      if (parent->pending() > 1 || parent->seq.length() == 0)
        fail("fork_of: request ", a->request.fork_of, " has not finished reading its prompt");
      a->tokens.assign(parent->tokens.begin(), parent->tokens.begin() + parent->seq.length());
    } else {
      it = std::find_if(held_.begin(), held_.end(), named);
      if (it == held_.end()) fail("fork_of: request ", a->request.fork_of, " is neither running nor held");
      parent = it->get();
      a->tokens = parent->tokens;  // all of it: the tokens its sequence has not stored run again
    }
  } else if (a->request.prompt.empty()) {
    fail("the prompt is empty");
  }
  a->tokens.insert(a->tokens.end(), a->request.prompt.begin(), a->request.prompt.end());
  if (int(a->tokens.size()) >= config_.max_context)
    fail("the prompt (", a->tokens.size(), " tokens) does not fit the context of ", config_.max_context);
  if (a->request.grammar && !grammar_vocab_) grammar_vocab_ = make_grammar_vocab(tokenizer_);
  // The sampler (which may throw) before any block is shared or statistics kept.
  a->sampler = std::make_unique<Sampler>(a->request.sampling);
  if (a->request.grammar) a->sampler->set_grammar(a->request.grammar, grammar_vocab_);
  a->thinking = ThinkingState(a->request.thinking);
  for (int32_t t : a->tokens) a->sampler->accept(t, false);
  if (parent && parent->seq.length() > 0) {
    // The fork shares the parent's blocks as they are now; with no text of its own it reruns
    // the parent's last token for the logits of its first.
    a->seq = parent->seq.fork(*kv_);
    if (a->seq.length() >= int(a->tokens.size())) a->seq.truncate(*kv_, int(a->tokens.size()) - 1);
  } else {
    a->request.fork_of = -1;  // (a held parent whose sequence went to the prefix cache)
  }
  a->id = next_id_++;
  RequestStats& st = stats_[a->id];
  st.prompt_tokens = int(a->tokens.size());
  st.cached_tokens = a->seq.length();
  const RequestId id = a->id;
  waiting_.push_back(std::move(a));
  wake_.notify_one();
  return id;
}

void Scheduler::cancel_all() {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& a : running_) cancelled_.push_back(a->id);
  for (const auto& a : waiting_) cancelled_.push_back(a->id);
}

void Scheduler::cancel(RequestId id) {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_.push_back(id);
  wake_.notify_one();
}

void Scheduler::forget(RequestId id) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = stats_.find(id);
  if (it == stats_.end()) fail("no request ", id);
  if (!it->second.finished) fail("request ", id, " has not finished");
  stats_.erase(it);
  std::erase_if(held_, [&](auto& h) {
    if (h->id != id) return false;
    h->seq.release(*kv_);
    return true;
  });
}

void Scheduler::release(RequestId id) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = held_.begin(); it != held_.end(); ++it)
    if ((*it)->id == id) {
      (*it)->seq.release(*kv_);
      held_.erase(it);
      return;
    }
}

bool Scheduler::release_oldest_held() {
  for (auto it = held_.begin(); it != held_.end(); ++it)
    if (!(*it)->seq.blocks().empty()) {
      (*it)->seq.release(*kv_);  // finish() put its blocks in the prefix cache
      return true;
    }
  return false;
}

template <typename List>
void Scheduler::retire_finished(List& list) {
  for (auto it = list.begin(); it != list.end();) {
    if (!(*it)->retired) {
      ++it;
      continue;
    }
    if ((*it)->request.hold) held_.push_back(std::move(*it));
    it = list.erase(it);
  }
}

void Scheduler::start() {
  std::lock_guard<std::mutex> control(control_mu_);
  std::lock_guard<std::mutex> lock(mu_);
  if (loop_.joinable()) return;
  stopping_ = false;
  looping_ = true;
  loop_ = std::thread([this] {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return stopping_ || !waiting_.empty() || !running_.empty() || !cancelled_.empty(); });
        if (stopping_) return;
      }
      bool worked = false;
      try {
        worked = step();
      } catch (const std::exception& e) {
        // (Out of memory in a forward pass, say.) Every request ends, cancelled, rather than
        // the process: their owners see their final events.
        std::fprintf(stderr, "muse: a scheduler step failed: %s; cancelling every request\n", e.what());
        cancel_all();
      }
      if (!worked) {  // work that cannot move yet: wait for news rather than spin
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait_for(lock, std::chrono::milliseconds(10));
      }
    }
  });
}

void Scheduler::stop() {
  // Held across the join, so a start() meanwhile waits instead of starting a second loop.
  std::lock_guard<std::mutex> control(control_mu_);
  if (!loop_.joinable()) return;
  if (loop_.get_id() == std::this_thread::get_id()) fail("the scheduler cannot be stopped from its own callback");
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  loop_.join();
  looping_ = false;
}

RequestStats Scheduler::stats(RequestId id) const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = stats_.find(id);
  if (it == stats_.end()) fail("no request ", id);
  return it->second;
}

size_t Scheduler::kv_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return kv_->bytes_in_use();
}

int Scheduler::running() const {
  std::lock_guard<std::mutex> lock(mu_);
  return int(running_.size());
}

int Scheduler::cached_blocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return prefix_->cached_blocks();
}

int Scheduler::waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return int(waiting_.size());
}

// Takes the cached prefix of a fresh request (a fork already has its parent's blocks).
bool Scheduler::admit(Active& a) {
  if (a.seq.length() == 0 && a.seq.blocks().empty() && a.request.fork_of < 0) {
    std::vector<int32_t> blocks = prefix_->match(a.tokens);
    // At least the last prompt token runs, for the logits of the first new token; writing it
    // copies the shared block it falls in.
    const int covered = std::min(int(blocks.size()) * kv_->block_tokens(), int(a.tokens.size()) - 1);
    a.seq.adopt(std::move(blocks), covered);
    stats_[a.id].cached_tokens = std::max(stats_[a.id].cached_tokens, covered);
  }
  if (!a.was_admitted) {
    a.was_admitted = true;
    a.admitted = Clock::now();
    stats_[a.id].queued_seconds = seconds_between(a.submitted, a.admitted);
  }
  return true;
}

// Room for n more tokens of a: first from the free list, then by evicting cached prefixes,
// then by preempting newer requests.
bool Scheduler::reserve(Active& a, int n) {
  for (;;) {
    if (a.seq.reserve(*kv_, n)) return true;
    const int need = (n + kv_->block_tokens() - 1) / kv_->block_tokens() + 1;
    if (prefix_->evict(need) > 0 || release_oldest_held()) continue;
    if (running_.size() <= 1 || running_.back().get() == &a) return false;
    preempt_newest(&a);
  }
}

void Scheduler::preempt_newest(const Active* keep) {
  for (auto it = running_.end(); it != running_.begin();) {
    --it;
    if (it->get() == keep) continue;
    std::unique_ptr<Active> victim = std::move(*it);
    running_.erase(it);
    // Keep what is reusable in the prefix cache, drop the rest; the request recomputes from
    // its tokens (prompt and what it generated) when it runs again.
    prefix_->insert(std::vector<int32_t>(victim->tokens.begin(), victim->tokens.begin() + victim->seq.length()),
                    victim->seq.blocks());
    victim->seq.release(*kv_);
    victim->request.fork_of = -1;
    ++stats_[victim->id].preemptions;
    waiting_.push_front(std::move(victim));
    return;
  }
}

void Scheduler::finish(Active& a, FinishReason why) {
  RequestStats& st = stats_[a.id];
  st.finished = true;
  st.finish = why;
  if (st.generated > 0) st.decode_seconds = seconds_between(a.first_token, Clock::now());
  st.thinking_tokens = a.thinking.tokens();
  if (a.thinking.inside()) st.thinking_seconds = st.decode_seconds;  // it never stopped thinking
  st.thinking_cut = a.thinking.cut();
  prefix_->insert(std::vector<int32_t>(a.tokens.begin(), a.tokens.begin() + a.seq.length()), a.seq.blocks());
  if (!a.request.hold) a.seq.release(*kv_);
  a.retired = true;
}

bool Scheduler::step() {
  std::vector<Event> events;
  bool worked = false;
  {
    // The whole step holds the lock (submit() waits at most one pass); callbacks run after it.
    std::lock_guard<std::mutex> lock(mu_);
    auto emit = [&](Active& a, int32_t token, bool last, FinishReason why, float confidence = 0,
                    bool inserted = false, float logprob = 0, std::vector<std::pair<int32_t, float>> top = {}) {
      if (a.on_token)
        events.push_back({a.on_token, {a.id, token, last, why, confidence, inserted, logprob, std::move(top)}});
    };
    worked = advance(emit);
  }
  for (Event& e : events) {
    // A callback that throws must not take the others' events (their final ones above all) with it.
    try {
      e.callback(e.event);
    } catch (const std::exception& ex) {
      std::fprintf(stderr, "muse: a token callback failed: %s\n", ex.what());
    }
  }
  return worked || !events.empty();
}

template <typename Emit>
bool Scheduler::advance(const Emit& emit) {
  {
    // Cancellations.
    for (RequestId id : cancelled_) {
      auto drop = [&](auto& list) {
        for (auto& a : list)
          if (a->id == id && !a->retired) {
            finish(*a, FinishReason::kCancelled);
            emit(*a, -1, true, FinishReason::kCancelled);
          }
        retire_finished(list);
      };
      drop(running_);
      drop(waiting_);
    }
    cancelled_.clear();

    // Admission, in order, while there is room. A request whose prompt starts like one still
    // reading its prompt waits for it, so that the shared prefix is computed once and reused.
    const size_t bt = size_t(kv_->block_tokens());
    for (auto it = waiting_.begin(); it != waiting_.end() && int(running_.size()) < config_.max_running;) {
      Active& a = **it;
      bool shares_prefill = false;
      if (a.seq.blocks().empty() && a.tokens.size() > bt)
        for (const auto& r : running_)
          shares_prefill |= stats_[r->id].generated == 0 && r->tokens.size() > bt &&
                            std::equal(a.tokens.begin(), a.tokens.begin() + long(bt), r->tokens.begin());
      if (shares_prefill || (kv_->n_free() == 0 && !running_.empty())) {
        ++it;
        continue;
      }
      admit(a);
      running_.push_back(std::move(*it));
      it = waiting_.erase(it);
    }
    if (running_.empty()) return false;

    // The batch: one token from every generating request first (fairness), then prompt
    // chunks in admission order while the token budget lasts.
    bool finished_any = false;
    struct Slot {
      Active* a;
      int n;
    };
    std::vector<Slot> slots;
    int budget = config_.max_batch_tokens;
    for (int pass = 0; pass < 2; ++pass) {
      for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
        Active* a = running_[i].get();
        const bool decoding = a->pending() == 1;
        if ((pass == 0) != decoding) continue;
        const int n = std::min(a->pending(), budget);
        if (!reserve(*a, n)) {
          if (running_.size() == 1) {
            // Alone and still out of room: the budget cannot hold this request at all.
            finish(*a, FinishReason::kContextFull);
            emit(*a, -1, true, FinishReason::kContextFull);
            finished_any = true;
          } else {
            preempt_newest(nullptr);  // the newest is this request: it waits for the others
          }
          continue;
        }
        slots.push_back({a, n});
        budget -= n;
      }
    }
    // Preemption may have moved requests that already had a slot back to the queue.
    std::erase_if(slots, [&](const Slot& s) {
      return s.a->retired ||
             std::none_of(running_.begin(), running_.end(), [&](const auto& r) { return r.get() == s.a; });
    });
    retire_finished(running_);
    if (slots.empty()) return finished_any;

    std::vector<BatchToken> batch;
    std::vector<const KvSequence*> sequences;
    for (const Slot& s : slots) {
      const int seq = int(sequences.size());
      sequences.push_back(&s.a->seq);
      const int from = s.a->seq.length();
      for (int i = 0; i < s.n; ++i)
        batch.push_back({s.a->tokens[size_t(from + i)], from + i, seq, from + i + 1 == int(s.a->tokens.size())});
    }
    const int V = model_.config().n_vocab;
    int wanted = 0;
    for (const BatchToken& t : batch) wanted += t.logits;
    logits_.resize(size_t(wanted) * V);
    forward_.run(batch, *kv_, sequences, logits_.data());

    // Sample where a sequence reached its end (each request has its own sampler, so they draw
    // in parallel), then retire finished requests in order.
    struct Draw {
      Active* a = nullptr;
      float* logits = nullptr;
      int32_t token = -1;
      float confidence = 0;
      float logprob = 0;
      std::vector<std::pair<int32_t, float>> top;
      bool failed = false;
    };
    std::vector<Draw> draws;
    int row = 0;
    const auto now = Clock::now();
    for (const Slot& s : slots) {
      Active& a = *s.a;
      a.seq.advance(s.n);
      if (stats_[a.id].generated == 0) {
        // Prompt blocks are cached as soon as they are full, for requests that share them.
        prefix_->insert(std::vector<int32_t>(a.tokens.begin(), a.tokens.begin() + a.seq.length()), a.seq.blocks());
      }
      if (a.pending() > 0) continue;  // still reading its prompt
      float* l = logits_.data() + size_t(row++) * V;
      RequestStats& st = stats_[a.id];
      if (st.generated == 0) {
        a.first_token = now;
        st.prefill_seconds = seconds_between(a.admitted, now);
      }
      if (a.request.max_tokens == 0) {
        finish(a, FinishReason::kLength);
        emit(a, -1, true, FinishReason::kLength);
        continue;
      }
      draws.emplace_back();
      draws.back().a = &a;
      draws.back().logits = l;
    }
    pool_.parallel_for(int64_t(draws.size()), [&](int64_t i, int) {
      Draw& d = draws[size_t(i)];
      try {
        ThinkingState& thinking = d.a->thinking;
        const Request& r = d.a->request;
        // Probabilities are the model's: taken before the budget's mask (the sampler copies).
        if (r.confidence_top_k > 0) d.confidence = token_confidence(d.logits, V, r.confidence_top_k);
        std::vector<float> raw;
        if (r.logprobs >= 0) raw.assign(d.logits, d.logits + V);
        thinking.mask(d.logits);
        d.token = thinking.must_close() ? thinking.close_token() : d.a->sampler->sample(d.logits, V);
        d.a->sampler->accept(d.token);
        if (r.logprobs >= 0) d.logprob = token_logprob(raw.data(), V, d.token, r.logprobs, &d.top);
      } catch (...) {  // (submit() validated the settings; this ends only this request)
        d.failed = true;
      }
    });
    for (const Draw& d : draws) {
      Active& a = *d.a;
      if (d.failed) {
        finish(a, FinishReason::kCancelled);
        emit(a, -1, true, FinishReason::kCancelled);
        continue;
      }
      RequestStats& st = stats_[a.id];
      // The sampled token, then whatever the thinking budget inserts after it (those run with
      // the next step, as a short prompt chunk, and count against the token limit).
      const bool was_thinking = a.thinking.inside();
      std::vector<int32_t> out{d.token};
      for (int32_t t : a.thinking.accept(d.token)) out.push_back(t);
      for (size_t k = 0; k < out.size(); ++k) {
        const int32_t t = out[k];
        if (k > 0) {
          a.sampler->accept(t);
          a.thinking.accept_inserted(t);
        }
        a.tokens.push_back(t);
        ++st.generated;
        FinishReason why = FinishReason::kLength;
        bool last = false;
        if (a.request.stop_at_eog && tokenizer_.is_eog(t)) {
          why = FinishReason::kEndOfGeneration;
          last = true;
        } else if (std::find(a.request.stop_tokens.begin(), a.request.stop_tokens.end(), t) !=
                   a.request.stop_tokens.end()) {
          why = FinishReason::kStopString;
          last = true;
        } else if (st.generated >= a.request.max_tokens) {
          last = true;
        } else if (int(a.tokens.size()) >= config_.max_context) {
          why = FinishReason::kContextFull;
          last = true;
        }
        if (was_thinking && !a.thinking.inside() && st.thinking_seconds == 0)
          st.thinking_seconds = std::max(1e-9, seconds_between(a.first_token, now));
        if (k == 0) emit(a, t, last, why, d.confidence, false, d.logprob, d.top);
        else emit(a, t, last, why, 0.0f, true);
        if (last) {
          finish(a, why);
          break;
        }
      }
    }
    retire_finished(running_);
  }
  return true;
}

void Scheduler::run_until_idle() {
  while (step()) {
  }
}

}  // namespace muse
