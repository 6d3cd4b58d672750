// `muse eval`'s engine: a question set through a chat model in one reasoning mode, many
// questions at once in the batched scheduler, each answer checked; accuracy, reasoning and
// total tokens, and time per mode, as a table, JSON and a plot of accuracy against tokens.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "evals/tasks.h"
#include "reasoning/contemplation.h"
#include "runtime/sampler.h"
#include "util/json.h"
#include "util/svg_plot.h"

namespace muse {

class ChatTemplate;
class Scheduler;
struct Request;
class Tokenizer;

enum class EvalModeKind {
  kNoThink,      // thinking switched off in the template
  kThink,        // thinking on, unbounded
  kBudget,       // thinking on, at most `budget` tokens (then closed with Qwen3's cue)
  kEarlyExit,    // thinking on, ended early when a trial answer is confident (DEER)
  kContemplate,  // `agents` parallel thinking traces, joined by a confidence-weighted vote or
                 // (synthesis) by a pass that compares their answers
  kMarkup,       // the model spawns sub-agents itself with native markup, at most `agents` per join
};

struct EvalMode {
  EvalModeKind kind = EvalModeKind::kThink;
  int budget = 0;
  int agents = 0;
  bool synthesis = false;
  float threshold = 0.95f;
  std::string name;  // as given: "budget:256"
};
// "no-think" | "think" | "budget:N" | "deer[:THRESHOLD]" | "contemplate:N[:synth]" | "markup:W"; throws
// otherwise.
EvalMode parse_eval_mode(const std::string& text);

struct EvalSettings {
  int max_tokens = 1024;  // per answer (per trace in contemplate mode)
  SamplingParams sampling;
  int concurrency = 8;  // questions in flight
  std::string system_prompt;
  SpawnMarkup spawn_markup;  // markup mode: the model's tags (spawn_markup_from its file)
  // Adjusts a question's request (e.g. a grammar for the answer's form); not for contemplate.
  std::function<void(const EvalItem& item, Request& request)> configure;
};

struct ItemOutcome {
  std::string id;
  std::string given;  // the extracted answer ("" when there was none)
  bool correct = false;
  int reasoning_tokens = 0;
  int total_tokens = 0;
  double seconds = 0;  // from submitting the question to its answer
};

struct ModeReport {
  EvalMode mode;
  std::vector<ItemOutcome> items;
  double accuracy = 0;  // in [0, 1]
  double mean_reasoning_tokens = 0, mean_total_tokens = 0;
  double wall_seconds = 0;
  double tokens_per_second = 0;  // all generated tokens over the wall time
};

// Called after every step: questions answered, questions in all, tokens generated so far.
using EvalProgress = std::function<void(int answered, int total, long long tokens)>;

// Throws when the model cannot run `mode` (budgets and early exit need single-token reasoning tags).
void check_eval_mode(const Tokenizer& tokenizer, const ChatTemplate& chat_template, const EvalMode& mode);

// Runs every item in `mode` on `scheduler`, stepping it on this thread.
ModeReport run_eval(Scheduler& scheduler, const Tokenizer& tokenizer, const ChatTemplate& chat_template,
                    const std::vector<EvalItem>& items, const EvalMode& mode, const EvalSettings& settings,
                    const EvalProgress& progress = {});

std::string eval_table(const std::vector<ModeReport>& reports);
Json eval_json(const std::vector<ModeReport>& reports);
// The summaries of a `muse eval --json` file's modes (without the per-question outcomes), each
// named "LABEL MODE"; throws with the file's name on anything else.
std::vector<ModeReport> eval_summaries_from_json(const Json& results, const std::string& label,
                                                 const std::string& file);
// Accuracy against mean total tokens, one point per mode.
PlotSpec eval_plot(const std::vector<ModeReport>& reports, const std::string& title);

}  // namespace muse
