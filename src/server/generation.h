// One API request's generation on the shared scheduler: its choices run as scheduler requests
// (the prompt computed once and shared), their token events cross from the scheduler's thread to
// the HTTP handler's, and come out as OpenAI-style deltas: text split into reasoning, content and
// tool calls, stop strings applied, log-probabilities attached.
#pragma once
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "chat/output_parser.h"
#include "runtime/scheduler.h"
#include "runtime/stop.h"
#include "server/api.h"
#include "tokenizer/tokenizer.h"
#include "util/json.h"

namespace muse {

class ChatTemplate;
class Model;
class ParallelThinking;
struct TraceResult;

// What the server generates with, shared by every request.
struct Engine {
  const Model& model;
  const Tokenizer& tokenizer;
  const ChatTemplate& chat_template;
  Scheduler& scheduler;
  OutputFormat format;                  // the template's reasoning and tool-call syntax
  std::optional<ThinkingBudget> tags;   // single-token reasoning tags, when the model has them
  std::string model_name;
  ServerLimits limits;
  Engine(const Model& m, const Tokenizer& t, const ChatTemplate& c, Scheduler& s, std::string name, ServerLimits l);
};

// A choice's new output since the last poll.
struct Delta {
  int choice = 0;
  std::string reasoning, content;
  std::vector<ToolCall> tool_calls;
  Json logprobs;              // array of OpenAI logprob entries, or null
  std::string finish_reason;  // set on the choice's last delta
};

struct ChoiceTotals {
  std::string reasoning, content;
  std::vector<ToolCall> tool_calls;
  Json logprobs = Json(Json::Array{});
  int tokens = 0, reasoning_tokens = 0;
  // Times, from the scheduler: reading the prompt (queueing included), then decoding, of which
  // the reasoning took the first part.
  double prompt_seconds = 0, decode_seconds = 0, reasoning_seconds = 0;
  std::string finish_reason;
  bool done = false;
};

struct GenerationSpec {
  std::vector<int32_t> prompt;
  int n = 1;
  int max_tokens = 16;
  SamplingParams sampling;
  std::vector<std::string> stop;
  std::string grammar;
  ThinkingBudget thinking;
  int logprobs = -1;       // top alternatives per token; -1: no log-probabilities
  OutputFormat format;     // how to split the output
  bool raw = false;        // no splitting: the text exactly as generated (completions)
  uint64_t id_seed = 0;    // tool call ids
};

class Generation {
 public:
  // Submits the choices; throws ApiError for a prompt that does not fit.
  Generation(Engine& engine, GenerationSpec spec);
  ~Generation();  // cancels what still runs
  Generation(const Generation&) = delete;
  Generation& operator=(const Generation&) = delete;

  // Waits up to `wait` for news and returns the deltas (possibly none).
  std::vector<Delta> poll(std::chrono::milliseconds wait);
  bool done() const;
  void cancel();
  const std::vector<ChoiceTotals>& totals() const { return totals_; }
  int prompt_tokens() const { return int(spec_.prompt.size()); }
  int cached_prompt_tokens() const { return cached_; }
  // Seconds from construction to the first generated token (0 before it).
  double time_to_first_token() const { return ttft_; }

 private:
  struct Queue;
  struct Choice;
  void on_event(int choice, const TokenEvent& e, std::vector<Delta>& out);
  Json logprob_entry(int32_t token, float logprob, const std::vector<std::pair<int32_t, float>>& top) const;

  Engine& engine_;
  GenerationSpec spec_;
  std::shared_ptr<Queue> queue_;  // shared with the scheduler's callbacks
  std::vector<std::unique_ptr<Choice>> choices_;
  std::vector<ChoiceTotals> totals_;
  std::chrono::steady_clock::time_point start_;
  double ttft_ = 0;
  int cached_ = 0;
};

// Contemplating mode for one chat request: parallel thinking traces, then a vote or a synthesis
// turn; lanes for live views along the way.
class Contemplation {
 public:
  Contemplation(Engine& engine, const ChatParams& params);
  ~Contemplation();
  // Waits up to `wait`; returns the agents' lanes when they changed (null otherwise) and the
  // answer's deltas once it is known.
  struct Update {
    Json lanes;
    std::vector<Delta> deltas;
  };
  Update poll(std::chrono::milliseconds wait);
  bool done() const;
  void cancel();
  const ChoiceTotals& totals() const { return totals_; }
  int prompt_tokens() const { return int(prompt_.size()); }
  int generated_tokens() const { return generated_; }
  Json trace() const;  // every agent's tokens, confidence, answer

 private:
  Json lanes_of(const std::vector<TraceResult>& traces) const;

  Engine& engine_;
  ChatParams params_;
  std::vector<int32_t> prompt_;
  std::unique_ptr<ParallelThinking> traces_;
  std::unique_ptr<Generation> synthesis_;
  std::string last_lanes_;  // the lanes last reported, as text
  Json final_traces_;
  ChoiceTotals totals_;
  int generated_ = 0;
  bool finished_ = false;
};

// What a chat request generates: its prompt, choices, sampling, constraints and thinking bounds.
GenerationSpec chat_generation_spec(const Engine& engine, const ChatParams& params);

// Contemplating mode with sub-agents (muse.contemplate.mode "tool" or "markup") for one chat
// request: blocks until the root agent ends. on_lanes sees the agents after every step;
// should_stop (polled) cancels them all.
struct AgentsOutcome {
  std::string answer;
  Json trace;  // every agent: parent, depth, task, status, tokens, result
  int prompt_tokens = 0, generated_tokens = 0, reasoning_tokens = 0;
  std::string limit;  // the limit that stopped it, or ""
};
AgentsOutcome run_agents(Engine& engine, const ChatParams& params, const std::function<void(const Json& lanes)>& on_lanes,
                         const std::function<bool()>& should_stop);

// The chat request's prompt tokens and whether the prompt opens the reasoning block.
std::vector<int32_t> chat_prompt(const Engine& engine, const ChatParams& params, bool* opens_reasoning);

}  // namespace muse
