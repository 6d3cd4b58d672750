// `muse contemplate`: parallel thinking from the terminal. One live lane per trace (its token
// count, confidence, status and latest text) while the traces run together in the batched
// scheduler, then the voted answer; `--json FILE` keeps the whole trace.
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
#include "reasoning/parallel_thinking.h"
#include "runtime/scheduler.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/json.h"
#include "util/thread_pool.h"
#include "util/utf8.h"

namespace muse {

namespace {

// The end of a trace's text on one line: control characters as spaces, at most `width` bytes, cut
// at a character boundary.
std::string lane_tail(const Tokenizer& tokenizer, const std::vector<int32_t>& tokens,
                      size_t width) {
  const size_t from = tokens.size() > 24 ? tokens.size() - 24 : 0;
  std::string text =
      tokenizer.decode(std::vector<int32_t>(tokens.begin() + long(from), tokens.end()), false);
  for (char& c : text)  // control characters (newlines, escapes) would break the lanes
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

}  // namespace

int cmd_contemplate(const Argv& argv) {
  std::set<std::string> known = generation_flags();
  known.insert({"-m", "-p", "-f", "-s", "-t", "-c", "--agents", "--budget", "--stop-below",
                "--think", "--json"});
  const Args a(argv, known, {});
  const auto model = Model::load(model_path(a));
  const auto tokenizer = Tokenizer::from_gguf(model->file());
  const auto chat_template = ChatTemplate::from_gguf(model->file());
  if (!a.has("-p") && !a.has("-f")) fail("give the problem as -p TEXT or -f FILE");
  GenerationRequest generation = generation_from_args(a, 512);
  if (!generation.stop.empty() || generation.grammar)
    fail("contemplate takes sampling options only (no --stop, --grammar or --json-schema)");
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
  bool drawn = false;
  auto draw = [&](const std::vector<TraceResult>& traces) {
    if (!tty) return;
    // One line per lane: wrapping off (a long lane would scroll the ones above), back to the
    // first lane after the first drawing.
    std::fputs("\x1b[?7l", stderr);
    if (drawn) std::fprintf(stderr, "\x1b[%zuA", traces.size());
    for (size_t i = 0; i < traces.size(); ++i) {
      const TraceResult& t = traces[i];
      const char* status = t.stopped_early ? "stopped" : t.finished ? "done" : "thinking";
      char conf[16] = "    -";
      if (std::isfinite(t.confidence))
        std::snprintf(conf, sizeof conf, "%5.2f", double(t.confidence));
      std::fprintf(stderr, "\x1b[2Kagent %zu | %5zu tok | conf %s | %-8s | %s\n", i + 1,
                   t.tokens.size(), conf, status, lane_tail(*tokenizer, t.tokens, 60).c_str());
    }
    std::fputs("\x1b[?7h", stderr);
    drawn = true;
  };
  const ParallelThinkingResult r = think_in_parallel(scheduler, *tokenizer, prompt, params, draw);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const std::string shown = r.answer.empty() ? "(no agent reached an answer)" : r.answer;
  std::fwrite(shown.data(), 1, shown.size(), stdout);
  std::fputc('\n', stdout);
  int stopped = 0;
  for (const TraceResult& t : r.traces) stopped += t.stopped_early;
  std::fprintf(stderr,
               "%d agents, %d stopped early; %d tokens in %.2f s (%.1f tok/s); the answer has "
               "%.0f%% of the vote\n",
               params.traces, stopped, r.generated_tokens, seconds,
               r.generated_tokens / std::max(seconds, 1e-9), 100 * r.answer_weight);
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
    const Json out(Json::Object{{"answer", Json(r.answer)},
                                {"answer_weight", Json(r.answer_weight)},
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
