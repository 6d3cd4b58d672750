#include "server/generation.h"

#include <algorithm>
#include <thread>

#include "chat/chat_engine.h"
#include "chat/chat_template.h"
#include "evals/tasks.h"
#include "model/model.h"
#include "reasoning/contemplation.h"
#include "reasoning/parallel_thinking.h"
#include "runtime/grammar.h"
#include "util/utf8.h"

namespace muse {

Engine::Engine(const Model& m, const Tokenizer& t, const ChatTemplate& c, Scheduler& s, std::string name,
               ServerLimits l)
    : model(m),
      tokenizer(t),
      chat_template(c),
      scheduler(s),
      format(detect_output_format(c.source())),
      model_name(std::move(name)),
      limits(l) {
  try {
    tags = thinking_budget_for(t, format, -1, 0);
  } catch (const Error&) {  // no single-token reasoning tags: no budgets, no reasoning counts
  }
}

std::vector<int32_t> chat_prompt(const Engine& engine, const ChatParams& params, bool* opens_reasoning) {
  ChatRequest r;
  r.messages = params.messages;
  r.tools = params.tools;
  r.enable_thinking = params.enable_thinking;
  std::string rendered;
  try {
    rendered = render_chat_prompt(engine.chat_template, r);
  } catch (const Error& e) {  // the template raised: the conversation is not one it accepts
    bad_request(std::string("the chat template refused these messages: ") + e.what(), "messages");
  }
  *opens_reasoning = prompt_opens_reasoning(rendered, engine.format.reasoning);
  return chat_prompt_tokens(engine.tokenizer, rendered);
}

GenerationSpec chat_generation_spec(const Engine& engine, const ChatParams& p) {
  bool opens = false;
  GenerationSpec spec;
  spec.prompt = chat_prompt(engine, p, &opens);
  spec.n = p.n;
  spec.max_tokens = p.max_tokens;
  spec.sampling = p.sampling;
  spec.stop = p.stop;
  spec.grammar = p.grammar;
  spec.logprobs = p.logprobs ? p.top_logprobs : -1;
  spec.format = engine.format;
  spec.format.starts_in_reasoning = opens;
  if (p.tools.is_null()) spec.format.tool_calls = ToolCallSyntax::kNone;
  if (engine.tags) {  // counts reasoning tokens; bounds them with a budget
    spec.thinking = *engine.tags;
    spec.thinking.starts_inside = opens;
    spec.thinking.max_tokens = p.thinking_budget;
    spec.thinking.min_tokens = p.min_thinking;
  }
  return spec;
}

struct Generation::Queue {
  struct Item {
    int choice = 0;
    TokenEvent event;
    int thinking_tokens = 0;
    int cached_tokens = 0;
    RequestStats stats;
  };
  std::mutex mu;
  std::condition_variable ready;
  std::deque<Item> items;
};

struct Generation::Choice {
  RequestId id = -1;
  StreamDecoder decoder;
  StopMatcher stops;
  OutputParser parser;
  bool finished = false;  // its output has ended (the request may still be winding down)
  bool request_done = false;
  Choice(const Tokenizer& t, std::vector<std::string> stop, OutputFormat f, uint64_t seed)
      : decoder(t, true), stops(std::move(stop)), parser(f, seed) {}
};

Generation::Generation(Engine& engine, GenerationSpec spec)
    : engine_(engine), spec_(std::move(spec)), queue_(std::make_shared<Queue>()), start_(std::chrono::steady_clock::now()) {
  const int context = engine.limits.max_context;
  if (int(spec_.prompt.size()) >= context)
    throw ApiError(400, "invalid_request_error",
                   "the prompt is " + std::to_string(spec_.prompt.size()) + " tokens; this server's context is " +
                       std::to_string(context),
                   "messages", "context_length_exceeded");
  spec_.max_tokens = std::min(spec_.max_tokens, context - int(spec_.prompt.size()));
  std::shared_ptr<const Grammar> grammar;
  if (!spec_.grammar.empty()) grammar = Grammar::parse(spec_.grammar);
  totals_.resize(size_t(spec_.n));
  Scheduler& s = engine.scheduler;
  try {
    for (int i = 0; i < spec_.n; ++i) {
      auto c = std::make_unique<Choice>(engine.tokenizer, spec_.stop, spec_.format, spec_.id_seed + uint64_t(i));
      Request r;
      r.prompt = spec_.prompt;
      r.max_tokens = spec_.max_tokens;
      r.sampling = spec_.sampling;
      r.sampling.seed = spec_.sampling.seed + uint64_t(i);
      r.grammar = grammar;
      r.thinking = spec_.thinking;
      r.logprobs = spec_.logprobs;
      // The callback runs on the scheduler's thread: it only queues (and reads the statistics
      // it needs before the request is forgotten).
      c->id = s.submit(std::move(r), [&s, q = queue_, i](const TokenEvent& e) {
        Queue::Item item;
        item.choice = i;
        item.event = e;
        if (e.done) {
          try {
            const RequestStats st = s.stats(e.id);
            item.thinking_tokens = st.thinking_tokens;
            item.cached_tokens = st.cached_tokens;
            item.stats = st;
            s.forget(e.id);
          } catch (const Error&) {
          }
        }
        std::lock_guard<std::mutex> lock(q->mu);
        q->items.push_back(std::move(item));
        q->ready.notify_one();
      });
      choices_.push_back(std::move(c));
    }
  } catch (const ApiError&) {
    cancel();
    throw;
  } catch (const Error& e) {
    cancel();
    bad_request(e.what());
  }
}

Generation::~Generation() { cancel(); }

void Generation::cancel() {
  for (auto& c : choices_)
    if (!c->request_done) engine_.scheduler.cancel(c->id);
}

bool Generation::done() const {
  return std::all_of(choices_.begin(), choices_.end(), [](const auto& c) { return c->finished; });
}

Json Generation::logprob_entry(int32_t token, float logprob, const std::vector<std::pair<int32_t, float>>& top) const {
  auto entry = [&](int32_t id, float lp) {
    const std::string text = engine_.tokenizer.decode({id}, true);
    Json::Array bytes;
    for (unsigned char b : text) bytes.push_back(Json(int(b)));
    std::string shown;
    append_valid_utf8(text, shown, true);
    return Json::Object{{"token", Json(shown)}, {"logprob", Json(double(lp))}, {"bytes", Json(std::move(bytes))}};
  };
  Json::Object e = entry(token, logprob);
  Json::Array alternatives;
  for (const auto& [id, lp] : top) alternatives.push_back(Json(entry(id, lp)));
  e.emplace("top_logprobs", Json(std::move(alternatives)));
  return Json(std::move(e));
}

void Generation::on_event(int choice, const TokenEvent& e, std::vector<Delta>& out) {
  Choice& c = *choices_[size_t(choice)];
  ChoiceTotals& total = totals_[size_t(choice)];
  Delta d;
  d.choice = choice;
  auto take = [&](const OutputDelta& o) {
    d.reasoning += o.reasoning;
    d.content += o.content;
    d.tool_calls.insert(d.tool_calls.end(), o.tool_calls.begin(), o.tool_calls.end());
  };
  auto feed = [&](const std::string& text) {
    if (spec_.raw) d.content += text;
    else take(c.parser.feed(text));
  };
  auto finish = [&](const std::string& reason) {
    if (!spec_.raw) take(c.parser.finish());
    c.finished = true;
    d.finish_reason = reason == "stop" && !(total.tool_calls.empty() && d.tool_calls.empty()) ? "tool_calls" : reason;
  };
  if (e.token >= 0 && !c.finished) {
    if (ttft_ == 0) ttft_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    ++total.tokens;
    if (!engine_.tokenizer.is_eog(e.token) || e.inserted) {
      const std::string text = c.decoder.push(e.token);
      if (spec_.logprobs >= 0 && !e.inserted) {
        if (d.logprobs.is_null()) d.logprobs = Json(Json::Array{});
        d.logprobs.mutable_array().push_back(logprob_entry(e.token, e.logprob, e.top_logprobs));
      }
      const StopMatcher::Result r = c.stops.feed(text);
      feed(r.text);
      if (r.reason == StopMatcher::Reason::kStopString) {
        engine_.scheduler.cancel(c.id);
        finish("stop");
      }
    }
  }
  if (e.done) {
    c.request_done = true;
    if (!c.finished) {
      const StopMatcher::Result tail = c.stops.feed(c.decoder.flush());
      feed(tail.text);
      if (tail.reason != StopMatcher::Reason::kStopString) feed(c.stops.flush());
      // OpenAI knows "stop" and "length": a request ended early (cancelled, or its sampling
      // failed) reports "stop".
      const bool stopped = tail.reason == StopMatcher::Reason::kStopString || e.finish == FinishReason::kCancelled;
      finish(stopped ? "stop" : finish_reason_name(e.finish));
    }
  }
  if (d.reasoning.empty() && d.content.empty() && d.tool_calls.empty() && d.logprobs.is_null() && d.finish_reason.empty())
    return;
  total.reasoning += d.reasoning;
  total.content += d.content;
  total.tool_calls.insert(total.tool_calls.end(), d.tool_calls.begin(), d.tool_calls.end());
  if (!d.logprobs.is_null())
    for (const Json& x : d.logprobs.as_array()) total.logprobs.mutable_array().push_back(x);
  if (!d.finish_reason.empty()) {
    total.finish_reason = d.finish_reason;
    total.done = true;
  }
  out.push_back(std::move(d));
}

std::vector<Delta> Generation::poll(std::chrono::milliseconds wait) {
  std::deque<Queue::Item> items;
  {
    std::unique_lock<std::mutex> lock(queue_->mu);
    queue_->ready.wait_for(lock, wait, [&] { return !queue_->items.empty(); });
    items.swap(queue_->items);
  }
  std::vector<Delta> out;
  for (const Queue::Item& item : items) {
    if (item.event.done) {
      ChoiceTotals& t = totals_[size_t(item.choice)];
      t.reasoning_tokens = item.thinking_tokens;
      t.prompt_seconds = item.stats.queued_seconds + item.stats.prefill_seconds;
      t.decode_seconds = item.stats.decode_seconds;
      t.reasoning_seconds = item.stats.thinking_seconds;
      if (item.choice == 0) cached_ = item.cached_tokens;
    }
    on_event(item.choice, item.event, out);
  }
  return out;
}

// ---- Contemplating mode ----

Contemplation::Contemplation(Engine& engine, const ChatParams& params) : engine_(engine), params_(params) {
  bool opens = false;
  prompt_ = chat_prompt(engine, params, &opens);
  if (int(prompt_.size()) + 1 >= engine.limits.max_context)
    throw ApiError(400, "invalid_request_error", "the prompt does not fit this server's context", "messages",
                   "context_length_exceeded");
  ParallelThinkingParams p;
  p.traces = params.contemplate.agents;
  p.max_tokens = std::min(params.max_tokens, engine.limits.max_context - int(prompt_.size()));
  p.sampling = params.sampling;
  p.stop_below = params.contemplate.stop_below;
  if (engine.tags) {
    p.thinking = *engine.tags;
    p.thinking.starts_inside = opens;
    p.thinking.max_tokens = params.thinking_budget;
    p.thinking.min_tokens = params.min_thinking;
  }
  const OutputFormat format = engine.format;
  p.extract_answer = [format, opens](const std::string& text) {
    OutputFormat f = format;
    f.starts_in_reasoning = opens;
    OutputParser parser(f, 0);
    parser.feed(text);
    parser.finish();
    return parser.total().content;
  };
  traces_ = std::make_unique<ParallelThinking>(engine.scheduler, engine.tokenizer, prompt_, p);
}

Contemplation::~Contemplation() { cancel(); }

void Contemplation::cancel() {
  if (synthesis_) synthesis_->cancel();
  traces_.reset();  // cancels the traces still running
  finished_ = true;
}

bool Contemplation::done() const { return finished_; }

Json Contemplation::lanes_of(const std::vector<TraceResult>& traces) const {
  Json::Array lanes;
  for (size_t i = 0; i < traces.size(); ++i) {
    const TraceResult& t = traces[i];
    const size_t from = t.tokens.size() > 32 ? t.tokens.size() - 32 : 0;
    std::vector<int32_t> tail;
    for (size_t k = from; k < t.tokens.size(); ++k)
      if (!engine_.tokenizer.is_eog(t.tokens[k])) tail.push_back(t.tokens[k]);
    std::string text;
    append_valid_utf8(engine_.tokenizer.decode(tail, true), text, true);
    lanes.push_back(Json(Json::Object{{"agent", Json(int(i))},
                                      {"tokens", Json(int64_t(t.tokens.size()))},
                                      {"status", Json(t.stopped_early ? "stopped" : t.finished ? "done" : "thinking")},
                                      {"confidence", std::isfinite(t.confidence) ? Json(double(t.confidence)) : Json()},
                                      {"tail", Json(text)}}));
  }
  return Json(std::move(lanes));
}

Contemplation::Update Contemplation::poll(std::chrono::milliseconds wait) {
  Update u;
  if (finished_) return u;
  if (synthesis_) {
    u.deltas = synthesis_->poll(wait);
    for (Delta& d : u.deltas) {
      totals_.reasoning += d.reasoning;
      totals_.content += d.content;
      if (!d.finish_reason.empty()) totals_.finish_reason = d.finish_reason;
    }
    if (synthesis_->done()) {
      finished_ = true;
      totals_.done = true;
      generated_ += synthesis_->totals()[0].tokens;
      totals_.tokens = generated_;
      totals_.reasoning_tokens += synthesis_->totals()[0].reasoning_tokens;
    }
    return u;
  }
  std::this_thread::sleep_for(std::min(wait, std::chrono::milliseconds(50)));
  const bool all_done = traces_->done();
  Json lanes = lanes_of(traces_->traces());
  if (std::string text = lanes.dump(); text != last_lanes_) {
    last_lanes_ = std::move(text);
    u.lanes = std::move(lanes);
  }
  if (!all_done) return u;
  const ParallelThinkingResult r = traces_->result();
  generated_ = r.generated_tokens;
  totals_.reasoning_tokens = r.thinking_tokens;
  Json::Array traces;
  for (const TraceResult& t : r.traces)
    traces.push_back(Json(Json::Object{{"tokens", Json(int64_t(t.tokens.size()))},
                                       {"confidence", Json(double(t.confidence))},
                                       {"stopped_early", Json(t.stopped_early)},
                                       {"answer", Json(t.answer)}}));
  final_traces_ = Json(Json::Object{{"join", Json(params_.contemplate.join)},
                                    {"voted_answer", Json(r.answer)},
                                    {"answer_weight", Json(r.answer_weight)},
                                    {"agents", Json(std::move(traces))}});
  if (params_.contemplate.join == "synthesis") {
    ChatParams sp = params_;
    sp.n = 1;
    sp.logprobs = false;
    try {
      sp.messages = synthesis_messages(params_.messages, r.traces);
      synthesis_ = std::make_unique<Generation>(engine_, chat_generation_spec(engine_, sp));
      return u;
    } catch (const Error& e) {
      // (The answers made the synthesis prompt too long, say.) The vote stands in.
      final_traces_.mutable_object().insert_or_assign("synthesis_error", Json(std::string(e.what())));
    }
  }
  Delta d;
  d.content = r.answer;
  d.finish_reason = "stop";
  totals_.content = r.answer;
  totals_.finish_reason = "stop";
  totals_.tokens = generated_;
  totals_.done = finished_ = true;
  u.deltas.push_back(std::move(d));
  return u;
}

Json Contemplation::trace() const { return final_traces_; }

namespace {

Json agent_lanes(const std::vector<AgentView>& agents, bool full) {
  Json::Array lanes;
  for (const AgentView& v : agents) {
    const std::string tail = v.text.size() > 120 ? v.text.substr(v.text.size() - 120) : v.text;
    std::string valid;
    append_valid_utf8(full ? v.text : tail, valid, true);
    Json::Object lane{{"agent", Json(v.index)},
                      {"parent", Json(v.parent)},
                      {"depth", Json(v.depth)},
                      {"task", Json(v.task)},
                      {"tokens", Json(v.tokens)},
                      {"status", Json(agent_status_name(v.status))},
                      {"confidence", Json()}};
    lane.emplace(full ? "text" : "tail", Json(valid));
    if (full) {
      lane.emplace("result", Json(v.result));
      lane.emplace("note", Json(v.note));
      lane.emplace("cached_tokens", Json(v.cached_tokens));
    }
    lanes.push_back(Json(std::move(lane)));
  }
  return Json(std::move(lanes));
}

}  // namespace

AgentsOutcome run_agents(Engine& engine, const ChatParams& params, const std::function<void(const Json& lanes)>& on_lanes,
                         const std::function<bool()>& should_stop) {
  const ContemplateOptions& o = params.contemplate;
  ContemplationParams cp;
  cp.limits.max_width = o.agents;
  cp.limits.max_depth = o.depth;
  cp.max_tokens_per_agent = params.max_tokens;
  cp.limits.max_total_tokens = o.max_total_tokens > 0 ? o.max_total_tokens : params.max_tokens * (o.agents + 1);
  cp.limits.max_seconds = o.timeout;
  cp.sampling = params.sampling;
  cp.should_stop = should_stop;
  if (engine.tags) {
    cp.thinking = *engine.tags;
    cp.thinking.min_tokens = params.min_thinking;
    cp.thinking_budget = params.thinking_budget;
  }
  std::unique_ptr<SpawnProtocol> protocol;
  std::vector<int32_t> prompt;
  if (o.mode == "tool") {
    std::unique_ptr<ToolProtocol> tool;
    try {
      tool = std::make_unique<ToolProtocol>(engine.tokenizer, engine.chat_template, params.messages,
                                            Json(Json::Array{spawn_agent_tool()}), params.enable_thinking);
      prompt = tool->root_prompt();
    } catch (const Error& e) {
      bad_request(std::string("contemplate mode \"tool\": ") + e.what(), "muse.contemplate.mode");
    }
    protocol = std::move(tool);
  } else {
    bool opens = false;
    prompt = chat_prompt(engine, params, &opens);
    protocol = std::make_unique<MarkupProtocol>(engine.tokenizer, spawn_markup_from(engine.model.file()), opens);
  }
  if (int(prompt.size()) + 1 >= engine.limits.max_context)
    throw ApiError(400, "invalid_request_error", "the prompt does not fit this server's context", "messages",
                   "context_length_exceeded");
  std::string last;
  const ContemplationResult r = contemplate(engine.scheduler, engine.tokenizer, *protocol, prompt, cp,
                                            [&](const std::vector<AgentView>& agents) {
                                              if (!on_lanes) return;
                                              Json lanes = agent_lanes(agents, false);
                                              std::string text = lanes.dump();
                                              if (text == last) return;
                                              last = std::move(text);
                                              on_lanes(lanes);
                                            });
  AgentsOutcome out;
  out.answer = r.answer;
  out.limit = r.limit;
  out.prompt_tokens = int(prompt.size());
  out.generated_tokens = r.total_tokens;
  for (const AgentView& v : r.agents) out.reasoning_tokens += v.thinking_tokens;
  out.trace = Json(Json::Object{{"mode", Json(o.mode)},
                                {"limit", Json(r.limit)},
                                {"seconds", Json(r.seconds)},
                                {"agents", agent_lanes(r.agents, true)}});
  return out;
}

}  // namespace muse
