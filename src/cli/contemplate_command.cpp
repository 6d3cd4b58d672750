// `muse contemplate`: Contemplating mode from the terminal. One live lane per agent while they
// run together in the batched scheduler, then the joined answer; `--json FILE` keeps the whole
// trace. Three ways in: parallel thinking with a confidence-weighted vote (any model), sub-agents
// through the spawn_agent tool (models that call tools), or native spawn/join markup.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>

#include "chat/chat_engine.h"
#include "chat/chat_template.h"
#include "cli/args.h"
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "model/model.h"
#include "reasoning/contemplation.h"
#include "reasoning/parallel_thinking.h"
#include "runtime/scheduler.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/json.h"
#include "util/thread_pool.h"
#include "util/utf8.h"

namespace muse {

namespace {

// One line per lane: wrapping off (a long lane would scroll the ones above), back to the first
// lane after the first drawing.
class Lanes {
 public:
  void draw(const std::vector<std::string>& lines) {
    std::fputs("\x1b[?7l", stderr);
    if (drawn_ > 0) std::fprintf(stderr, "\x1b[%zuA", drawn_);
    for (const std::string& l : lines) std::fprintf(stderr, "\x1b[2K%s\n", l.c_str());
    std::fputs("\x1b[?7h", stderr);
    drawn_ = lines.size();
  }

 private:
  size_t drawn_ = 0;
};

// The text on one line: control characters as spaces, the last `width` bytes, whole characters.
std::string one_line_tail(std::string text, size_t width) {
  for (char& c : text)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  if (text.size() > width) {
    size_t cut = text.size() - width;
    while (cut < text.size() && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) ++cut;
    text = text.substr(cut);
  }
  std::string valid;
  append_valid_utf8(text, valid, true);
  return valid;
}

// The end of a trace's text on one line.
std::string lane_tail(const Tokenizer& tokenizer, const std::vector<int32_t>& tokens, size_t width) {
  const size_t from = tokens.size() > 24 ? tokens.size() - 24 : 0;
  return one_line_tail(tokenizer.decode(std::vector<int32_t>(tokens.begin() + long(from), tokens.end()), false), width);
}

// Sub-agents (tool or markup): lanes indented by depth, the joined answer, the trace.
int run_agents(const Args& a, const Model& model, const Tokenizer& tokenizer, const ChatTemplate& chat_template,
               const ChatRequest& chat, const GenerationRequest& generation, const std::string& mode) {
  ContemplationParams params;
  params.limits.max_width = int(a.get_int("--agents", 4));
  params.limits.max_depth = int(a.get_int("--depth", 1));
  params.max_tokens_per_agent = int(a.get_int("--budget", generation.max_tokens));
  params.limits.max_total_tokens =
      int(a.get_int("--max-total-tokens", (long long)params.max_tokens_per_agent * (params.limits.max_width + 1)));
  params.limits.max_seconds = a.get_double("--timeout", 0);
  params.sampling = generation.sampling;
  if (params.limits.max_width < 1 || params.limits.max_width > 64) fail("--agents must be 1..64");
  if (params.limits.max_depth < 0 || params.limits.max_depth > 8) fail("--depth must be 0..8");
  const OutputFormat format = detect_output_format(chat_template.source());
  if (a.has("--think-budget")) {
    params.thinking_budget = int(a.get_int("--think-budget", -1));
    if (params.thinking_budget < 0) fail("--think-budget must not be negative");
    params.thinking = thinking_budget_for(tokenizer, format, params.thinking_budget, 0);
  } else {
    // The reasoning tags alone, no budget: a sub-agent stopped mid-thought by its token limit
    // then returns the no-answer result, not its unfinished reasoning (which would overflow
    // its parent).
    try {
      params.thinking = thinking_budget_for(tokenizer, format, -1, 0);
    } catch (const Error&) {
    }
  }
  std::unique_ptr<SpawnProtocol> protocol;
  std::vector<int32_t> prompt;
  if (mode == "tool") {
    auto tool = std::make_unique<ToolProtocol>(tokenizer, chat_template, chat.messages,
                                               Json(Json::Array{spawn_agent_tool()}), chat.enable_thinking);
    prompt = tool->root_prompt();
    protocol = std::move(tool);
  } else {
    const SpawnMarkup tags = spawn_markup_from(model.file());
    const std::string rendered = render_chat_prompt(chat_template, chat);
    prompt = chat_prompt_tokens(tokenizer, rendered);
    protocol = std::make_unique<MarkupProtocol>(tokenizer, tags, prompt_opens_reasoning(rendered, format.reasoning));
  }

  ThreadPool pool(thread_count(a));
  SchedulerConfig sc;
  sc.max_context = int(std::min<long long>(a.get_int("-c", 4096), model.config().n_ctx_train));
  Scheduler scheduler(model, tokenizer, pool, sc);
  const bool tty = isatty(STDERR_FILENO);
  Lanes lanes;
  auto draw = [&](const std::vector<AgentView>& agents) {
    if (!tty) return;
    std::vector<std::string> lines;
    for (const AgentView& v : agents) {
      char head[160];
      std::snprintf(head, sizeof head, "%*sagent %d | %5d tok | %-9s | ", 2 * v.depth, "", v.index,
                    v.tokens, agent_status_name(v.status));
      std::string line = head;
      if (!v.task.empty()) line.append("[").append(one_line_tail(v.task, 30)).append("] ");
      lines.push_back(line.append(one_line_tail(v.text, 60)));
    }
    lanes.draw(lines);
  };
  const ContemplationResult r = contemplate(scheduler, tokenizer, *protocol, prompt, params, draw);
  std::string shown = r.answer;
  if (shown.empty()) shown = r.limit.empty() ? "(no answer)" : "(no answer: stopped by the " + r.limit + ")";
  std::fwrite(shown.data(), 1, shown.size(), stdout);
  std::fputc('\n', stdout);
  std::fprintf(stderr, "%zu agents (%zu sub-agents); %d tokens in %.2f s (%.1f tok/s)%s\n", r.agents.size(),
               r.agents.size() - 1, r.total_tokens, r.seconds, r.total_tokens / std::max(r.seconds, 1e-9),
               r.limit.empty() ? "" : ("; stopped by the " + r.limit).c_str());
  if (a.has("--json")) {
    Json::Array agents;
    for (const AgentView& v : r.agents)
      agents.push_back(Json(Json::Object{{"index", Json(v.index)},
                                         {"parent", Json(v.parent)},
                                         {"depth", Json(v.depth)},
                                         {"task", Json(v.task)},
                                         {"status", Json(agent_status_name(v.status))},
                                         {"note", Json(v.note)},
                                         {"tokens", Json(v.tokens)},
                                         {"thinking_tokens", Json(v.thinking_tokens)},
                                         {"prompt_tokens", Json(v.prompt_tokens)},
                                         {"cached_tokens", Json(v.cached_tokens)},
                                         {"result", Json(v.result)},
                                         {"text", Json(v.text)}}));
    const Json out(Json::Object{{"mode", Json(mode)},
                                {"answer", Json(r.answer)},
                                {"limit", Json(r.limit)},
                                {"prompt_tokens", Json(int64_t(prompt.size()))},
                                {"generated_tokens", Json(r.total_tokens)},
                                {"seconds", Json(r.seconds)},
                                {"agents", Json(std::move(agents))}});
    std::ofstream f(a.get("--json"));
    if (!f || !(f << out.dump() << "\n")) fail("cannot write ", a.get("--json"));
  }
  return 0;
}

}  // namespace

int cmd_contemplate(const Argv& argv) {
  std::set<std::string> known = generation_flags();
  known.insert({"-m", "-p", "-f", "-s", "-t", "-c", "--agents", "--budget", "--stop-below",
                "--think", "--json", "--mode", "--join", "--depth", "--max-total-tokens", "--timeout", "--think-budget"});
  const Args a(argv, known, {});
  const auto model = Model::load(model_path(a));
  const auto tokenizer = Tokenizer::from_gguf(model->file());
  const auto chat_template = ChatTemplate::from_gguf(model->file());
  if (!a.has("-p") && !a.has("-f")) fail("give the problem as -p TEXT or -f FILE");
  GenerationRequest generation = generation_from_args(a, 512);
  if (!generation.stop.empty() || generation.grammar)
    fail("contemplate takes sampling options only (no --stop, --grammar or --json-schema)");
  const std::string mode = a.get("--mode", "vote");
  if (mode != "vote" && mode != "tool" && mode != "markup") fail("--mode must be vote, tool or markup");
  ParallelThinkingParams params;
  params.traces = int(a.get_int("--agents", 4));
  params.max_tokens = int(a.get_int("--budget", generation.max_tokens));
  params.stop_below = float(a.get_double("--stop-below", 0));
  params.sampling = generation.sampling;
  if (!a.has("--temp")) params.sampling.temperature = 0.7f;  // independent traces need sampling
  if (params.traces < 1 || params.traces > 64) fail("--agents must be 1..64");
  if (params.max_tokens < 1) fail("--budget must be at least 1");

  ChatRequest chat;
  Json::Array messages;
  if (a.has("-s"))
    messages.push_back(
        Json(Json::Object{{"role", Json("system")}, {"content", Json(a.get("-s"))}}));
  messages.push_back(Json(
      Json::Object{{"role", Json("user")},
                   {"content", Json(a.has("-p") ? a.get("-p") : read_text_file(a.get("-f")))}}));
  chat.messages = Json(std::move(messages));
  chat.enable_thinking = a.get("--think", "on") != "off";
  if (a.has("--join") && mode != "vote") fail("--join is for --mode vote");
  if (mode != "vote") return run_agents(a, *model, *tokenizer, *chat_template, chat, generation, mode);
  for (const char* flag : {"--depth", "--max-total-tokens", "--timeout", "--think-budget"})
    if (a.has(flag)) fail(flag, " is for --mode tool or markup");
  const std::string join = a.get("--join", "vote");
  if (join != "vote" && join != "synthesis") fail("--join must be vote or synthesis");
  const std::vector<int32_t> prompt =
      chat_prompt_tokens(*tokenizer, render_chat_prompt(*chat_template, chat));

  ThreadPool pool(thread_count(a));
  SchedulerConfig sc;
  sc.max_context = int(std::min<long long>(a.get_int("-c", 4096), model->config().n_ctx_train));
  sc.max_running = params.traces;
  if (int(prompt.size()) + params.max_tokens >= sc.max_context)
    fail("the prompt plus --budget exceed the context (-c)");
  Scheduler scheduler(*model, *tokenizer, pool, sc);

  const bool tty = isatty(STDERR_FILENO);
  const auto t0 = std::chrono::steady_clock::now();
  Lanes lanes;
  auto draw = [&](const std::vector<TraceResult>& traces) {
    if (!tty) return;
    std::vector<std::string> lines;
    for (size_t i = 0; i < traces.size(); ++i) {
      const TraceResult& t = traces[i];
      const char* status = t.stopped_early ? "stopped" : t.finished ? "done" : "thinking";
      char conf[16] = "    -", head[96];
      if (std::isfinite(t.confidence)) std::snprintf(conf, sizeof conf, "%5.2f", double(t.confidence));
      std::snprintf(head, sizeof head, "agent %zu | %5zu tok | conf %s | %-8s | ", i + 1, t.tokens.size(), conf, status);
      lines.push_back(head + lane_tail(*tokenizer, t.tokens, 60));
    }
    lanes.draw(lines);
  };
  const ParallelThinkingResult r = think_in_parallel(scheduler, *tokenizer, prompt, params, draw);
  // The synthesis pass: one more turn that reads the traces' answers and settles on one.
  std::string synthesized;
  int synthesis_tokens = 0;
  if (join == "synthesis") {
    ChatRequest synthesis = chat;
    synthesis.messages = synthesis_messages(chat.messages, r.traces);
    const std::string rendered = render_chat_prompt(*chat_template, synthesis);
    Request req;
    req.prompt = chat_prompt_tokens(*tokenizer, rendered);
    req.max_tokens = params.max_tokens;
    req.sampling = generation.sampling;
    std::vector<int32_t> out;
    scheduler.submit(std::move(req), [&](const TokenEvent& e) {
      if (e.token >= 0 && !tokenizer->is_eog(e.token)) out.push_back(e.token);
    });
    scheduler.run_until_idle();
    synthesis_tokens = int(out.size());
    OutputFormat format = detect_output_format(chat_template->source());
    format.starts_in_reasoning = prompt_opens_reasoning(rendered, format.reasoning);
    OutputParser parser(format, 0);
    parser.feed(tokenizer->decode(out, true));
    parser.finish();
    synthesized = parser.total().content;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const std::string& answer = join == "synthesis" ? synthesized : r.answer;
  const std::string shown = answer.empty() ? "(no agent reached an answer)" : answer;
  std::fwrite(shown.data(), 1, shown.size(), stdout);
  std::fputc('\n', stdout);
  int stopped = 0;
  for (const TraceResult& t : r.traces) stopped += t.stopped_early;
  std::fprintf(stderr,
               "%d agents, %d stopped early; %d tokens in %.2f s (%.1f tok/s); the answer has "
               "%.0f%% of the vote\n",
               params.traces, stopped, r.generated_tokens, seconds,
               r.generated_tokens / std::max(seconds, 1e-9), 100 * r.answer_weight);
  if (join == "synthesis") std::fprintf(stderr, "synthesis: %d tokens\n", synthesis_tokens);
  if (a.has("--json")) {
    Json::Array traces;
    for (const TraceResult& t : r.traces)
      traces.push_back(
          Json(Json::Object{{"tokens", Json(int64_t(t.tokens.size()))},
                            {"confidence", Json(double(t.confidence))},
                            {"stopped_early", Json(t.stopped_early)},
                            {"cached_prompt_tokens", Json(int64_t(t.cached_prompt_tokens))},
                            {"answer", Json(t.answer)},
                            {"text", Json(t.text)}}));
    const Json out(Json::Object{{"answer", Json(answer)},
                                {"join", Json(join)},
                                {"voted_answer", Json(r.answer)},
                                {"answer_weight", Json(r.answer_weight)},
                                {"synthesis_tokens", Json(synthesis_tokens)},
                                {"prompt_tokens", Json(int64_t(prompt.size()))},
                                {"generated_tokens", Json(int64_t(r.generated_tokens))},
                                {"seconds", Json(seconds)},
                                {"traces", Json(std::move(traces))}});
    std::ofstream f(a.get("--json"));
    if (!f || !(f << out.dump() << "\n")) fail("cannot write ", a.get("--json"));
  }
  return 0;
}

}  // namespace muse
