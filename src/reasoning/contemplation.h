// Contemplating mode: an agent spawns sub-agents for sub-tasks, they run in parallel in the
// batched scheduler, and the agent waits (join) and continues with their results.
//
// One mechanism, two ways in (a SpawnProtocol says how an agent asks and how results return):
//  - native spawn/join markup (MarkupProtocol): the agent writes <spawn>task</spawn>... then
//    <join>; each sub-agent is a fork of the agent's held sequence followed by <task>task</task>
//    (the shared prefix is never recomputed), and the agent resumes from its own held sequence
//    followed by <result>...</result> per sub-agent;
//  - a `spawn_agent` tool (ToolProtocol): the agent calls the tool, OpenAI-style; each sub-agent
//    continues the conversation with its task as the next user turn, and each result returns as
//    the tool result (re-rendered through the chat template; the prefix cache shares the prompt).
// (The third way in, parallel thinking without model support, is in parallel_thinking.h.)
//
// Limits on width, depth, total tokens and time; a sub-agent that ends without an answer (stopped
// mid-thought by its token limit, failed or cancelled) returns its protocol's no-answer result
// (a bracketed note saying why, or the word a model was trained to read), so the parent always
// resumes and never hangs.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "chat/chat_template.h"
#include "chat/output_parser.h"
#include "runtime/sampler.h"
#include "runtime/scheduler.h"
#include "util/json.h"

namespace muse {

class GgufFile;
class Tokenizer;

enum class AgentStatus { kRunning, kWaiting, kDone, kFailed, kCancelled };
const char* agent_status_name(AgentStatus s);

// What one agent did (live during the run, final in the result).
struct AgentView {
  int index = 0;
  int parent = -1;  // -1: the root
  int depth = 0;
  std::string task;    // the task its parent gave it ("" for the root)
  std::string text;    // everything it generated, special tokens rendered, results spliced in
  std::string result;  // its answer, as returned to its parent
  int tokens = 0;           // generated (inserted budget tokens included)
  int thinking_tokens = 0;  // of those, inside its thinking block
  int segments = 0;         // requests it ran (one more after every join)
  int prompt_tokens = 0;    // over its requests: tokens each continued from
  int cached_tokens = 0;    // of those, shared with its parent or cached (not recomputed)
  std::vector<int> children;
  AgentStatus status = AgentStatus::kRunning;
  std::string note;  // why it failed or was cancelled
};

// A request's start: tokens appended to the agent's held sequence (fork), or a whole prompt.
struct Continuation {
  bool fork = true;
  std::vector<int32_t> tokens;
};

class SpawnProtocol {
 public:
  virtual ~SpawnProtocol() = default;
  // The tasks the agent asks for, given the text of its current segment; nullopt: none (yet).
  // `ended`: the segment's request has ended by itself.
  virtual std::optional<std::vector<std::string>> spawn_request(AgentView& agent, const std::string& segment,
                                                                bool ended) = 0;
  virtual Continuation child_start(const AgentView& parent, const AgentView& child) = 0;
  virtual Continuation parent_resume(const AgentView& parent, const std::vector<std::string>& results) = 0;
  // The answer an agent returns, from everything it generated.
  virtual std::string answer(const AgentView& agent) const = 0;
  // Text that opens the first segment of an agent (e.g. an open thinking block).
  virtual bool starts_in_thinking(const AgentView& agent) const = 0;
  // Tokens after which an agent's request stops by itself (its join tag), so its held sequence
  // ends exactly there.
  virtual std::vector<int32_t> stop_tokens() const { return {}; }
  // The result of a sub-agent that ended without an answer, `why` saying how.
  virtual std::string no_answer(const std::string& why) const { return "[" + why + "]"; }
};

// Native markup; the tags are configurable per model.
struct SpawnMarkup {
  std::string spawn_open = "<spawn>", spawn_close = "</spawn>", join = "<join>";
  std::string task_open = "<task>", task_close = "</task>";
  std::string result_open = "<result>", result_close = "</result>";
  // What a sub-agent without an answer returns: the word Muse's model reads as "this branch found
  // nothing" (its training children answer "none"); "": a bracketed note saying why.
  std::string no_answer = "none";
};

// The tags a model was trained with, from its GGUF metadata (muse.spawn.open, .close, .join,
// .task_open, .task_close, .result_open, .result_close, .no_answer); the defaults where absent.
SpawnMarkup spawn_markup_from(const GgufFile& file);

// When the join tag is one token, an agent's request stops right after it, so its held sequence
// ends exactly there. (Otherwise, with a scheduler running its own loop, a token or two sampled
// between the join and the cancel stay in the held sequence, though not in the agent's text.)
class MarkupProtocol : public SpawnProtocol {
 public:
  MarkupProtocol(const Tokenizer& tokenizer, SpawnMarkup markup = {}, bool root_starts_in_thinking = false);
  std::optional<std::vector<std::string>> spawn_request(AgentView& agent, const std::string& segment,
                                                        bool ended) override;
  Continuation child_start(const AgentView& parent, const AgentView& child) override;
  Continuation parent_resume(const AgentView& parent, const std::vector<std::string>& results) override;
  std::string answer(const AgentView& agent) const override;
  bool starts_in_thinking(const AgentView& agent) const override;
  std::vector<int32_t> stop_tokens() const override;
  std::string no_answer(const std::string& why) const override;

 private:
  const Tokenizer& tokenizer_;
  SpawnMarkup markup_;
  bool root_starts_in_thinking_;
};

// The `spawn_agent` tool's OpenAI-style definition.
Json spawn_agent_tool();

class ToolProtocol : public SpawnProtocol {
 public:
  // `root_messages`: the conversation the root's prompt was rendered from (with `tools`
  // including spawn_agent_tool()).
  ToolProtocol(const Tokenizer& tokenizer, const ChatTemplate& chat_template, Json root_messages, Json tools,
               bool enable_thinking = true);
  // The root's prompt tokens.
  std::vector<int32_t> root_prompt();
  std::optional<std::vector<std::string>> spawn_request(AgentView& agent, const std::string& segment,
                                                        bool ended) override;
  Continuation child_start(const AgentView& parent, const AgentView& child) override;
  Continuation parent_resume(const AgentView& parent, const std::vector<std::string>& results) override;
  std::string answer(const AgentView& agent) const override;
  bool starts_in_thinking(const AgentView& agent) const override;

 private:
  struct Conversation {
    Json messages;
    Json pending_assistant;  // the message that asked for sub-agents
    std::vector<std::string> call_ids;
    std::string last_content;  // the parsed answer of the last segment
    bool opens_thinking = false;  // its last prompt ends inside an open reasoning block
  };
  Conversation& conversation(int agent);
  std::vector<int32_t> render(int agent, const Json& messages);

  const Tokenizer& tokenizer_;
  const ChatTemplate& template_;
  Json tools_;
  bool enable_thinking_;
  OutputFormat format_;
  std::vector<Conversation> conversations_;  // by agent index
};

struct AgentLimits {
  int max_width = 4;             // sub-agents per join (more are answered with a note)
  int max_depth = 1;             // levels of sub-agents below the root
  int max_total_tokens = 8192;   // generated by all agents together
  double max_seconds = 0;        // wall time; 0: none
};

struct ContemplationParams {
  AgentLimits limits;
  int max_tokens_per_agent = 1024;
  SamplingParams sampling;  // agent i samples with seed + i
  // Per agent: the thinking budget (-1: none), and the reasoning tags, cue and minimum (with the
  // tags set, agents' thinking tokens are counted; max_tokens is set per agent).
  int thinking_budget = -1;
  ThinkingBudget thinking;
  // Called for every request an agent makes, to give agents their own settings.
  std::function<void(const AgentView& agent, Request& request)> configure;
  // Polled between steps: true cancels every agent (a client that went away).
  std::function<bool()> should_stop;
};

struct ContemplationResult {
  std::vector<AgentView> agents;  // [0] is the root
  std::string answer;             // the root's
  int total_tokens = 0;
  double seconds = 0;
  std::string limit;  // the limit that stopped the run, or ""
};

using AgentsCallback = std::function<void(const std::vector<AgentView>& agents)>;

// Runs the root agent from `root_prompt` on `scheduler` until it ends: stepping the scheduler on
// this thread, or, when it runs its own loop (start()), waiting for its events. on_step sees
// the agents after every step (or every event batch).
ContemplationResult contemplate(Scheduler& scheduler, const Tokenizer& tokenizer, SpawnProtocol& protocol,
                                const std::vector<int32_t>& root_prompt, const ContemplationParams& params,
                                const AgentsCallback& on_step = {});

// The same run driven by its caller, so that several share one batch: the caller steps the
// scheduler and polls every run after each step. Destroying an unfinished run cancels its agents.
class AgentRun {
 public:
  AgentRun(Scheduler& scheduler, const Tokenizer& tokenizer, SpawnProtocol& protocol,
           const std::vector<int32_t>& root_prompt, ContemplationParams params);
  ~AgentRun();
  AgentRun(const AgentRun&) = delete;
  AgentRun& operator=(const AgentRun&) = delete;
  bool poll();  // true once the root agent has ended
  const ContemplationResult& result() const;
  int tokens_so_far() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace muse
