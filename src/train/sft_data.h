// Training text for Muse's own small reasoning model (issue 6, thought compression): verbose
// solution traces for supervised fine-tuning, from the eval task generators and their solvers.
// Reinforcement learning with a length penalty then makes the model think shorter, which it can
// only learn if the traces vary in length for the same kind of problem: optional redundant lines
// and Countdown dead ends appear with a per-trace probability, and the Countdown search order
// may be shuffled.
//
// Every example is a pure function of (seed, index), so data loaders can run in parallel and
// resume anywhere.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "evals/tasks.h"

namespace muse {

// One training sequence as text pieces: `context` pieces are given (no loss), `target` pieces are
// what the model must learn to generate (loss, each token's scaled by `weight`). Concatenated in
// order they are the full sequence.
struct TextPiece {
  std::string text;
  bool target = false;
  float weight = 1;
};
using TrainingText = std::vector<TextPiece>;

// The pieces concatenated: the whole sequence.
std::string joined_text(const TrainingText& text);

// `text` with every Countdown decision word in its target pieces (" yes" or " no" right after
// "target T:") split out as a piece of its own with loss weight `weight`; the same sequence.
TrainingText weigh_decisions(const TrainingText& text, float weight);

struct SftMix {  // fractions, normalised
  double arithmetic = 0.25, countdown3 = 0.5, countdown4 = 0, countdown4_spawn = 0.2,
         no_think = 0.05;
  int arithmetic_min_steps = 2, arithmetic_max_steps = 3;
  // Countdown problems whose fully verbose trace is longer than this are redrawn (bounds
  // tokens): Countdown-3, and Countdown-4 solved by a single agent.
  int max_trace_lines = 60, max_trace_lines_4 = 120;
  // Countdown searches (single agent, parent and sub-agents) in a random order of moves at each
  // node, or in the solver's fixed order (pairs larger first, then + - * /).
  bool shuffle_countdown = true;
  TaskNumbers numbers;  // how large the problems' numbers get
  // Loss weight of each Countdown hit decision (the "yes" or "no" after "target T:"). Hits are one
  // try in ten or so, and a model trained at weight 1 called three hits in four "no" even when
  // reading the training traces: the rare token's gradient builds the comparison too slowly.
  float decision_weight = 1;
  // Share of the think traces written fully verbose (the "think long" model); the others draw a
  // verbosity uniformly in [0, 1]. Stage 2 can only prefer shorter traces that the model samples:
  // at 0.75 a nano model sampled the same trace for a problem 8 times in 8 at T = 1.
  double verbose_share = 0.75;
  // Single-agent traces re-check each Countdown try and arithmetic step on an optional line
  // (TraceStyle::recheck_results), so that the think-long model writes about as much text it
  // can safely drop as search: without it, only 1.42x of its reasoning could go without
  // guessing which moves are dead ends. Sub-agents' traces stay without, to fit their context.
  bool recheck_results = false;
  // With recheck_results, whether the fully verbose Countdown traces (what the stage-1 model
  // writes greedily) carry the re-checks too; the partly verbose ones keep each with their
  // verbosity either way. Run 16's nano model, trained on fully verbose searches with a check
  // after every try, called hits "no" and solved 27% of held-out Countdown-3 problems; run 15's,
  // without them there, 64%.
  bool recheck_verbose_countdown = true;
  // Traces below full verbosity also skip Countdown moves that lead nowhere (each kept with the
  // trace's verbosity), as a solver that knew the way would: shorter, but a model that learns
  // them learns to guess which moves to leave out.
  bool skip_dead_ends = true;
  // Arithmetic steps worked column by column (TraceStyle::column_steps) rather than by
  // place-value chains alone, each optional as a chain is (off in the nano recipe: run 18).
  bool column_steps = false;
};

// The index-th training text of the stream for `seed`, independent of every other index:
//  - think (arithmetic, Countdown-3, Countdown-4 by one agent): the chat prompt, then
//    "<think>\n" + trace + "\n</think>\n\n" + "Answer: A<|im_end|>" as target;
//  - no-think: the prompt and an empty thinking block as context, "Answer: A<|im_end|>" as target;
//  - Countdown-4 with sub-agents: one of sft_spawn_example's texts (the parent half the time).
// Traces: mix.verbose_share of them fully verbose (verbosity 1), the others a verbosity drawn
// uniformly in [0, 1], which also keeps each Countdown dead end with that
// probability (mix.skip_dead_ends) and each re-check (mix.recheck_results); Countdown moves
// shuffled or not (mix.shuffle_countdown), no cap on the lines shown; arithmetic steps with
// optional place-value chains; decisions weighted by mix.decision_weight.
TrainingText sft_example(const SftMix& mix, uint64_t seed, uint64_t index);

// A Countdown-4 problem solved with sub-agents (MarkupProtocol's native markup). The parent thinks
// "Numbers: ... Target: T." and spawns up to 4 first moves per round, one per line, in the
// solver's order (shuffled or not, as mix.shuffle_countdown), each as the Countdown-3 task
//   <spawn>Numbers: A, B and C. Target: T. Use A = 9 + 5.</spawn>
// then <join>. Each child (context: the parent's sequence through <join>, then <task>TASK</task>)
// searches the three values, writes "With A = x op y: E = T." (its expression with the first
// move put back) and answers E, the full expression over the original four numbers, or
// "none". The parent (results as context) writes "Found: R" and "Answer: R" for the first answer,
// or "No luck." and the next round. Problems are solvable and a solving move comes within the
// first 4 rounds. Returns the parent first, then up to `max_children` children in spawn order,
// the one whose answer the parent takes among them (when max_children > 0).
std::vector<TrainingText> sft_spawn_example(uint64_t seed, uint64_t index, int max_children = 2,
                                            const SftMix& mix = SftMix());

// The prompt the chat template renders for a one-turn question (for evaluation and RL):
// "<|im_start|>user\n" + question + "<|im_end|>\n<|im_start|>assistant\n".
std::string chat_prompt_text(const std::string& question);

}  // namespace muse
