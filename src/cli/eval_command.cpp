// `muse eval`: a question set through a model in one or more reasoning modes, with a progress
// bar; accuracy, reasoning and total tokens, wall time and speed per mode as a table (stdout),
// JSON and an SVG plot of accuracy against tokens. `muse eval-data` writes synthetic sets.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "chat/chat_template.h"
#include "cli/args.h"
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "evals/eval_runner.h"
#include "evals/tasks.h"
#include "model/model.h"
#include "runtime/scheduler.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/svg_plot.h"
#include "util/thread_pool.h"

namespace muse {

namespace {

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  if (!f || !(f << text)) fail("cannot write ", path);
}

}  // namespace

int cmd_eval(const Argv& argv) {
  std::set<std::string> known = generation_flags();
  known.insert({"-m", "-t", "-c", "-s", "--data", "--mode", "--limit", "--concurrency", "--json", "--plot"});
  const Args a(argv, known, {});
  GenerationRequest generation = generation_from_args(a, 1024);
  if (!generation.stop.empty() || generation.grammar)
    fail("eval takes sampling options only (no --stop, --grammar or --json-schema)");
  std::vector<EvalItem> items = read_eval_items(a.require("--data"));
  const long long limit = a.get_int("--limit", 0);
  if (limit < 0) fail("--limit must not be negative");
  if (limit > 0 && size_t(limit) < items.size()) items.resize(size_t(limit));
  if (items.empty()) fail(a.get("--data"), " holds no questions");
  std::vector<EvalMode> modes;
  for (const std::string& m : a.get_all("--mode")) modes.push_back(parse_eval_mode(m));
  if (modes.empty()) modes.push_back(parse_eval_mode("think"));
  // Parallel thinking votes over sampled traces; greedy ones would all be the same trace.
  for (const EvalMode& m : modes)
    if (m.kind == EvalModeKind::kContemplate && m.agents > 1 &&
        generation.sampling.temperature <= 0)
      fail(m.name, " samples ", m.agents,
           " traces and needs --temp above 0 (greedy traces are all the same); ",
           "run it apart from the greedy modes");

  const auto model = Model::load(model_path(a));
  const auto tokenizer = Tokenizer::from_gguf(model->file());
  const auto chat_template = ChatTemplate::from_gguf(model->file());
  EvalSettings settings;
  settings.max_tokens = generation.max_tokens;
  settings.sampling = generation.sampling;
  settings.concurrency = int(a.get_int("--concurrency", 8));
  settings.system_prompt = a.get("-s");
  settings.spawn_markup = spawn_markup_from(model->file());
  for (const EvalMode& mode : modes) check_eval_mode(*tokenizer, *chat_template, mode);
  ThreadPool pool(thread_count(a));
  SchedulerConfig sc;
  sc.max_context = int(std::min<long long>(a.get_int("-c", 4096), model->config().n_ctx_train));
  sc.max_running = 256;
  Scheduler scheduler(*model, *tokenizer, pool, sc);

  const bool tty = isatty(STDERR_FILENO);
  std::vector<ModeReport> reports;
  for (const EvalMode& mode : modes) {
    const auto t0 = Clock::now();
    int last_shown = -1;
    auto progress = [&](int answered, int total, long long tokens) {
      if (!tty && answered == last_shown) return;  // (a log gets one line per answer)
      last_shown = answered;
      const int width = 30, filled = total ? answered * width / total : width;
      const double s = seconds_since(t0);
      std::fprintf(stderr, "%s%-14s [%s%s] %d/%d  %lld tok  %.1f tok/s%s", tty ? "\r\x1b[2K" : "", mode.name.c_str(),
                   std::string(size_t(filled), '#').c_str(), std::string(size_t(width - filled), '.').c_str(), answered,
                   total, tokens, s > 0 ? double(tokens) / s : 0.0, tty ? "" : "\n");
    };
    reports.push_back(run_eval(scheduler, *tokenizer, *chat_template, items, mode, settings, progress));
    const ModeReport& r = reports.back();
    std::fprintf(stderr, "%s%s: %.1f%% correct, %.1f reasoning / %.1f total tokens per question, %.2f s\n",
                 tty ? "\r\x1b[2K" : "", mode.name.c_str(), 100 * r.accuracy, r.mean_reasoning_tokens,
                 r.mean_total_tokens, r.wall_seconds);
  }
  std::fputs(eval_table(reports).c_str(), stdout);
  if (a.has("--json")) {
    Json out = eval_json(reports);
    out.mutable_object().insert_or_assign("model", Json(model_path(a)));
    out.mutable_object().insert_or_assign("data", Json(a.get("--data")));
    out.mutable_object().insert_or_assign("questions", Json(int64_t(items.size())));
    write_text(a.get("--json"), out.dump() + "\n");
  }
  if (a.has("--plot")) write_text(a.get("--plot"), render_svg(eval_plot(reports, "accuracy against tokens: " + a.get("--data"))));
  return 0;
}

// `muse eval-plot`: results of several `muse eval --json` runs (other models, sampling settings
// or sets) in one table and one plot, each mode named after its run's model file.
int cmd_eval_plot(const Argv& argv) {
  const Args a(argv, {"--results", "-o", "--title"}, {});
  const std::vector<std::string> files = a.get_all("--results");
  if (files.empty()) fail("eval-plot needs --results FILE.json (once per `muse eval --json` file)");
  std::vector<ModeReport> reports;
  for (const std::string& file : files) {
    Json results;
    try {
      results = Json::parse(read_text_file(file));
    } catch (const Error& e) {
      fail(file, ": ", e.what());
    }
    const Json* model = results.find("model");
    const std::string label = model && model->is_string()
                                  ? std::filesystem::path(model->as_string()).stem().string()
                                  : std::filesystem::path(file).stem().string();
    for (ModeReport& r : eval_summaries_from_json(results, label, file))
      reports.push_back(std::move(r));
  }
  std::fputs(eval_table(reports).c_str(), stdout);
  if (a.has("-o"))
    write_text(a.get("-o"),
               render_svg(eval_plot(reports, a.get("--title", "accuracy against tokens"))));
  return 0;
}

int cmd_eval_data(const Argv& argv) {
  const Args a(argv, {"--task", "--count", "--seed", "--size", "--numbers", "-o"}, {});
  const long long count = a.get_int("--count", 100);
  if (count < 1 || count > 1000000) fail("--count must be 1..1000000");
  const long long size = a.get_int("--size", 0);
  if (size < 0 || size > 12) fail("--size must be 0..12");
  const std::string numbers = a.get("--numbers", "default");
  if (numbers != "default" && numbers != "small")
    fail("--numbers must be default or small, got \"", numbers, "\"");
  if (a.has("--numbers") && a.require("--task") == "logic")
    fail("--numbers applies to arithmetic and countdown, not logic");
  const std::vector<EvalItem> items =
      generate_task(a.require("--task"), int(count), uint64_t(a.get_int("--seed", 1)), int(size),
                    numbers == "small" ? TaskNumbers::small() : TaskNumbers());
  if (a.has("-o")) {
    write_eval_items(a.get("-o"), items);
    std::fprintf(stderr, "wrote %zu questions to %s\n", items.size(), a.get("-o").c_str());
  } else {
    for (const EvalItem& item : items) std::printf("%s\n", eval_item_to_json(item).dump().c_str());
  }
  return 0;
}

}  // namespace muse
