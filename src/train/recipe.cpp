#include "train/recipe.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "chat/chat_template.h"
#include "evals/eval_runner.h"
#include "evals/tasks.h"
#include "io/gguf.h"
#include "model/model.h"
#include "reasoning/parallel_thinking.h"
#include "runtime/scheduler.h"
#include "tokenizer/tokenizer.h"
#include "train/reward.h"
#include "train/rollout.h"
#include "train/trainer.h"
#include "util/error.h"
#include "util/svg_plot.h"
#include "util/thread_pool.h"

namespace muse {

Recipe recipe_by_name(const std::string& name) {
  Recipe r;
  r.name = name;
  if (name == "nano") {
    // Small numbers: trained with the large ones too, the model got 19% of its two-digit by
    // one-digit products wrong (32% with a large operand). And the Countdown search in one
    // fixed order, which it follows and rarely repeats (4 of 30 traces in run 6; shuffled, all
    // 40 of run 3's looped over moves already tried).
    r.mix.numbers = TaskNumbers::small();
    r.mix.shuffle_countdown = false;
    // Run 6 called 73% of the hits in its own training traces "no"; the decision's loss weighs
    // five times as much (both words, so the "yes" it learns stays calibrated).
    r.mix.decision_weight = 5;
    // Countdown-4 two ways: a share solved by the single agent (run 7's only ever saw it with
    // sub-agents, so without them it had no baseline to be compared with), in traces of at most
    // 60 lines as Countdown-3's (hits stay as frequent as there); and with sub-agents in a
    // context of at least 1,536 tokens (below), where a child's exhaustive search fits after the
    // parent's ~250 tokens (in 1,024, run 7's were cut off, and their training texts dropped).
    // Countdown-3 keeps run 7's share: with 35% and a 2,048-token context (fewer steps), run 10
    // never learned to call a hit "yes".
    r.mix.arithmetic = 0.25;
    r.mix.countdown3 = 0.5;
    r.mix.countdown4 = 0.05;
    r.mix.countdown4_spawn = 0.15;
    r.mix.no_think = 0.05;
    r.mix.max_trace_lines_4 = 60;
    // Half the traces fully verbose, the rest of any verbosity: at 0.75, run 7's stage-1 model
    // sampled one and the same trace per problem, so stage 2 had no shorter correct sample to
    // prefer (run 9: 1.07x shorter). The KL weight halved (run 9's 0.1 may also have held the
    // length near the start); checkpoint selection still guards accuracy. Untested at full
    // length: run 11's machine was too slow for the budget.
    r.mix.verbose_share = 0.5;
    r.grpo_kl = 0.05;
    // Run 12's rollouts were right 20% of the time (Countdown-3 and arithmetic alternating), so
    // few groups were half right and the length reward almost never applied: its reasoning
    // length stayed at 250 tokens at full weight. Two correct samples are enough to rank.
    // (Run 14 ran this for 82 updates only: too few to tell.)
    r.length_min_correct = 0.25;
    // Run 14 counted what the traces allow: without redundant lines but with every move they
    // are only 1.42x shorter, so the 2x target would need guessed moves. Re-checks double the
    // safely droppable text.
    r.mix.recheck_results = true;
    // But not in the fully verbose Countdown searches: with a check after every try there, run
    // 16's stage 1 (as long as run 15's) lost the hit decision ("Try 8 * 7 = 56, target 56: no")
    // and solved 27% of held-out Countdown-3 problems at 1,262 reasoning tokens; run 15, whose
    // verbose searches had none, 64% at 515. That leaves about 1.5x to drop without guessing.
    r.mix.recheck_verbose_countdown = false;
    // Shorter traces that skip dead ends taught guessing (run 6: 2x shorter, 3 points less
    // accurate); now every terse trace still searches everything, only says less.
    r.mix.skip_dead_ends = false;
    // Arithmetic keeps its place-value chains: run 18 worked each step column by column
    // (SftMix::column_steps), and its stage 1 wrote the working in the trained format but got
    // the one-digit facts wrong ("ones 9 - 0 = 1"): 4% of held-out arithmetic against run 15's
    // 8%, Countdown-3 60% against 64%. Arithmetic is about a tenth of the training text; its
    // facts need more of the budget, not another layout.
    // Fully verbose Countdown-3 traces with re-checks average 790 tokens (2% above 1,900), so
    // the context, the evaluation's and the rollouts' limits grow: a stage-1 model cut off
    // would look less accurate than it is, and rollouts cut off at 640 would reward shortness
    // through correctness. 1,024 fits every trace without redundant lines (at most 982).
    r.shape.n_ctx = 2048;
    r.eval_max_tokens = 2048;
    r.grpo_max_tokens = 1024;
    // Run 7's stage 1 (2 cores with AVX-512, 2,300 tokens/s); an AVX2 EPYC ran 1,100 tokens/s.
    r.sft_reference_steps = 1700;
    return r;
  }
  if (name == "smoke") {
    r.shape = NetShape{};
    r.shape.n_embd = 64;
    r.shape.n_layer = 2;
    r.shape.n_head = 2;
    r.shape.n_head_kv = 1;
    r.shape.n_ff = 128;
    r.shape.n_ctx = 1024;
    r.vocab_size = 400;
    r.tokenizer_texts = 300;
    r.sft_minutes = 0.75;
    r.sft_batch_tokens = 4096;
    r.sft_warmup_steps = 5;
    r.grpo_minutes = 0.5;
    r.grpo_prompts = 4;
    r.grpo_group = 4;
    r.grpo_max_tokens = 256;
    r.grpo_val_minutes = 0.2;
    r.grpo_val_items = 8;
    r.eval_items = 8;
    r.eval_max_tokens = 256;
    return r;
  }
  fail("unknown recipe \"", name, "\" (nano, smoke)");
}

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string fmt(const char* format, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* format, ...) {
  char buf[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(buf, sizeof buf, format, args);
  va_end(args);
  return buf;
}

std::string clock_text(double seconds) {
  const int s = int(std::max(0.0, seconds));
  return fmt("%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60);
}

// One status line, redrawn on a terminal; every `log_every`-th update (and the last) as its own
// line in a log.
class Progress {
 public:
  Progress() : tty_(isatty(STDERR_FILENO)) {}
  void update(const std::string& line, bool keep = false) {
    if (tty_)
      std::fprintf(stderr, "\r\x1b[2K%s%s", line.c_str(), keep ? "\n" : "");
    else if (keep || ++count_ % 50 == 0)
      std::fprintf(stderr, "%s\n", line.c_str());
  }
  void note(const std::string& line) {
    std::fprintf(stderr, "%s%s\n", tty_ ? "\r\x1b[2K" : "", line.c_str());
  }

 private:
  bool tty_;
  long count_ = 0;
};

void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  if (!f || !(f << text)) fail("cannot write ", path);
}

}  // namespace

TokenizedExample tokenize_example(const Tokenizer& tokenizer, const TrainingText& text) {
  TokenizedExample e;
  Tokenizer::EncodeOptions o;
  o.add_special = false;
  for (const TextPiece& p : text) {
    const std::vector<int32_t> ids = tokenizer.encode(p.text, o);
    e.ids.insert(e.ids.end(), ids.begin(), ids.end());
    e.weight.insert(e.weight.end(), ids.size(), p.target ? p.weight : 0.f);
  }
  return e;
}

namespace {

// Problems no training text or rollout may contain.
struct HeldOut {
  std::vector<EvalItem> single;      // Countdown-3 and arithmetic: single agent, think modes
  std::vector<EvalItem> countdown4;  // for Contemplating mode
  std::set<std::string> keys;        // problem_key of each

  bool contains(const TrainingText& t) const {
    if (t.empty()) return false;
    const std::string& first = t.front().text;
    const std::string open = "<|im_start|>user\n", close = "<|im_end|>";
    const size_t from = first.find(open);
    const size_t to = first.find(close, from);
    if (from == std::string::npos || to == std::string::npos) return false;
    return keys.count(problem_key(first.substr(from + open.size(), to - from - open.size()))) > 0;
  }
  bool contains(const EvalItem& item) const { return keys.count(problem_key(item.question)) > 0; }
};

HeldOut held_out_set(const Recipe& r) {
  HeldOut h;
  const uint64_t s = r.seed * 1000003 + 17;
  const TaskNumbers& range = r.mix.numbers;
  h.single = generate_countdown(r.eval_items, s, 3, range);
  const int half = r.eval_items / 2;
  for (auto& items : {generate_arithmetic(half, s + 1, 2, TraceStyle(), range),
                      generate_arithmetic(r.eval_items - half, s + 2, 3, TraceStyle(), range)})
    for (EvalItem item : items) {
      item.id = "arith-" + std::to_string(h.single.size());
      h.single.push_back(std::move(item));
    }
  h.countdown4 = generate_countdown(std::max(1, r.eval_items / 2), s + 3, 4, range);
  for (const auto* set : {&h.single, &h.countdown4})
    for (const EvalItem& item : *set) h.keys.insert(problem_key(item.question));
  return h;
}

// Stage 2's problems: Countdown-3 and arithmetic, alternating (callers skip held-out ones). The
// validation stream is the same kind of problem from seeds the rollouts' never reach.
enum class RlStream : uint64_t { kRollouts = 100000, kValidation = 900000000 };
EvalItem rl_problem(const Recipe& r, RlStream stream, uint64_t index) {
  const uint64_t seed = r.seed * 7919 + uint64_t(stream) + index;
  if (index % 2 == 0) return generate_countdown(1, seed, 3, r.mix.numbers)[0];
  return generate_arithmetic(1, seed, index % 4 == 1 ? 2 : 3, TraceStyle(), r.mix.numbers)[0];
}

double cosine_lr(const Recipe& r, int step, int total) {
  if (step < r.sft_warmup_steps) return r.sft_lr * double(step + 1) / double(r.sft_warmup_steps);
  const double x = std::min(
      1.0, double(step - r.sft_warmup_steps) / double(std::max(1, total - r.sft_warmup_steps)));
  return r.sft_lr_min + (r.sft_lr - r.sft_lr_min) * 0.5 * (1 + std::cos(M_PI * x));
}

struct Curve {
  std::vector<double> x, y;
};

// A scheduler over a model for evaluation: greedy, many questions at once.
ModeReport evaluate_mode(const Model& model, const Tokenizer& tokenizer,
                         const ChatTemplate& chat_template, const std::vector<EvalItem>& items,
                         const std::string& mode_name, int max_tokens, const Recipe& r,
                         int threads, Progress& progress, const std::string& label) {
  ThreadPool pool(threads);
  SchedulerConfig sc;
  sc.max_context = r.shape.n_ctx;
  sc.max_running = 64;
  sc.kv_budget_bytes = size_t(1) << 30;
  Scheduler scheduler(model, tokenizer, pool, sc);
  const EvalMode mode = parse_eval_mode(mode_name);
  check_eval_mode(tokenizer, chat_template, mode);
  EvalSettings settings;
  settings.max_tokens = max_tokens;
  settings.sampling.temperature = mode.kind == EvalModeKind::kContemplate ? 0.8f : 0.0f;
  settings.concurrency = 32;
  const auto t0 = Clock::now();
  ModeReport report =
      run_eval(scheduler, tokenizer, chat_template, items, mode, settings,
               [&](int answered, int total, long long tokens) {
                 progress.update(fmt("eval %-8s %-14s %d/%d  %lld tok  %.0f tok/s", label.c_str(),
                                     mode_name.c_str(), answered, total, tokens,
                                     double(tokens) / std::max(1e-9, since(t0))));
               });
  progress.note(fmt(
      "eval %-8s %-14s %5d tok  accuracy %.1f%%, reasoning %.1f tokens, total %.1f tokens, %.1f s",
      label.c_str(), mode_name.c_str(), max_tokens, 100 * report.accuracy,
      report.mean_reasoning_tokens, report.mean_total_tokens, report.wall_seconds));
  return report;
}

struct StageModel {
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<ChatTemplate> chat_template;
};

StageModel load_model(const std::string& path) {
  StageModel m;
  m.model = Model::load(path);
  m.tokenizer = Tokenizer::from_gguf(m.model->file());
  m.chat_template = ChatTemplate::from_gguf(m.model->file());
  return m;
}

class RecipeRun {
 public:
  RecipeRun(const Recipe& r, const TrainOptions& o) : r_(r), o_(o), held_(held_out_set(r)) {
    std::filesystem::create_directories(o.run_dir);
    const std::string log = o.run_dir + "/log.csv";
    const bool fresh = !std::filesystem::exists(log) || std::filesystem::file_size(log) == 0;
    log_.open(log, std::ios::app);
    if (!log_) fail("cannot write ", log);
    if (fresh)
      log_ << "stage,step,loss,lr,grad_norm,tokens,seconds,held_out_loss,accuracy,reasoning_tokens,"
              "reward,"
              "length_weight,ratio,logprob_gap,samples,rollout_seconds,kl\n";
    r_.sft_minutes *= o.time_scale;
    r_.grpo_minutes *= o.time_scale;
    // The held-out problems as question sets, so `muse eval` can measure any model on them.
    write_eval_items(path("held_out_single.jsonl"), held_.single);
    write_eval_items(path("held_out_countdown4.jsonl"), held_.countdown4);
  }

  std::string run() {
    const double gflops = trainer_blas_gflops(o_.threads);
    progress_.note(fmt("recipe %s: BLAS %.0f GFLOP/s on %d threads%s", r_.name.c_str(), gflops,
                       o_.threads,
                       gflops < 10 ? " (slow: is libopenblas0-pthread installed?)" : ""));
    if (o_.stage == "all" || o_.stage == "sft") {
      learn_tokenizer();
      sft();
      export_model(path("sft.gguf"), GgmlType::F32);
    }
    if (o_.stage == "all" || o_.stage == "grpo") {
      // From the exported stage-1 weights with a fresh optimizer, whether or not stage 1 ran in
      // this process: the same start either way.
      resume_from(stage2_start());
      grpo();
      export_model(path("grpo.gguf"), GgmlType::F32);
    }
    if (o_.stage == "eval") resume_from(path("grpo.gguf"));
    const std::string output = o_.output.empty() ? path(r_.name + ".gguf") : o_.output;
    export_model(output, GgmlType::F16);
    progress_.note(fmt("wrote %s (%.1f MB)", output.c_str(),
                       double(std::filesystem::file_size(output)) / 1e6));
    return o_.stage == "sft" ? std::string() : results();
  }

 private:
  std::string path(const std::string& name) const { return o_.run_dir + "/" + name; }
  // The model stage 2 starts from, which the results call the stage-1 model: --init, else
  // this run's stage 1.
  std::string stage2_start() const { return o_.init.empty() ? path("sft.gguf") : o_.init; }

  void learn_tokenizer() {
    std::vector<std::string> texts;
    for (int i = 0; i < r_.tokenizer_texts; ++i)
      texts.push_back(joined_text(sft_example(r_.mix, r_.seed + 1, uint64_t(i))));
    const std::vector<SpecialToken> specials = muse_special_tokens();
    vocab_ = train_bpe(texts, "qwen2", r_.vocab_size - 256 - int(specials.size()), specials);
    r_.shape.n_vocab = int(vocab_.tokens.size());
    tokenizer_ = vocab_tokenizer(vocab_);
    trainer_ = std::make_unique<Trainer>(r_.shape, r_.seed, o_.threads);
    progress_.note(fmt("tokenizer: %d tokens (%zu merges); network: %.2fM parameters",
                       r_.shape.n_vocab, vocab_.merges.size(),
                       double(r_.shape.parameters()) / 1e6));
  }

  void resume_from(const std::string& file) {
    const auto f = GgufFile::open(file);
    r_.shape = net_shape_from_gguf(*f);
    vocab_ = vocab_from_gguf(*f);
    tokenizer_ = vocab_tokenizer(vocab_);
    trainer_ = std::make_unique<Trainer>(r_.shape, r_.seed, o_.threads);
    trainer_->load_tensors(net_tensors_from_gguf(*f));
    progress_.note("starting from " + file);
  }

  void export_model(const std::string& file, GgmlType type) {
    ExportOptions eo;
    eo.name = "muse-" + r_.name;
    eo.matrix_type = type;
    eo.description = "Muse's own reasoning model, trained by `muse train --recipe " + r_.name + "`";
    net_to_gguf(r_.shape, trainer_->tensors(), vocab_, eo).write(file);
  }

  // The next training example of the stream that is not held out and fits the context.
  TokenizedExample next_example(uint64_t seed, uint64_t& index) {
    for (;;) {
      const TrainingText t = sft_example(r_.mix, seed, index++);
      if (held_.contains(t)) continue;
      TokenizedExample e = tokenize_example(*tokenizer_, t);
      if (int(e.ids.size()) <= r_.shape.n_ctx && e.targets() > 0) return e;
    }
  }

  void sft() {
    uint64_t index = 0, val_index = 0;
    std::vector<TokenizedExample> validation;
    while (validation.size() < 48) validation.push_back(next_example(r_.seed + 2, val_index));
    const double budget = r_.sft_minutes * 60;
    const auto t0 = Clock::now();
    int total = 1 << 30;  // known after the first steps are timed
    double loss_ema = 0;
    int64_t tokens = 0;
    Clock::time_point timed_from;
    for (int step = 0; step < total; ++step) {
      if (step == 2) timed_from = Clock::now();
      // The step count that fits the budget, from the mean step time so far (held-out
      // evaluations included): first after 10 timed steps, then refined every 50, so that the
      // learning rate's cosine ends with the budget.
      if (step == 12 || (step > 12 && step % 50 == 0)) {
        const double per_step = since(timed_from) / (step - 2);
        total = std::max(step + 1, int((budget - since(t0)) / per_step) + step);
        if (step == 12) {
          progress_.note(fmt("sft: %d steps of ~%lld tokens fit %.0f minutes", total,
                             (long long)r_.sft_batch_tokens, r_.sft_minutes));
          // The steps that fit against those the recipe was tuned with: a shortfall is a weaker
          // model unless the budgets grow (a --time-scale already given counts).
          const double share = double(total) / std::max(1, r_.sft_reference_steps);
          if (r_.sft_reference_steps > 0 && share < 0.8)
            progress_.note(fmt(
                "sft: %d of the %d steps the recipe was tuned with fit here (this machine "
                "trains at %.0f%% of that one's speed): expect a weaker model, or pass "
                "--time-scale %.1f",
                total, r_.sft_reference_steps, 100 * share / o_.time_scale, o_.time_scale / share));
        }
      }
      std::vector<TokenizedExample> batch;
      int64_t batch_tokens = 0;
      while (batch_tokens < r_.sft_batch_tokens) {
        batch.push_back(next_example(r_.seed, index));
        batch_tokens += int64_t(batch.back().ids.size());
      }
      const double lr = cosine_lr(r_, step, total == (1 << 30) ? int(budget) : total);
      const SftStepStats st = trainer_->sft_step(batch, lr, 4096);
      tokens += st.tokens;
      loss_ema = step == 0 ? st.loss : 0.95 * loss_ema + 0.05 * st.loss;
      double val = NAN;
      if ((step + 1) % 50 == 0 || step + 1 == total) {
        val = trainer_->evaluate(validation, 4096);
        sft_val_.x.push_back(step + 1);
        sft_val_.y.push_back(val);
      }
      sft_loss_.x.push_back(step + 1);
      sft_loss_.y.push_back(st.loss);
      const double s = since(t0);
      log_ << fmt("sft,%d,%.5f,%.6g,%.4f,%lld,%.1f,%s\n", step + 1, st.loss, lr, st.grad_norm,
                  (long long)tokens, s, std::isnan(val) ? "" : fmt("%.5f", val).c_str());
      log_.flush();
      const bool known = total != (1 << 30);
      progress_.update(
          fmt("sft  step %d/%s  loss %.3f%s  lr %.2e  |g| %.2f  %.0f tok/s  %s / ETA %s", step + 1,
              known ? std::to_string(total).c_str() : "?", loss_ema,
              std::isnan(val) ? "" : fmt(" (held-out %.3f)", val).c_str(), lr, st.grad_norm,
              double(tokens) / s, clock_text(s).c_str(),
              known ? clock_text(s / (step + 1) * (total - step - 1)).c_str() : "?"),
          !std::isnan(val));
      if (s > budget * 1.05) break;  // the estimate was off: the budget wins
    }
    write_plot("loss.svg", "stage 1: supervised loss", "step", "cross-entropy (nats/token)",
               {{"train", sft_loss_.x, sft_loss_.y, true, false},
                {"held-out", sft_val_.x, sft_val_.y, true, true}});
    trainer_->save_checkpoint(path("sft.pt"));
  }

  // Stage 2's checkpoints on the validation problems.
  struct Checkpoint {
    int step = 0;
    double accuracy = 0, reasoning_tokens = 0;
    std::vector<NamedTensor> tensors;
  };

  Checkpoint validate(const std::vector<EvalItem>& problems, int step, double seconds) {
    Checkpoint c;
    c.step = step;
    c.tensors = trainer_->tensors();
    ExportOptions f32_export;
    f32_export.matrix_type = GgmlType::F32;
    const InMemoryModel engine(r_.shape, c.tensors, vocab_, f32_export);
    const ModeReport rep =
        evaluate_mode(engine.model(), engine.tokenizer(), engine.chat_template(), problems, "think",
                      r_.eval_max_tokens, r_, o_.threads, progress_, fmt("val@%d", step));
    c.accuracy = rep.accuracy;
    c.reasoning_tokens = rep.mean_reasoning_tokens;
    log_ << fmt("val,%d,,,,,%.1f,,%.4f,%.2f,,,,,,,\n", step, seconds, c.accuracy,
                c.reasoning_tokens);
    log_.flush();
    val_acc_.x.push_back(step);
    val_acc_.y.push_back(c.accuracy);
    val_len_.x.push_back(step);
    val_len_.y.push_back(c.reasoning_tokens);
    return c;
  }

  void grpo() {
    ThreadPool pool(o_.threads);
    const double budget = r_.grpo_minutes * 60;
    const auto t0 = Clock::now();
    uint64_t next_problem = 0;
    std::vector<EvalItem> validation;
    std::set<std::string> validation_keys;
    if (r_.grpo_val_items < 1) fail("stage 2 needs validation problems (grpo_val_items)");
    for (uint64_t i = 0; int(validation.size()) < r_.grpo_val_items; ++i) {
      if (i > 100 * uint64_t(r_.grpo_val_items)) fail("too few distinct validation problems");
      EvalItem item = rl_problem(r_, RlStream::kValidation, i);
      if (held_.contains(item) || !validation_keys.insert(problem_key(item.question)).second)
        continue;
      validation.push_back(std::move(item));
    }
    // Greedy accuracy and length, not the sampled rollouts', decide which weights stage 2 keeps:
    // the shortest thinking among those as accurate as the start (within the tolerance).
    trainer_->set_reference();
    const Checkpoint start = validate(validation, 0, 0);
    Checkpoint best = start;
    auto consider = [&](Checkpoint c) {
      const bool accurate = c.accuracy + 1e-9 >= start.accuracy - r_.grpo_val_tolerance;
      if (accurate && c.reasoning_tokens < best.reasoning_tokens) best = std::move(c);
    };
    auto last_validation = Clock::now();
    int step = 0, last_validated = 0;
    // Time, not steps, is the budget and drives the length penalty's warm-up: steps slow down
    // once the penalty gives every group a signal, so a step count guessed early would be wrong.
    for (; since(t0) < budget; ++step) {
      if (step > 0 && since(last_validation) >= r_.grpo_val_minutes * 60) {
        consider(validate(validation, step, since(t0)));
        last_validation = Clock::now();
        last_validated = step;
      }
      const auto step_start = Clock::now();
      const double progress = since(t0) / budget;
      // Rollouts from the current weights, in Muse's engine.
      // (F32 weights and KV: the sampler's log-probabilities are the trainer's own, up to
      // rounding.)
      ExportOptions f32_export;
      f32_export.matrix_type = GgmlType::F32;
      InMemoryModel engine(r_.shape, trainer_->tensors(), vocab_, f32_export);
      SchedulerConfig sc;
      sc.kv_type = KvType::kF32;
      sc.max_context = r_.shape.n_ctx;
      sc.max_running = r_.grpo_prompts * r_.grpo_group;
      sc.kv_budget_bytes = size_t(1) << 30;
      Scheduler scheduler(engine.model(), engine.tokenizer(), pool, sc);
      std::vector<EvalItem> problems;
      std::vector<std::vector<int32_t>> prompts;
      Tokenizer::EncodeOptions eo;
      eo.add_special = false;
      while (int(problems.size()) < r_.grpo_prompts) {
        EvalItem item = rl_problem(r_, RlStream::kRollouts, next_problem++);
        if (held_.contains(item) || validation_keys.count(problem_key(item.question))) continue;
        prompts.push_back(engine.tokenizer().encode(chat_prompt_text(item.question), eo));
        problems.push_back(std::move(item));
      }
      RolloutSettings rs;
      rs.group_size = r_.grpo_group;
      rs.max_tokens = r_.grpo_max_tokens;
      rs.seed = r_.seed * 1000 + uint64_t(step) * 100000;
      const auto groups = sample_groups(scheduler, engine.tokenizer(), prompts, rs);
      const double rollout_seconds = since(step_start);

      const double w = length_penalty_weight(int(1000 * progress), 1000, r_.length_weight);
      std::vector<PolicySample> samples;
      double correct = 0, reasoning = 0, reward_sum = 0;
      int n = 0;
      for (size_t g = 0; g < groups.size(); ++g) {
        std::vector<int> lengths;
        std::vector<bool> ok;
        for (const Rollout& ro : groups[g]) {
          const bool c =
              !ro.truncated &&
              check_answer(problems[g], extract_final_answer(answer_after_thinking(ro.text)));
          ok.push_back(c);
          lengths.push_back(ro.reasoning_tokens);
          correct += c;
          reasoning += ro.reasoning_tokens;
          ++n;
        }
        const std::vector<double> length_reward =
            correct_length_rewards(lengths, ok, r_.length_min_correct);
        std::vector<double> rewards;
        for (size_t i = 0; i < ok.size(); ++i)
          rewards.push_back((ok[i] ? 1.0 : 0.0) + w * length_reward[i]);
        for (double x : rewards) reward_sum += x;
        const std::vector<double> adv = group_advantages(rewards);
        for (size_t i = 0; i < adv.size(); ++i) {
          if (adv[i] == 0) continue;  // no signal: skip its compute
          PolicySample ps;
          ps.prompt = prompts[g];
          ps.completion = groups[g][i].completion;
          ps.old_logprobs = groups[g][i].logprobs;
          ps.advantage = float(adv[i]);
          samples.push_back(std::move(ps));
        }
      }
      GrpoStepSettings gs;
      gs.lr = r_.grpo_lr;
      gs.clip_epsilon = r_.grpo_clip;
      gs.kl_coef = r_.grpo_kl;
      gs.normalizer = double(r_.grpo_prompts) * r_.grpo_group * r_.grpo_max_tokens;
      GrpoStepStats st;
      if (!samples.empty()) st = trainer_->grpo_step(samples, gs);
      const double s = since(t0);
      const double acc = correct / n, mean_len = reasoning / n;
      // Plotted at the updates their weights had, as the validation points are.
      rl_acc_.x.push_back(step);
      rl_acc_.y.push_back(acc);
      rl_len_.x.push_back(step);
      rl_len_.y.push_back(mean_len);
      log_ << fmt("grpo,%d,%.5f,%.6g,%.4f,%lld,%.1f,,%.4f,%.2f,%.4f,%.3f,%.4f,%.4f,%zu,%.1f,%.5f\n",
                  step + 1, st.loss, r_.grpo_lr, st.grad_norm, (long long)st.tokens, s, acc,
                  mean_len, reward_sum / n, w, st.mean_ratio, st.old_new_logprob_gap,
                  samples.size(), rollout_seconds, st.kl);
      log_.flush();
      progress_.update(
          fmt("grpo step %d  accuracy %.2f  reasoning %.0f tok  reward %.3f  w %.2f  ratio %.3f  "
              "|Δlogp| %.3f  KL %.4f  rollouts %.0fs  %s / %s",
              step + 1, acc, mean_len, reward_sum / n, w, st.mean_ratio, st.old_new_logprob_gap,
              st.kl, rollout_seconds, clock_text(s).c_str(), clock_text(budget).c_str()));
    }
    progress_.note("");
    if (step != last_validated) consider(validate(validation, step, since(t0)));
    progress_.note(
        fmt("stage 2 keeps step %d's weights: validation accuracy %.1f%%, %.1f reasoning "
            "tokens (at the start: %.1f%%, %.1f)",
            best.step, 100 * best.accuracy, best.reasoning_tokens, 100 * start.accuracy,
            start.reasoning_tokens));
    trainer_->load_tensors(best.tensors);
    write_plot("rl.svg", "stage 2: accuracy (rollouts sampled at T = 1; validation greedy)",
               "updates", "",
               {{"rollouts", rl_acc_.x, rl_acc_.y, true, false},
                {"validation", val_acc_.x, val_acc_.y, true, true}});
    write_plot("rl_length.svg", "stage 2: mean reasoning tokens", "updates", "tokens",
               {{"rollouts", rl_len_.x, rl_len_.y, true, false},
                {"validation", val_len_.x, val_len_.y, true, true}});
  }

  void write_plot(const std::string& name, const std::string& title, const std::string& x,
                  const std::string& y, std::vector<PlotSeries> series) {
    PlotSpec spec;
    spec.title = title;
    spec.x_label = x;
    spec.y_label = y;
    spec.series = std::move(series);
    write_file(path(name), render_svg(spec));
  }

  // Both stages on the held-out problems: single agent (think), and on Countdown-4 the native
  // sub-agents against the single agent, each at three token limits (per agent), so that they
  // can be compared at equal wall time.
  std::string results() {
    struct Row {
      std::string model, set;
      int max_tokens;  // per agent
      ModeReport report;
    };
    std::vector<Row> rows;
    const int full = r_.eval_max_tokens;
    for (const std::string stage : {"sft", "grpo"}) {
      const StageModel m = load_model(stage == "sft" ? stage2_start() : path(stage + ".gguf"));
      auto eval = [&](const std::string& set, const std::vector<EvalItem>& items,
                      const std::string& mode, int max_tokens) {
        rows.push_back({stage, set, max_tokens,
                        evaluate_mode(*m.model, *m.tokenizer, *m.chat_template, items, mode,
                                      max_tokens, r_, o_.threads, progress_, stage)});
      };
      eval("countdown-3 + arithmetic", held_.single, "think", full);
      // The single agent with a thinking budget (closed with the answer cue), so a short limit
      // still answers; the sub-agents each with that many tokens.
      for (const int limit : {full / 4, full / 2})
        eval("countdown-4", held_.countdown4, "budget:" + std::to_string(limit), full);
      eval("countdown-4", held_.countdown4, "think", full);
      for (const int limit : {full / 4, full / 2, full})
        eval("countdown-4", held_.countdown4, "markup:4", limit);
    }
    std::ostringstream md;
    md << "| model | problems | mode | tokens per agent | accuracy | mean reasoning tokens | mean "
          "total tokens | wall s |\n"
          "|---|---|---|---|---|---|---|---|\n";
    Json::Array json;
    for (const Row& row : rows) {
      const ModeReport& rep = row.report;
      const int limit = rep.mode.kind == EvalModeKind::kBudget ? rep.mode.budget : row.max_tokens;
      md << fmt("| %s | %s | %s | %d | %.1f%% | %.1f | %.1f | %.1f |\n", row.model.c_str(),
                row.set.c_str(), rep.mode.name.c_str(), limit, 100 * rep.accuracy,
                rep.mean_reasoning_tokens, rep.mean_total_tokens, rep.wall_seconds);
      json.push_back(Json(Json::Object{{"model", Json(row.model)},
                                       {"problems", Json(row.set)},
                                       {"mode", Json(rep.mode.name)},
                                       {"tokens_per_agent", Json(limit)},
                                       {"accuracy", Json(rep.accuracy)},
                                       {"mean_reasoning_tokens", Json(rep.mean_reasoning_tokens)},
                                       {"mean_total_tokens", Json(rep.mean_total_tokens)},
                                       {"wall_seconds", Json(rep.wall_seconds)}}));
    }
    write_file(path("results.md"), md.str());
    write_file(path("results.json"), Json(std::move(json)).dump() + "\n");
    std::vector<PlotSeries> series;
    for (const Row& row : rows) {
      if (row.set != "countdown-3 + arithmetic") continue;
      series.push_back(
          {"after " + row.model, {row.report.mean_reasoning_tokens}, {100 * row.report.accuracy}});
    }
    write_plot("accuracy_vs_tokens.svg", "held-out accuracy against mean reasoning tokens",
               "mean reasoning tokens per problem", "accuracy (%)", series);
    std::vector<PlotSeries> by_time;
    for (const std::string stage : {"sft", "grpo"}) {
      for (const bool agents : {false, true}) {
        PlotSeries line{(agents ? "4 sub-agents, " : "single agent, ") + stage, {}, {}, true};
        line.dashed = stage == "sft";
        std::vector<std::pair<double, double>> points;  // (wall s, accuracy %)
        for (const Row& row : rows) {
          if (row.model != stage || row.set != "countdown-4" ||
              (row.report.mode.kind == EvalModeKind::kMarkup) != agents)
            continue;
          points.push_back({row.report.wall_seconds, 100 * row.report.accuracy});
        }
        std::sort(points.begin(), points.end());
        for (const auto& [x, y] : points) line.x.push_back(x), line.y.push_back(y);
        by_time.push_back(std::move(line));
      }
    }
    write_plot("countdown4_vs_time.svg",
               "Countdown-4, held out: accuracy against wall time (token limits 1/4, 1/2, 1)",
               "wall seconds for the set", "accuracy (%)", by_time);
    return md.str();
  }

  Recipe r_;
  TrainOptions o_;
  HeldOut held_;
  BpeVocab vocab_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Trainer> trainer_;
  std::ofstream log_;
  Progress progress_;
  Curve sft_loss_, sft_val_, rl_acc_, rl_len_, val_acc_, val_len_;
};

}  // namespace

std::string run_recipe(const Recipe& recipe, const TrainOptions& options) {
  if (options.stage != "all" && options.stage != "sft" && options.stage != "grpo" &&
      options.stage != "eval")
    fail("--stage must be all, sft, grpo or eval");
  if (options.threads < 1) fail("threads must be at least 1");
  if (!(options.time_scale > 0)) fail("--time-scale must be positive");
  return RecipeRun(recipe, options).run();
}

}  // namespace muse
