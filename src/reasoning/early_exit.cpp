#include "reasoning/early_exit.h"

#include <algorithm>
#include <cmath>
#include <mutex>

#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace muse {

std::vector<int32_t> reasoning_boundary_tokens(const Tokenizer& tokenizer) {
  std::vector<int32_t> ids;
  for (int32_t id = 0; id < tokenizer.n_vocab(); ++id) {
    const std::string piece(tokenizer.piece(id, false));
    std::string word = piece;
    word.erase(0, word.find_first_not_of(' '));
    if (piece.find("\n\n") != std::string::npos || word == "Wait" || word == "Alternatively" || word == "But")
      ids.push_back(id);
  }
  return ids;
}

struct EarlyExit::State : std::enable_shared_from_this<State> {
  Scheduler& s;
  Request request;
  EarlyExitParams params;
  TokenCallbackFn on_token;
  // Callbacks run on the stepping thread while done() and result() may be read elsewhere (or
  // from on_token itself: recursive).
  mutable std::recursive_mutex mu;
  RequestId main = -1, trial = -1;
  bool thinking, done = false, following_trial = false;
  int thinking_tokens = 0, last_trial_at = 0, thinking_at_boundary = 0;
  std::vector<std::pair<int32_t, bool>> held;  // the request's tokens after the boundary
  std::vector<int32_t> trial_tokens;
  double trial_probability_sum = 0;
  EarlyExitResult result;

  State(Scheduler& scheduler, Request r, EarlyExitParams p, TokenCallbackFn cb)
      : s(scheduler), request(std::move(r)), params(std::move(p)), on_token(std::move(cb)), thinking(params.starts_inside) {}

  void emit(int32_t token, bool inserted) {
    result.tokens.push_back(token);
    if (!on_token) return;
    TokenEvent e;
    e.id = main;
    e.token = token;
    e.inserted = inserted;
    on_token(e);
  }
  void finish(FinishReason why) {
    done = true;
    result.finish = why;
    if (!result.exited) result.thinking_tokens = thinking_tokens;
    if (!on_token) return;
    TokenEvent e;
    e.id = main;
    e.done = true;
    e.finish = why;
    on_token(e);
  }
  void forget(RequestId id) {
    try {
      s.forget(id);
    } catch (const Error&) {
    }
  }

  void on_main(const TokenEvent& e) {
    if (e.done) forget(e.id);
    if (following_trial || done) return;  // the trial's answer replaced what follows
    if (e.token >= 0) {
      if (thinking) {
        if (e.token == params.close_token) thinking = false;
        else ++thinking_tokens;
      } else if (e.token == params.open_token) {
        thinking = true;
      }
      if (trial >= 0) held.push_back({e.token, e.inserted});
      else emit(e.token, e.inserted);
      if (trial >= 0 && !thinking) decide(false);  // it closed its thinking by itself
      const bool boundary = std::find(params.boundaries.begin(), params.boundaries.end(), e.token) != params.boundaries.end();
      if (thinking && trial < 0 && !e.done && boundary && thinking_tokens - last_trial_at >= params.min_gap)
        start_trial(e.token);
    }
    if (e.done) {
      if (trial >= 0) decide(false);
      finish(e.finish);
    }
  }

  void start_trial(int32_t boundary) {
    Request t;
    t.fork_of = main;
    t.prompt = {boundary, params.close_token};
    t.prompt.insert(t.prompt.end(), params.trial_cue.begin(), params.trial_cue.end());
    t.max_tokens = request.max_tokens - int(result.tokens.size()) - 1 - int(params.trial_cue.size());
    if (t.max_tokens < 1) return;
    t.sampling = request.sampling;
    t.sampling.temperature = 0;  // the trial answer is the model's most likely one
    t.confidence_top_k = 1;      // so each event's confidence is -log p(top-1)
    t.stop_at_eog = request.stop_at_eog;
    try {
      trial = s.submit(std::move(t), [self = shared_from_this()](const TokenEvent& e) {
        std::lock_guard<std::recursive_mutex> lock(self->mu);
        self->on_trial(e);
      });
    } catch (const Error&) {
      return;  // (the request cannot be forked just now: no trial at this boundary)
    }
    last_trial_at = thinking_at_boundary = thinking_tokens;
    trial_tokens.clear();
    trial_probability_sum = 0;
    ++result.trials;
  }

  void on_trial(const TokenEvent& e) {
    if (e.done) forget(e.id);
    if (e.id != trial || done) return;  // a trial already decided against
    if (following_trial) {
      if (e.token >= 0) emit(e.token, false);
      if (e.done) finish(e.finish);
      return;
    }
    if (e.token >= 0) {
      trial_tokens.push_back(e.token);
      trial_probability_sum += std::exp(-double(e.confidence));
    }
    if (int(trial_tokens.size()) >= params.trial_tokens || e.done) {
      const bool confident = !trial_tokens.empty() && e.finish != FinishReason::kCancelled &&
                             trial_probability_sum / double(trial_tokens.size()) >= double(params.threshold);
      decide(confident);
      if (following_trial && e.done) finish(e.finish);
    }
  }

  void decide(bool confident) {
    if (!confident) {
      s.cancel(trial);  // (harmless when it has ended)
      trial = -1;
      for (const auto& [token, inserted] : held) emit(token, inserted);
      held.clear();
      return;
    }
    following_trial = true;
    s.cancel(main);
    held.clear();
    result.exited = true;
    result.thinking_tokens = thinking_at_boundary;
    emit(params.close_token, true);
    for (int32_t t : params.trial_cue) emit(t, true);
    for (int32_t t : trial_tokens) emit(t, false);
  }
};

EarlyExit::EarlyExit(Scheduler& scheduler, Request request, EarlyExitParams params, TokenCallbackFn on_token) {
  if (params.close_token < 0) fail("early exit: the token that closes thinking is required");
  if (params.trial_tokens < 1 || !(params.threshold >= 0)) fail("early exit: bad trial length or threshold");
  state_ = std::make_shared<State>(scheduler, std::move(request), std::move(params), std::move(on_token));
  std::lock_guard<std::recursive_mutex> lock(state_->mu);
  // The callbacks keep the state alive until the scheduler's last event for it.
  state_->main = scheduler.submit(state_->request, [self = state_](const TokenEvent& e) {
    std::lock_guard<std::recursive_mutex> lock(self->mu);
    self->on_main(e);
  });
}

EarlyExit::~EarlyExit() {
  std::lock_guard<std::recursive_mutex> lock(state_->mu);
  if (state_->done) return;
  state_->done = true;  // later events are ignored; the scheduler ends what still runs
  state_->s.cancel(state_->main);
  if (state_->trial >= 0) state_->s.cancel(state_->trial);
}

bool EarlyExit::done() const {
  std::lock_guard<std::recursive_mutex> lock(state_->mu);
  return state_->done;
}

EarlyExitResult EarlyExit::result() const {
  std::lock_guard<std::recursive_mutex> lock(state_->mu);
  return state_->result;
}

RequestId EarlyExit::id() const { return state_->main; }

}  // namespace muse
