// `muse train`'s recipes: the whole thought-compression pipeline, from nothing to a shipped
// model. A tokenizer learned on the training text; stage 1 (think long): supervised training on
// verbose solution traces; stage 2 (compress): GRPO with rollouts from Muse's batched engine and
// a reward of correctness minus a warmed-up length penalty; evaluations on held-out problems
// after each stage (single agent and Contemplating mode); curves, plots and a results table.
// Step counts follow from wall-clock budgets and the measured speed, so a recipe takes the
// same time on any machine (and learns less on a slower one).
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "train/gguf_export.h"
#include "train/sft_data.h"
#include "train/trainer.h"

namespace muse {

class Tokenizer;

struct Recipe {
  std::string name;
  NetShape shape;  // n_vocab follows from the tokenizer
  int vocab_size = 768;
  int tokenizer_texts = 3000;
  SftMix mix;
  uint64_t seed = 1;
  // Stage 1.
  double sft_minutes = 55;
  int64_t sft_batch_tokens = 4096;  // small: at this size, optimizer steps are what is scarce
  double sft_lr = 2e-3, sft_lr_min = 2e-4;
  int sft_warmup_steps = 30;
  // The steps sft_minutes gave where the recipe was tuned (0: not stated). The budgets are
  // time, so a slower machine trains less; stage 1 says so when it fits far fewer steps.
  int sft_reference_steps = 0;
  // Stage 2.
  double grpo_minutes = 45;
  int grpo_prompts = 8, grpo_group = 8, grpo_max_tokens = 640;
  double grpo_lr = 5e-5, grpo_clip = 0.2;
  double grpo_kl = 0.1;        // the KL term's weight, toward the stage-1 weights
  double length_weight = 0.5;  // the length reward's weight once warmed up
  double length_min_correct = 0.5;  // groups less right than this get no length reward
  // Checkpoint selection: every grpo_val_minutes, greedy accuracy and reasoning tokens on
  // grpo_val_items problems of the RL stream's kind (not held out, never rolled out). Stage 2
  // keeps the shortest-thinking weights whose accuracy is at most grpo_val_tolerance below its
  // starting point's (the start included): compression is what it is for, so a checkpoint
  // that is more accurate but longer is not preferred.
  double grpo_val_minutes = 4;
  int grpo_val_items = 200;
  double grpo_val_tolerance = 0.01;
  // Evaluation: held-out problems: eval_items Countdown-3 and as many arithmetic (single agent),
  // half as many Countdown-4 (sub-agents against the single agent, each also at 1/4 and 1/2 of
  // eval_max_tokens per agent, to compare them at equal wall time).
  int eval_items = 100;
  int eval_max_tokens = 1024;
};

// "nano" (the shipped model: ~4M parameters, about 2 hours on 2 cores) and "smoke" (a tiny
// model in about 2 minutes, for tests). Throws muse::Error for others.
Recipe recipe_by_name(const std::string& name);

struct TrainOptions {
  std::string run_dir = "muse-train";  // logs, checkpoints, plots, results
  std::string output;                  // the final model (F16); "" : run_dir/<name>.gguf
  std::string stage = "all";  // all | sft | grpo | eval (the results of both stages' models)
  std::string init;           // grpo: start from this exported model (default run_dir/sft.gguf)
  int threads = 2;
  double time_scale = 1.0;  // multiplies the recipe's time budgets
};

// A training text as tokens, loss on its target pieces with their weights (every piece boundary
// sits at a special token or where the pre-tokenizer splits anyway, as before a decision word, so
// pieces tokenize as the whole text does).
TokenizedExample tokenize_example(const Tokenizer& tokenizer, const TrainingText& text);

// Runs the recipe, printing progress on stderr; returns the results table (Markdown).
std::string run_recipe(const Recipe& recipe, const TrainOptions& options);

}  // namespace muse
