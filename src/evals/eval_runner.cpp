#include "evals/eval_runner.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <memory>
#include <optional>

#include "chat/chat_engine.h"
#include "chat/chat_template.h"
#include "chat/output_parser.h"
#include "reasoning/early_exit.h"
#include "reasoning/parallel_thinking.h"
#include "runtime/scheduler.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace muse {

EvalMode parse_eval_mode(const std::string& text) {
  EvalMode m;
  m.name = text;
  const size_t colon = text.find(':');
  const std::string head = text.substr(0, colon);
  std::string arg = colon == std::string::npos ? "" : text.substr(colon + 1);
  auto number = [&](double lo, double hi) {
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(arg, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (arg.empty() || used != arg.size() || !(v >= lo && v <= hi))
      fail("mode \"", text, "\": expected a number in [", lo, ", ", hi, "] after the colon");
    return v;
  };
  if (head == "no-think" && arg.empty()) {
    m.kind = EvalModeKind::kNoThink;
  } else if (head == "think" && arg.empty()) {
    m.kind = EvalModeKind::kThink;
  } else if (head == "budget") {
    m.kind = EvalModeKind::kBudget;
    m.budget = int(number(0, 1 << 20));
  } else if (head == "deer") {
    m.kind = EvalModeKind::kEarlyExit;
    if (!arg.empty()) m.threshold = float(number(0, 1));
  } else if (head == "contemplate") {
    m.kind = EvalModeKind::kContemplate;
    m.synthesis = arg.size() > 6 && arg.compare(arg.size() - 6, 6, ":synth") == 0;
    if (m.synthesis) arg.resize(arg.size() - 6);
    m.agents = int(number(1, 64));
  } else if (head == "markup") {
    m.kind = EvalModeKind::kMarkup;
    m.agents = int(number(1, 64));
  } else {
    fail("unknown mode \"", text, "\" (no-think, think, budget:N, deer[:THRESHOLD], contemplate:N[:synth], markup:W)");
  }
  return m;
}

namespace {

using Clock = std::chrono::steady_clock;

// What one question's run ends with.
struct JobResult {
  std::string content;  // the answer part of the reply (reasoning removed)
  int reasoning_tokens = 0, total_tokens = 0;
};

class Job {
 public:
  virtual ~Job() = default;
  // Whether it has finished (a job with several stages starts the next one here).
  virtual bool poll() = 0;
  virtual JobResult result() = 0;
  virtual long long tokens_so_far() const = 0;
};

// The chat format, the prompt per question and the answer part of raw output.
struct Prompter {
  const Tokenizer& tokenizer;
  const ChatTemplate& chat_template;
  OutputFormat format;
  std::optional<ThinkingBudget> tags;  // the single-token reasoning tags, when the model has them
  std::string system_prompt;
  bool enable_thinking = true;

  Json messages(const EvalItem& item) const {
    Json::Array m;
    if (!system_prompt.empty()) m.push_back(Json(Json::Object{{"role", Json("system")}, {"content", Json(system_prompt)}}));
    m.push_back(Json(Json::Object{{"role", Json("user")}, {"content", Json(item.question)}}));
    return Json(std::move(m));
  }
  std::vector<int32_t> prompt(const EvalItem& item, bool* opens_reasoning) const {
    return prompt(messages(item), opens_reasoning);
  }
  std::vector<int32_t> prompt(const Json& messages, bool* opens_reasoning) const {
    ChatRequest r;
    r.messages = messages;
    r.enable_thinking = enable_thinking;
    const std::string rendered = render_chat_prompt(chat_template, r);
    *opens_reasoning = prompt_opens_reasoning(rendered, format.reasoning);
    return chat_prompt_tokens(tokenizer, rendered);
  }
  std::string content(const std::vector<int32_t>& tokens, bool opens_reasoning) const {
    std::vector<int32_t> text_tokens;
    for (int32_t t : tokens)
      if (!tokenizer.is_eog(t)) text_tokens.push_back(t);
    OutputFormat f = format;
    f.starts_in_reasoning = opens_reasoning;
    OutputParser parser(f, 0);
    parser.feed(tokenizer.decode(text_tokens, true));
    parser.finish();
    return parser.total().content;
  }
  // Counting (and bounding) thinking tokens needs the tags; -1: unbounded.
  ThinkingBudget thinking(int max_tokens, bool opens_reasoning) const {
    if (!tags) return {};
    ThinkingBudget b = *tags;
    b.max_tokens = max_tokens;
    b.starts_inside = opens_reasoning;
    return b;
  }
};

// One request: no-think, think and budget modes.
class PlainJob : public Job {
 public:
  PlainJob(Scheduler& s, const Prompter& p, const EvalItem& item, const EvalMode& mode, const EvalSettings& settings)
      : PlainJob(s, p, p.messages(item), item, mode, settings) {}
  PlainJob(Scheduler& s, const Prompter& p, const Json& messages, const EvalItem& item, const EvalMode& mode,
           const EvalSettings& settings)
      : scheduler_(s), prompter_(p), state_(std::make_shared<State>()) {
    Request r;
    r.prompt = p.prompt(messages, &opens_);
    r.max_tokens = settings.max_tokens;
    r.sampling = settings.sampling;
    r.thinking = p.thinking(mode.kind == EvalModeKind::kBudget ? mode.budget : -1, opens_);
    if (settings.configure) settings.configure(item, r);
    id_ = s.submit(std::move(r), [&s, st = state_](const TokenEvent& e) {
      if (e.token >= 0) st->tokens.push_back(e.token);
      if (!e.done) return;
      st->thinking_tokens = s.stats(e.id).thinking_tokens;
      s.forget(e.id);
      st->done = true;
    });
  }
  ~PlainJob() override {
    if (!state_->done) scheduler_.cancel(id_);
  }
  bool poll() override { return state_->done; }
  long long tokens_so_far() const override { return (long long)state_->tokens.size(); }
  JobResult result() override {
    return {prompter_.content(state_->tokens, opens_), state_->thinking_tokens, int(state_->tokens.size())};
  }

 private:
  struct State {
    std::vector<int32_t> tokens;
    int thinking_tokens = 0;
    bool done = false;
  };
  Scheduler& scheduler_;
  const Prompter& prompter_;
  bool opens_ = false;
  RequestId id_ = -1;
  std::shared_ptr<State> state_;  // shared with the callback
};

class EarlyExitJob : public Job {
 public:
  EarlyExitJob(Scheduler& s, const Prompter& p, const EvalItem& item, const EvalMode& mode,
               const EvalSettings& settings, const std::vector<int32_t>& boundaries)
      : prompter_(p) {
    Request r;
    r.prompt = p.prompt(item, &opens_);
    r.max_tokens = settings.max_tokens;
    r.sampling = settings.sampling;
    if (settings.configure) settings.configure(item, r);
    EarlyExitParams params;
    params.close_token = p.tags->close_token;
    params.open_token = p.tags->open_token;
    params.starts_inside = opens_;
    params.boundaries = boundaries;
    // The questions ask for "Answer: X" on the last line: the trial is cued to write it.
    params.trial_cue = p.tokenizer.encode("\n\nAnswer:", {.add_special = false, .parse_special = false});
    params.threshold = mode.threshold;
    run_ = std::make_unique<EarlyExit>(s, std::move(r), params);
  }
  bool poll() override { return run_->done(); }
  long long tokens_so_far() const override { return (long long)run_->result().tokens.size(); }
  JobResult result() override {
    const EarlyExitResult r = run_->result();
    return {prompter_.content(r.tokens, opens_), r.thinking_tokens, int(r.tokens.size())};
  }

 private:
  const Prompter& prompter_;
  bool opens_ = false;
  std::unique_ptr<EarlyExit> run_;
};

class ContemplateJob : public Job {
 public:
  ContemplateJob(Scheduler& s, const Prompter& p, const EvalItem& item, const EvalMode& mode,
                 const EvalSettings& settings)
      : scheduler_(s), prompter_(p), item_(item), mode_(mode), settings_(settings) {
    bool opens = false;
    const std::vector<int32_t> prompt = p.prompt(item, &opens);
    ParallelThinkingParams params;
    params.traces = mode.agents;
    params.max_tokens = settings.max_tokens;
    params.sampling = settings.sampling;
    params.thinking = p.thinking(-1, opens);
    // Traces vote on their final answers; a trace's text here has special tokens spelled out.
    params.extract_answer = [&p, opens](const std::string& text) {
      OutputFormat f = p.format;
      f.starts_in_reasoning = opens;
      OutputParser parser(f, 0);
      parser.feed(text);
      parser.finish();
      return extract_final_answer(parser.total().content);
    };
    run_ = std::make_unique<ParallelThinking>(s, p.tokenizer, prompt, params);
  }
  bool poll() override {
    if (!run_->done()) return false;
    if (!mode_.synthesis) return true;
    if (!synthesis_) {
      // The traces are in: one more request compares their answers.
      traces_ = run_->result();
      synthesis_ = std::make_unique<PlainJob>(
          scheduler_, prompter_, synthesis_messages(prompter_.messages(item_), traces_.traces), item_, mode_, settings_);
    }
    return synthesis_->poll();
  }
  long long tokens_so_far() const override {
    long long n = synthesis_ ? synthesis_->tokens_so_far() : 0;
    for (const TraceResult& t : run_->traces()) n += (long long)t.tokens.size();
    return n;
  }
  JobResult result() override {
    if (synthesis_) {
      JobResult r = synthesis_->result();
      r.reasoning_tokens += traces_.thinking_tokens;
      r.total_tokens += traces_.generated_tokens;
      return r;
    }
    const ParallelThinkingResult r = run_->result();
    return {r.answer.empty() ? "" : "Answer: " + r.answer, r.thinking_tokens, r.generated_tokens};
  }

 private:
  Scheduler& scheduler_;
  const Prompter& prompter_;
  const EvalItem& item_;
  const EvalMode& mode_;
  const EvalSettings& settings_;
  std::unique_ptr<ParallelThinking> run_;
  ParallelThinkingResult traces_;
  std::unique_ptr<PlainJob> synthesis_;
};

// The model spawns and joins sub-agents itself (native markup): one agent run per question.
class MarkupJob : public Job {
 public:
  MarkupJob(Scheduler& s, const Prompter& p, const EvalItem& item, const EvalMode& mode, const EvalSettings& settings) {
    bool opens = false;
    const std::vector<int32_t> prompt = p.prompt(item, &opens);
    protocol_ = std::make_unique<MarkupProtocol>(p.tokenizer, settings.spawn_markup, opens);
    ContemplationParams params;
    params.limits.max_width = mode.agents;
    params.limits.max_depth = 1;
    params.limits.max_total_tokens = settings.max_tokens * (4 * mode.agents + 2);
    params.max_tokens_per_agent = settings.max_tokens;
    params.sampling = settings.sampling;
    params.thinking = p.thinking(-1, opens);
    run_ = std::make_unique<AgentRun>(s, p.tokenizer, *protocol_, prompt, std::move(params));
  }
  bool poll() override { return run_->poll(); }
  long long tokens_so_far() const override { return run_->tokens_so_far(); }
  JobResult result() override {
    const ContemplationResult& r = run_->result();
    int thinking = 0;
    for (const AgentView& a : r.agents) thinking += a.thinking_tokens;
    return {r.answer, thinking, r.total_tokens};
  }

 private:
  std::unique_ptr<MarkupProtocol> protocol_;
  std::unique_ptr<AgentRun> run_;
};

double mean(double sum, size_t n) { return n ? sum / double(n) : 0; }

}  // namespace

namespace {

// The model's single-token reasoning tags, which budgets and early exit need; without them
// reasoning tokens are simply not counted.
std::optional<ThinkingBudget> reasoning_tags_for(const Tokenizer& tokenizer, const OutputFormat& format,
                                                 const EvalMode& mode) {
  try {
    return thinking_budget_for(tokenizer, format, -1, 0);
  } catch (const Error& e) {
    if (mode.kind == EvalModeKind::kBudget || mode.kind == EvalModeKind::kEarlyExit)
      fail("mode ", mode.name, ": ", e.what());
  }
  return std::nullopt;
}

}  // namespace

void check_eval_mode(const Tokenizer& tokenizer, const ChatTemplate& chat_template, const EvalMode& mode) {
  reasoning_tags_for(tokenizer, detect_output_format(chat_template.source()), mode);
}

ModeReport run_eval(Scheduler& scheduler, const Tokenizer& tokenizer, const ChatTemplate& chat_template,
                    const std::vector<EvalItem>& items, const EvalMode& mode, const EvalSettings& settings,
                    const EvalProgress& progress) {
  if (settings.concurrency < 1) fail("eval: concurrency must be at least 1");
  Prompter prompter{tokenizer, chat_template, detect_output_format(chat_template.source()), std::nullopt,
                    settings.system_prompt, mode.kind != EvalModeKind::kNoThink};
  prompter.tags = reasoning_tags_for(tokenizer, prompter.format, mode);
  const std::vector<int32_t> boundaries =
      mode.kind == EvalModeKind::kEarlyExit ? reasoning_boundary_tokens(tokenizer) : std::vector<int32_t>();

  ModeReport report;
  report.mode = mode;
  report.items.resize(items.size());
  struct Running {
    size_t item;
    std::unique_ptr<Job> job;
    Clock::time_point started;
  };
  std::deque<Running> running;
  size_t next = 0;
  int answered = 0, idle_steps = 0;
  long long finished_tokens = 0;
  const auto t0 = Clock::now();
  auto start = [&](size_t i) {
    std::unique_ptr<Job> job;
    switch (mode.kind) {
      case EvalModeKind::kEarlyExit:
        job = std::make_unique<EarlyExitJob>(scheduler, prompter, items[i], mode, settings, boundaries);
        break;
      case EvalModeKind::kContemplate:
        job = std::make_unique<ContemplateJob>(scheduler, prompter, items[i], mode, settings);
        break;
      case EvalModeKind::kMarkup:
        job = std::make_unique<MarkupJob>(scheduler, prompter, items[i], mode, settings);
        break;
      default:
        job = std::make_unique<PlainJob>(scheduler, prompter, items[i], mode, settings);
    }
    running.push_back({i, std::move(job), Clock::now()});
  };
  for (;;) {
    while (next < items.size() && int(running.size()) < settings.concurrency) start(next++);
    if (running.empty()) break;
    const int before = int(running.size());
    const bool worked = scheduler.step();
    for (auto it = running.begin(); it != running.end();) {
      if (!it->job->poll()) {
        ++it;
        continue;
      }
      const JobResult r = it->job->result();
      const EvalItem& item = items[it->item];
      ItemOutcome& o = report.items[it->item];
      o.id = item.id;
      o.given = extract_final_answer(r.content);
      o.correct = !o.given.empty() && check_answer(item, o.given);
      o.reasoning_tokens = r.reasoning_tokens;
      o.total_tokens = r.total_tokens;
      o.seconds = std::chrono::duration<double>(Clock::now() - it->started).count();
      finished_tokens += r.total_tokens;
      ++answered;
      it = running.erase(it);
    }
    if (progress) {
      long long tokens = finished_tokens;
      for (const Running& r : running) tokens += r.job->tokens_so_far();
      progress(answered, int(items.size()), tokens);
    }
    // A step with nothing to do right after a job starts its next stage is normal; twice in a
    // row with nothing answered means no question can move.
    const bool answered_now = int(running.size()) < before;
    idle_steps = worked || answered_now ? 0 : idle_steps + 1;
    if (idle_steps > 2) fail("eval: the scheduler stopped with questions unanswered");
  }
  report.wall_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  double correct = 0, reasoning = 0, total = 0;
  for (const ItemOutcome& o : report.items) {
    correct += o.correct;
    reasoning += o.reasoning_tokens;
    total += o.total_tokens;
  }
  report.accuracy = mean(correct, items.size());
  report.mean_reasoning_tokens = mean(reasoning, items.size());
  report.mean_total_tokens = mean(total, items.size());
  report.tokens_per_second = report.wall_seconds > 0 ? total / report.wall_seconds : 0;
  return report;
}

std::string eval_table(const std::vector<ModeReport>& reports) {
  std::string out = "| mode | accuracy | reasoning tokens | total tokens | wall s | tok/s |\n|---|---|---|---|---|---|\n";
  char line[256];
  for (const ModeReport& r : reports) {
    std::snprintf(line, sizeof line, "| %s | %.1f%% | %.1f | %.1f | %.2f | %.1f |\n", r.mode.name.c_str(),
                  100 * r.accuracy, r.mean_reasoning_tokens, r.mean_total_tokens, r.wall_seconds, r.tokens_per_second);
    out += line;
  }
  return out;
}

Json eval_json(const std::vector<ModeReport>& reports) {
  Json::Array modes;
  for (const ModeReport& r : reports) {
    Json::Array items;
    for (const ItemOutcome& o : r.items)
      items.push_back(Json(Json::Object{{"id", Json(o.id)},
                                        {"given", Json(o.given)},
                                        {"correct", Json(o.correct)},
                                        {"reasoning_tokens", Json(o.reasoning_tokens)},
                                        {"total_tokens", Json(o.total_tokens)},
                                        {"seconds", Json(o.seconds)}}));
    modes.push_back(Json(Json::Object{{"mode", Json(r.mode.name)},
                                      {"accuracy", Json(r.accuracy)},
                                      {"mean_reasoning_tokens", Json(r.mean_reasoning_tokens)},
                                      {"mean_total_tokens", Json(r.mean_total_tokens)},
                                      {"wall_seconds", Json(r.wall_seconds)},
                                      {"tokens_per_second", Json(r.tokens_per_second)},
                                      {"items", Json(std::move(items))}}));
  }
  return Json(Json::Object{{"modes", Json(std::move(modes))}});
}

std::vector<ModeReport> eval_summaries_from_json(const Json& results, const std::string& label,
                                                 const std::string& file) {
  std::vector<ModeReport> out;
  try {
    for (const Json& m : results.at("modes").as_array()) {
      ModeReport& r = out.emplace_back();
      r.mode.name = label + " " + m.at("mode").as_string();
      r.accuracy = m.at("accuracy").as_number();
      r.mean_reasoning_tokens = m.at("mean_reasoning_tokens").as_number();
      r.mean_total_tokens = m.at("mean_total_tokens").as_number();
      r.wall_seconds = m.at("wall_seconds").as_number();
      r.tokens_per_second = m.at("tokens_per_second").as_number();
    }
  } catch (const Error& e) {
    fail(file, " is not a `muse eval --json` file: ", e.what());
  }
  return out;
}

PlotSpec eval_plot(const std::vector<ModeReport>& reports, const std::string& title) {
  PlotSpec spec;
  spec.title = title;
  spec.x_label = "mean tokens per question (reasoning and answer)";
  spec.y_label = "accuracy (%)";
  for (const ModeReport& r : reports) {
    PlotSeries s;
    s.name = r.mode.name;
    s.x = {r.mean_total_tokens};
    s.y = {100 * r.accuracy};
    spec.series.push_back(std::move(s));
  }
  return spec;
}

}  // namespace muse
