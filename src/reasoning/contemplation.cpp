#include "reasoning/contemplation.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <deque>
#include <optional>
#include <map>

#include "chat/chat_engine.h"
#include "io/gguf.h"
#include "reasoning/parallel_thinking.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace muse {

const char* agent_status_name(AgentStatus s) {
  switch (s) {
    case AgentStatus::kRunning:
      return "running";
    case AgentStatus::kWaiting:
      return "waiting";
    case AgentStatus::kDone:
      return "done";
    case AgentStatus::kFailed:
      return "failed";
    case AgentStatus::kCancelled:
      return "cancelled";
  }
  return "?";
}

namespace {

std::vector<int32_t> plain_tokens(const Tokenizer& tokenizer, const std::string& text) {
  // Tags may be control tokens of a model trained with them: parse special text.
  return tokenizer.encode(text, {.add_special = false, .parse_special = true});
}

}  // namespace

// ---- Native markup ----

SpawnMarkup spawn_markup_from(const GgufFile& file) {
  SpawnMarkup tags;
  for (auto [key, field] : {std::pair{"open", &tags.spawn_open}, {"close", &tags.spawn_close}, {"join", &tags.join},
                            {"task_open", &tags.task_open}, {"task_close", &tags.task_close},
                            {"result_open", &tags.result_open}, {"result_close", &tags.result_close},
                            {"no_answer", &tags.no_answer}})
    *field = file.get_string(std::string("muse.spawn.") + key, *field);
  return tags;
}

MarkupProtocol::MarkupProtocol(const Tokenizer& tokenizer, SpawnMarkup markup, bool root_starts_in_thinking)
    : tokenizer_(tokenizer), markup_(std::move(markup)), root_starts_in_thinking_(root_starts_in_thinking) {
  if (markup_.spawn_open.empty() || markup_.spawn_close.empty() || markup_.join.empty())
    fail("spawn markup: the spawn and join tags must not be empty");
}

std::optional<std::vector<std::string>> MarkupProtocol::spawn_request(AgentView&, const std::string& segment,
                                                                      bool ended) {
  if (ended) return std::nullopt;  // a segment that ends without a join asked for nothing
  const size_t join = segment.find(markup_.join);
  if (join == std::string::npos) return std::nullopt;
  std::vector<std::string> tasks;
  for (size_t at = segment.find(markup_.spawn_open); at < join; at = segment.find(markup_.spawn_open, at)) {
    const size_t begin = at + markup_.spawn_open.size();
    const size_t end = segment.find(markup_.spawn_close, begin);
    if (end == std::string::npos || end > join) break;  // an unclosed spawn is not a task
    tasks.push_back(segment.substr(begin, end - begin));
    at = end + markup_.spawn_close.size();
  }
  return tasks;
}

Continuation MarkupProtocol::child_start(const AgentView&, const AgentView& child) {
  return {true, plain_tokens(tokenizer_, markup_.task_open + child.task + markup_.task_close)};
}

Continuation MarkupProtocol::parent_resume(const AgentView&, const std::vector<std::string>& results) {
  std::string text;
  for (const std::string& r : results) text += markup_.result_open + r + markup_.result_close;
  return {true, plain_tokens(tokenizer_, text)};
}

std::string MarkupProtocol::answer(const AgentView& agent) const {
  // What follows the last returned result (or the task, for a sub-agent's own output).
  const size_t last = markup_.result_close.empty() ? std::string::npos : agent.text.rfind(markup_.result_close);
  return answer_after_thinking(last == std::string::npos ? agent.text : agent.text.substr(last + markup_.result_close.size()));
}

std::string MarkupProtocol::no_answer(const std::string& why) const {
  return markup_.no_answer.empty() ? SpawnProtocol::no_answer(why) : markup_.no_answer;
}

std::vector<int32_t> MarkupProtocol::stop_tokens() const {
  const int32_t join = tokenizer_.find(markup_.join);
  return join >= 0 ? std::vector<int32_t>{join} : std::vector<int32_t>{};
}

bool MarkupProtocol::starts_in_thinking(const AgentView&) const {
  // Sub-agents fork their parent mid-thought: their text continues inside its block.
  return root_starts_in_thinking_;
}

// ---- The spawn_agent tool ----

Json spawn_agent_tool() {
  return Json::parse(R"({"type":"function","function":{"name":"spawn_agent","description":)"
                     R"("Start a sub-agent that works on one self-contained sub-task in parallel with others; )"
                     R"(its answer comes back as this call's result. Call it several times in one turn to )"
                     R"(run several sub-agents at once.","parameters":{"type":"object","properties":{"task":)"
                     R"({"type":"string","description":"The sub-task, stated so that it can be solved alone."}},)"
                     R"("required":["task"]}}})");
}

ToolProtocol::ToolProtocol(const Tokenizer& tokenizer, const ChatTemplate& chat_template, Json root_messages,
                           Json tools, bool enable_thinking)
    : tokenizer_(tokenizer),
      template_(chat_template),
      tools_(std::move(tools)),
      enable_thinking_(enable_thinking),
      format_(detect_output_format(chat_template.source())) {
  if (format_.tool_calls == ToolCallSyntax::kNone)
    fail("the spawn_agent tool needs a chat template that supports tool calls");
  conversations_.push_back({std::move(root_messages), Json(), {}, "", false});
}

ToolProtocol::Conversation& ToolProtocol::conversation(int agent) {
  if (size_t(agent) >= conversations_.size()) conversations_.resize(size_t(agent) + 1);
  return conversations_[size_t(agent)];
}

std::vector<int32_t> ToolProtocol::render(int agent, const Json& messages) {
  ChatRequest request;
  request.messages = messages;
  request.tools = tools_;
  request.enable_thinking = enable_thinking_;
  const std::string rendered = render_chat_prompt(template_, request);
  conversation(agent).opens_thinking = prompt_opens_reasoning(rendered, format_.reasoning);
  return chat_prompt_tokens(tokenizer_, rendered);
}

std::vector<int32_t> ToolProtocol::root_prompt() { return render(0, conversations_[0].messages); }

std::optional<std::vector<std::string>> ToolProtocol::spawn_request(AgentView& agent, const std::string& segment,
                                                                    bool ended) {
  if (!ended) return std::nullopt;  // calls are complete only at the end of the turn
  OutputFormat format = format_;
  format.starts_in_reasoning = starts_in_thinking(agent);
  OutputParser parser(format, uint64_t(agent.index) * 7919 + uint64_t(agent.segments));
  parser.feed(segment);
  parser.finish();
  ChatReply reply;
  reply.reasoning = parser.total().reasoning;
  reply.content = parser.total().content;
  reply.tool_calls = parser.total().tool_calls;
  Conversation& c = conversation(agent.index);
  c.last_content = reply.content;
  std::vector<std::string> tasks;
  c.call_ids.clear();
  for (const ToolCall& call : reply.tool_calls) {
    if (call.name != "spawn_agent") continue;
    std::string task;
    try {
      const Json args = Json::parse(call.arguments);
      if (const Json* t = args.is_object() ? args.find("task") : nullptr; t && t->is_string()) task = t->as_string();
    } catch (const Error&) {
    }
    tasks.push_back(task.empty() ? call.arguments : task);
    c.call_ids.push_back(call.id);
  }
  if (tasks.empty()) return std::nullopt;
  c.pending_assistant = reply.message();
  return tasks;
}

Continuation ToolProtocol::child_start(const AgentView& parent, const AgentView& child) {
  Json messages = conversation(parent.index).messages;
  messages.mutable_array().push_back(conversation(parent.index).pending_assistant);
  Json::Object user;
  user.emplace("role", Json("user"));
  user.emplace("content", Json("You are a sub-agent working on one part of the task above. Your task: " + child.task +
                               "\nReply with the result of your task only."));
  messages.mutable_array().push_back(Json(std::move(user)));
  conversation(child.index).messages = messages;
  return {false, render(child.index, messages)};
}

Continuation ToolProtocol::parent_resume(const AgentView& parent, const std::vector<std::string>& results) {
  Conversation& c = conversation(parent.index);
  c.messages.mutable_array().push_back(c.pending_assistant);
  for (size_t i = 0; i < results.size(); ++i) {
    Json::Object tool;
    tool.emplace("role", Json("tool"));
    tool.emplace("tool_call_id", Json(i < c.call_ids.size() ? c.call_ids[i] : std::string()));
    tool.emplace("name", Json("spawn_agent"));
    tool.emplace("content", Json(results[i]));
    c.messages.mutable_array().push_back(Json(std::move(tool)));
  }
  c.pending_assistant = Json();
  return {false, render(parent.index, c.messages)};
}

std::string ToolProtocol::answer(const AgentView& agent) const {
  const size_t i = size_t(agent.index);
  return i < conversations_.size() ? conversations_[i].last_content : std::string();
}

bool ToolProtocol::starts_in_thinking(const AgentView& agent) const {
  // (Every segment's prompt is a fresh render ending in the generation prompt.)
  const size_t i = size_t(agent.index);
  return i < conversations_.size() && conversations_[i].opens_thinking;
}

// ---- The run ----

namespace {

using Clock = std::chrono::steady_clock;

class Run {
 public:
  Run(Scheduler& scheduler, const Tokenizer& tokenizer, SpawnProtocol& protocol, const ContemplationParams& params)
      : s_(scheduler), tokenizer_(tokenizer), protocol_(protocol), params_(params), start_(Clock::now()) {
    if (params.limits.max_width < 1 || params.limits.max_depth < 0 || params.limits.max_total_tokens < 1 ||
        params.max_tokens_per_agent < 1)
      fail("contemplation: width, total tokens and tokens per agent must be positive, depth not negative");
  }

  // Starts the root agent.
  void begin(const std::vector<int32_t>& root_prompt) {
    add_agent(-1, "");
    submit(0, {false, root_prompt});
  }

  // Takes the events that arrived and applies the limits; whether anything changed.
  bool poll() {
    try {
      const bool changed = process_events();
      check_limits();
      return changed;
    } catch (...) {
      cancel_requests();
      throw;  // (the callbacks hold only the inbox, which outlives this object)
    }
  }

  bool root_ended() const { return ended(agents_[0]); }

  ContemplationResult run(const std::vector<int32_t>& root_prompt, const AgentsCallback& on_step) {
    const bool stepping = !s_.looping();
    try {
      begin(root_prompt);
      for (;;) {
        bool worked = false;
        if (stepping) worked = s_.step();
        else inbox_->wait(std::chrono::milliseconds(50));
        const bool changed = poll();
        if (on_step) on_step(views());
        if (root_ended()) break;
        if (stepping && !worked && !changed) break;  // nothing can move any more
      }
    } catch (...) {
      cancel_requests();
      throw;
    }
    return finish();
  }

  // Whatever has not ended never will (the root ended, or nothing is left to step); no parent
  // resumes now.
  ContemplationResult finish() {
    stopping_ = true;
    for (Agent& a : agents_)
      if (!ended(a)) end_agent(a, AgentStatus::kFailed, "stalled");
    ContemplationResult out;
    out.agents = views();
    out.answer = agents_[0].view.status == AgentStatus::kDone ? agents_[0].view.result : "";
    out.total_tokens = total_tokens_;
    out.seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    out.limit = limit_;
    return out;
  }

  int total_tokens() const { return total_tokens_; }

  void cancel_requests() {
    for (Agent& a : agents_)
      if (a.request >= 0) {
        try {
          s_.cancel(a.request);
        } catch (const Error&) {
        }
      }
  }

 private:
  struct Agent {
    AgentView view;
    RequestId request = -1;
    std::unique_ptr<StreamDecoder> decoder;
    std::string segment;  // text of the current request
    bool joining = false;  // asked for sub-agents; its request is being stopped
    bool starts_inside = false;  // its text begins inside a thinking block
    std::vector<std::string> tasks, results;
    int open_children = 0;
    int child_slot = 0;  // its place among its parent's results
  };
  struct Event {
    int agent;
    TokenEvent event;
  };
  // Token events, from whichever thread steps the scheduler to this one.
  struct Inbox {
    std::mutex mu;
    std::condition_variable ready;
    std::deque<Event> events;
    void push(Event e) {
      std::lock_guard<std::mutex> lock(mu);
      events.push_back(std::move(e));
      ready.notify_one();
    }
    std::deque<Event> take() {
      std::lock_guard<std::mutex> lock(mu);
      std::deque<Event> out;
      out.swap(events);
      return out;
    }
    void wait(std::chrono::milliseconds timeout) {
      std::unique_lock<std::mutex> lock(mu);
      ready.wait_for(lock, timeout, [&] { return !events.empty(); });
    }
  };

  int add_agent(int parent, std::string task) {
    Agent a;
    a.view.index = int(agents_.size());
    a.view.parent = parent;
    a.view.depth = parent < 0 ? 0 : agents_[size_t(parent)].view.depth + 1;
    a.view.task = std::move(task);
    agents_.push_back(std::move(a));
    if (parent >= 0) agents_[size_t(parent)].view.children.push_back(int(agents_.size()) - 1);
    return int(agents_.size()) - 1;
  }

  bool inside_thinking(const Agent& a) const {
    const ThinkingBudget& t = params_.thinking;
    if (t.close_token < 0) return false;
    const std::string close = tokenizer_.text(t.close_token);
    const std::string open = t.open_token >= 0 ? tokenizer_.text(t.open_token) : std::string();
    const size_t c = a.view.text.rfind(close);
    const size_t o = open.empty() ? std::string::npos : a.view.text.rfind(open);
    if (o != std::string::npos && (c == std::string::npos || o > c)) return true;
    if (c != std::string::npos) return false;
    return a.starts_inside;
  }

  // Starts (or resumes) an agent's next request; a refused request fails the agent.
  void submit(int index, const Continuation& start) {
    Agent& a = agents_[size_t(index)];
    const RequestId previous = a.request;
    Request r;
    r.max_tokens = std::max(1, params_.max_tokens_per_agent - a.view.tokens);
    r.sampling = params_.sampling;
    r.sampling.seed = params_.sampling.seed + uint64_t(index);
    // An agent's sequence outlives its request, for forks and for resuming (even at the depth
    // limit, an agent that asks for sub-agents resumes with a note).
    r.hold = true;
    r.prompt = start.tokens;
    r.stop_tokens = protocol_.stop_tokens();
    if (previous < 0)  // (a sub-agent that forks its parent continues the parent's block, open or not)
      a.starts_inside = start.fork && a.view.parent >= 0 ? inside_thinking(agents_[size_t(a.view.parent)])
                                                         : protocol_.starts_in_thinking(a.view);
    if (start.fork) r.fork_of = a.view.parent >= 0 && previous < 0 ? agents_[size_t(a.view.parent)].request : previous;
    if (params_.thinking.close_token >= 0) {  // counts thinking tokens, and bounds them with a budget
      r.thinking = params_.thinking;
      r.thinking.starts_inside = inside_thinking(a);
      r.thinking.max_tokens =
          params_.thinking_budget >= 0 ? std::max(0, params_.thinking_budget - a.view.thinking_tokens) : -1;
    }
    if (params_.configure) params_.configure(a.view, r);
    try {
      a.request = s_.submit(std::move(r), [inbox = inbox_, index](const TokenEvent& e) { inbox->push({index, e}); });
    } catch (const Error& e) {
      a.request = -1;
      end_agent(a, AgentStatus::kFailed, e.what());
    }
    ++a.view.segments;
    a.segment.clear();
    a.joining = false;
    a.decoder = std::make_unique<StreamDecoder>(tokenizer_, true);
    if (previous >= 0) drop_request_id(previous);
  }

  void drop_request_id(RequestId id) {
    try {
      s_.forget(id);  // (releases a held sequence)
    } catch (const Error&) {
    }
  }
  void drop_request(Agent& a) {
    if (a.request >= 0) drop_request_id(a.request);
    a.request = -1;
  }

  bool process_events() {
    std::deque<Event> events = inbox_->take();
    for (const Event& ev : events) on_event(agents_[size_t(ev.agent)], ev.event);
    return !events.empty();
  }

  static bool ended(const Agent& a) {
    return a.view.status == AgentStatus::kDone || a.view.status == AgentStatus::kFailed ||
           a.view.status == AgentStatus::kCancelled;
  }

  void on_event(Agent& a, const TokenEvent& e) {
    if (e.id != a.request) return;  // a request the agent has moved on from
    // Tokens a scheduler running its own loop made between the join and the cancel are not
    // the agent's text (its held sequence still has them: see the note in the header).
    if (e.token >= 0 && a.joining && !e.done) return;
    if (e.token >= 0 && !a.joining) {
      ++a.view.tokens;
      ++total_tokens_;
      const std::string text = tokenizer_.is_eog(e.token) ? std::string() : a.decoder->push(e.token);
      a.segment += text;
      a.view.text += text;
      if (!stopping_) {
        if (auto tasks = protocol_.spawn_request(a.view, a.segment, false)) {
          a.joining = true;
          a.tasks = std::move(*tasks);
          s_.cancel(a.request);  // it stops here, its sequence held for the sub-agents
        }
      }
    }
    if (!e.done) return;
    const std::string rest = a.decoder->flush();
    a.segment += rest;
    a.view.text += rest;
    const RequestStats st = s_.stats(a.request);
    a.view.thinking_tokens += st.thinking_tokens;
    a.view.prompt_tokens += st.prompt_tokens;
    a.view.cached_tokens += st.cached_tokens;
    if (stopping_) {
      end_agent(a, AgentStatus::kCancelled, limit_);
      return;
    }
    if (!a.joining && e.finish != FinishReason::kCancelled) {
      if (auto tasks = protocol_.spawn_request(a.view, a.segment, true)) {
        a.joining = true;
        a.tasks = std::move(*tasks);
      }
    }
    if (a.joining) {
      spawn_children(a);
      return;
    }
    if (e.finish == FinishReason::kCancelled) end_agent(a, AgentStatus::kCancelled, "cancelled");
    else end_agent(a, AgentStatus::kDone, "");
  }

  void spawn_children(Agent& parent) {
    const int p = parent.view.index;
    parent.view.status = AgentStatus::kWaiting;
    const std::vector<std::string> tasks = parent.tasks;
    parent.results.assign(tasks.size(), "");
    std::vector<int> children;
    for (size_t i = 0; i < tasks.size(); ++i) {
      if (parent.view.depth >= params_.limits.max_depth) {
        parent.results[i] = "[not run: no sub-agents at this depth]";
      } else if (int(i) >= params_.limits.max_width) {
        parent.results[i] = "[not run: at most " + std::to_string(params_.limits.max_width) + " sub-agents per join]";
      } else {
        const int c = add_agent(p, tasks[i]);
        agents_[size_t(c)].child_slot = int(i);
        children.push_back(c);
      }
    }
    // All are counted before any starts, so that one failing at once cannot resume the parent early.
    parent.open_children = int(children.size());
    for (int c : children) submit(c, protocol_.child_start(parent.view, agents_[size_t(c)].view));
    if (agents_[size_t(p)].open_children == 0 && agents_[size_t(p)].view.status == AgentStatus::kWaiting) resume(p);
  }

  void resume(int p) {
    Agent& parent = agents_[size_t(p)];
    const Continuation next = protocol_.parent_resume(parent.view, parent.results);
    std::string spliced;
    for (const std::string& r : parent.results) spliced += "\n[sub-agent result] " + r + "\n";
    if (!next.fork) parent.view.text += spliced;  // (a fork's results arrive as its own tokens' text below)
    else parent.view.text += tokenizer_.decode(next.tokens, true);
    parent.view.status = AgentStatus::kRunning;
    submit(p, next);
  }

  // An agent ends: its result goes to its parent, which resumes when it was the last one.
  void end_agent(Agent& a, AgentStatus status, const std::string& note) {
    if (ended(a)) return;
    a.view.status = status;
    a.view.note = note;
    // An agent that stopped mid-thought (its token limit) has no answer: a sub-agent returns the
    // protocol's no-answer result instead of its unfinished reasoning, which would swamp its
    // parent's context.
    const bool unfinished = status == AgentStatus::kDone && inside_thinking(a);
    if (unfinished && a.view.parent >= 0) a.view.result = protocol_.no_answer("sub-agent stopped while thinking: token limit");
    else if (unfinished) a.view.result = "";
    else if (status == AgentStatus::kDone) a.view.result = protocol_.answer(a.view);
    else
      a.view.result =
          protocol_.no_answer("sub-agent " + std::string(agent_status_name(status)) + (note.empty() ? "" : ": " + note));
    drop_request(a);
    if (a.view.parent < 0) return;
    Agent& parent = agents_[size_t(a.view.parent)];
    parent.results[size_t(a.child_slot)] = a.view.result;
    if (--parent.open_children > 0 || parent.view.status != AgentStatus::kWaiting) return;
    if (stopping_) end_agent(parent, AgentStatus::kCancelled, limit_);
    else resume(parent.view.index);
  }

  void check_limits() {
    if (stopping_) return;
    const AgentLimits& l = params_.limits;
    if (params_.should_stop && params_.should_stop())
      limit_ = "cancelled";
    else if (total_tokens_ >= l.max_total_tokens)
      limit_ = "total token limit (" + std::to_string(l.max_total_tokens) + ")";
    else if (l.max_seconds > 0 && std::chrono::duration<double>(Clock::now() - start_).count() >= l.max_seconds)
      limit_ = "time limit";
    else
      return;
    stopping_ = true;
    for (Agent& a : agents_)
      if (a.request >= 0 && a.view.status == AgentStatus::kRunning) s_.cancel(a.request);
  }

  std::vector<AgentView> views() const {
    std::vector<AgentView> v;
    v.reserve(agents_.size());
    for (const Agent& a : agents_) v.push_back(a.view);
    return v;
  }

  Scheduler& s_;
  const Tokenizer& tokenizer_;
  SpawnProtocol& protocol_;
  const ContemplationParams& params_;
  Clock::time_point start_;
  std::deque<Agent> agents_;  // (a deque: references stay valid as agents are added)
  std::shared_ptr<Inbox> inbox_ = std::make_shared<Inbox>();
  int total_tokens_ = 0;
  bool stopping_ = false;
  std::string limit_;
};

}  // namespace

ContemplationResult contemplate(Scheduler& scheduler, const Tokenizer& tokenizer, SpawnProtocol& protocol,
                                const std::vector<int32_t>& root_prompt, const ContemplationParams& params,
                                const AgentsCallback& on_step) {
  Run run(scheduler, tokenizer, protocol, params);
  return run.run(root_prompt, on_step);
}

struct AgentRun::Impl {
  ContemplationParams params;
  Run run;
  std::optional<ContemplationResult> result;
  Impl(Scheduler& s, const Tokenizer& t, SpawnProtocol& p, ContemplationParams ps)
      : params(std::move(ps)), run(s, t, p, params) {}
};

AgentRun::AgentRun(Scheduler& scheduler, const Tokenizer& tokenizer, SpawnProtocol& protocol,
                   const std::vector<int32_t>& root_prompt, ContemplationParams params)
    : impl_(std::make_unique<Impl>(scheduler, tokenizer, protocol, std::move(params))) {
  impl_->run.begin(root_prompt);
}

AgentRun::~AgentRun() {
  if (!impl_->result) impl_->run.cancel_requests();
}

bool AgentRun::poll() {
  if (impl_->result) return true;
  impl_->run.poll();
  if (!impl_->run.root_ended()) return false;
  impl_->result = impl_->run.finish();
  return true;
}

const ContemplationResult& AgentRun::result() const {
  if (!impl_->result) fail("contemplation: the result was asked for before the run ended");
  return *impl_->result;
}

int AgentRun::tokens_so_far() const { return impl_->run.total_tokens(); }

}  // namespace muse
