// Early exit from thinking when a trial answer is already confident, as in DEER ("Dynamic Early
// Exit in Reasoning Models", Yang et al. 2025). At a reasoning boundary (a paragraph break, a
// "Wait"), a trial fork of the request closes its thinking, is cued to answer, and answers
// greedily; if the mean top-1 probability of the trial's first tokens reaches the threshold, the
// trial becomes the reply and the thinking stops there. Otherwise the trial is dropped and the
// thinking goes on.
//
// In the batched engine the trial runs beside the request, so the request does not wait: its
// tokens after the boundary are held back until the trial is decided, then either released or
// dropped.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime/scheduler.h"

namespace muse {

class Tokenizer;

struct EarlyExitParams {
  int32_t close_token = -1;  // closes thinking (e.g. </think>); required
  int32_t open_token = -1;   // opens it (e.g. <think>), for models that open it themselves
  bool starts_inside = true;  // the prompt opened it
  std::vector<int32_t> boundaries;  // tokens after which a trial is made
  std::vector<int32_t> trial_cue;   // inserted after the close, before the trial answer
  int trial_tokens = 8;             // tokens of the trial answer the decision looks at
  float threshold = 0.95f;          // mean top-1 probability that ends thinking
  int min_gap = 16;                 // thinking tokens before the first trial and between trials
};

// The tokens that end a step of reasoning: those whose text holds a paragraph break, and the
// words that start a new one ("Wait", "Alternatively", "But").
std::vector<int32_t> reasoning_boundary_tokens(const Tokenizer& tokenizer);

struct EarlyExitResult {
  std::vector<int32_t> tokens;  // the reply as streamed
  FinishReason finish = FinishReason::kLength;
  int thinking_tokens = 0;  // up to the end of thinking (the exit point, when it exited)
  int trials = 0;
  bool exited = false;  // a trial answer was confident and became the reply
};

// One request with early exit. Submit it, step the scheduler (on this thread or its own loop:
// all work happens in scheduler callbacks); `on_token` sees the reply's tokens in order
// (inserted ones flagged) and a final event with done set.
class EarlyExit {
 public:
  EarlyExit(Scheduler& scheduler, Request request, EarlyExitParams params, TokenCallbackFn on_token = {});
  // Cancels what still runs (events that arrive later find the state still alive).
  ~EarlyExit();
  EarlyExit(const EarlyExit&) = delete;
  EarlyExit& operator=(const EarlyExit&) = delete;

  bool done() const;
  EarlyExitResult result() const;
  RequestId id() const;  // the request's id: the id its events carry

 private:
  struct State;
  std::shared_ptr<State> state_;  // shared with the scheduler's callbacks
};

}  // namespace muse
