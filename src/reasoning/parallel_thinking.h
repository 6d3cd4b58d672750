// Parallel thinking without model support (one of Contemplating mode's three ways in): N
// independent sampled traces from the same prompt run together in the batched scheduler (the
// prompt is computed once and shared through the prefix cache), traces whose confidence drops
// below a threshold are stopped early, and the answers of the rest are combined by a
// confidence-weighted vote, as DeepConf does ("Deep Think with Confidence", Fu et al. 2025).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime/sampler.h"
#include "runtime/scheduler.h"
#include "util/json.h"

namespace muse {

class Tokenizer;

struct ParallelThinkingParams {
  int traces = 4;
  int max_tokens = 512;     // per trace
  SamplingParams sampling;  // trace i samples with seed + i
  int top_k = 5;            // token confidence over the k most likely tokens
  int window = 16;          // tokens per group confidence (a sliding mean)
  int warmup = 32;          // tokens a trace runs before it may be stopped
  float stop_below = 0;     // stop a trace once a window's confidence falls below; 0: never
  ThinkingBudget thinking;  // per trace (also what counts its thinking tokens)
  // The answer in a trace's text ("" when it has none); by default the text after the last
  // "</think>", trimmed.
  std::function<std::string(const std::string& text)> extract_answer;
};

struct TraceResult;
// Called after every step with the traces so far (tokens, confidence, stopped), for live views.
using TracesCallback = std::function<void(const std::vector<TraceResult>& traces)>;

struct TraceResult {
  RequestId id = -1;
  std::vector<int32_t> tokens;
  std::string text, answer;
  float confidence = 0;  // the lowest window confidence seen (DeepConf's "lowest group")
  bool stopped_early = false;
  bool finished = false;  // the trace has ended (by itself, stopped or cut off)
  int cached_prompt_tokens = 0;
  int thinking_tokens = 0;
};

struct ParallelThinkingResult {
  std::vector<TraceResult> traces;
  std::string answer;        // the vote's winner ("" when no trace answered)
  double answer_weight = 0;  // its share of the voting weight, in [0, 1]
  int generated_tokens = 0;  // across all traces
  int thinking_tokens = 0;   // of those, inside thinking blocks
};

// The traces of one prompt, running on a scheduler that someone steps (this thread, its own
// loop, or a caller running several of these at once).
class ParallelThinking {
 public:
  ParallelThinking(Scheduler& scheduler, const Tokenizer& tokenizer, const std::vector<int32_t>& prompt,
                   const ParallelThinkingParams& params);
  ~ParallelThinking();  // cancels traces still running
  ParallelThinking(const ParallelThinking&) = delete;
  ParallelThinking& operator=(const ParallelThinking&) = delete;

  bool done() const;
  std::vector<TraceResult> traces() const;  // so far (tokens, confidence, stopped)
  ParallelThinkingResult result() const;    // once done(): texts, answers, the vote

 private:
  void abandon();
  struct State;
  std::shared_ptr<State> state_;  // shared with the scheduler's callbacks
};

// Runs the traces on `scheduler`, stepping it on this thread (the scheduler must not be
// running its own loop).
ParallelThinkingResult think_in_parallel(Scheduler& scheduler, const Tokenizer& tokenizer,
                                         const std::vector<int32_t>& prompt,
                                         const ParallelThinkingParams& params,
                                         const TracesCallback& on_step = {});

// The answer with the largest summed confidence among traces that have one (ties: the answer
// seen first); `share` gets its weight over the total.
std::string confidence_weighted_vote(const std::vector<TraceResult>& traces,
                                     double* share = nullptr);

// The synthesis pass (the other way to join traces): the conversation with its last user turn
// extended by the traces' answers (each with its confidence), asking the model to compare them
// and give one final answer. One user turn, so templates that insist on alternating roles accept it.
Json synthesis_messages(const Json& messages, const std::vector<TraceResult>& traces);

// The default answer extractor: the text after the last "</think>" (or all of it), trimmed.
std::string answer_after_thinking(const std::string& text);

}  // namespace muse
