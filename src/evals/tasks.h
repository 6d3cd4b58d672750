// Question sets for `muse eval`: offline generators of synthetic tasks whose answers a symbolic
// solver verifies (each item also carries the solver's verbose step-by-step trace, as training
// text for small models), answer extraction and checking, and JSONL reading and writing.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "util/json.h"

namespace muse {

enum class CheckKind { kExact, kNumeric, kChoice, kRegex, kCountdown };

struct EvalItem {
  std::string id;        // "arith-0007"
  std::string question;  // the prompt; asks for the final answer on the last line
  std::string answer;    // reference: for regex the pattern, for countdown one valid expression
  CheckKind check = CheckKind::kExact;
  std::vector<std::string> choices;  // kChoice: option texts, lettered A, B, C... in the question
  std::vector<int> numbers;          // kCountdown only
  int target = 0;                    // kCountdown only
  std::string solution;              // verbose solver trace; may be empty for loaded sets
};

// How solver traces are written. The defaults give the eval sets' traces; training text varies
// them, so that traces differ in length for the same problem (what a length penalty can shorten).
struct TraceStyle {
  int max_shown_lines = 40;  // Countdown search lines shown; 0: no cap (training uses no cap)
  double verbosity = 1.0;    // probability of each optional (redundant) line
  // Countdown: randomise the order of pairs and operations at each node (still exhaustive).
  bool shuffle_moves = false;
  // Arithmetic: an optional place-value chain for a step whose operand has several nonzero
  // places ("14 + 97 = 14 + 90 + 7 = 104 + 7 = 111"; off by default, so the eval sets' traces
  // stay as they were).
  bool place_value_steps = false;
  // Arithmetic: an optional column-by-column working of a step instead, every part a one-digit
  // fact with its carry or borrow ("79 + 48: ones 9 + 8 = 17, carry 1; tens 7 + 4 + 1 = 12;
  // so 79 + 48 = 127"); products with a one-digit factor and quotients with a one-digit divisor
  // the same way (long multiplication and division), other steps as place_value_steps says.
  bool column_steps = false;
  // Countdown: in a solvable problem, a move that leads nowhere is optional too (kept with
  // probability verbosity), so shorter traces skip dead ends the way a solver with a good
  // intuition would. An unsolvable problem's trace still shows every try.
  bool optional_dead_ends = false;
  // Countdown: every try copies the target next to its result before saying whether it is hit
  // ("Try 14 + 2 = 16, target 14: no."), so the decision is a comparison of two adjacent numbers
  // (a small model trained on "Try 14 + 2 = 16: not 14." wrote "not" without looking).
  bool compare_to_target = false;
  // An optional re-check after each Countdown try ("Check: 8 + 3 = 11, and 11 is not 24.") and
  // each arithmetic step ("Check: 14 + 97 = 111."): text a solver can drop without changing its
  // search, as long reasoning models re-verify what they just wrote.
  bool recheck_results = false;
  uint64_t seed = 0;  // for verbosity and shuffling
};

// How large a generated problem's numbers get. The defaults are the eval sets'; small() is a
// range whose arithmetic a model of a few million parameters learns within its training budget.
struct TaskNumbers {
  int64_t arithmetic_limit = 10000;  // every arithmetic value stays below this (200..1e9)
  bool countdown_large = true;       // Countdown may draw 25, 50, 75 and 100 besides 1..10
  static TaskNumbers small() { return {1000, false}; }
};

// Generators: the same items for the same seed on every platform. Each solution ends with
// "Answer: <answer>".
// Multi-step positive integer arithmetic ("Compute ((17 + 5) * 3) - 8."), `steps` operations,
// values below range.arithmetic_limit, division only when exact. Numeric check. The style
// changes the solutions only, never the items.
std::vector<EvalItem> generate_arithmetic(int count, uint64_t seed, int steps = 3);
std::vector<EvalItem> generate_arithmetic(int count, uint64_t seed, int steps,
                                          const TraceStyle& style, const TaskNumbers& range = {});
// Countdown with 2..6 numbers; only solvable instances. The reference answer is the solver's.
std::vector<EvalItem> generate_countdown(int count, uint64_t seed, int numbers = 4,
                                         const TaskNumbers& range = {});
// Ordering and knights-and-knaves puzzles with a unique answer, multiple choice.
std::vector<EvalItem> generate_logic(int count, uint64_t seed);
// "arithmetic" | "countdown" | "logic"; `size`: arithmetic steps or Countdown numbers (0: the
// default, 3 and 4); `range` for arithmetic and Countdown (logic puzzles have no numbers).
std::vector<EvalItem> generate_task(const std::string& task, int count, uint64_t seed, int size = 0,
                                    const TaskNumbers& range = {});

// A generated question's identity, for keeping problems out of training: a Countdown problem by
// its numbers as a multiset and its target (the same numbers in another order are the same
// problem), any other question by its text.
std::string problem_key(const std::string& question);

// The trace of working out an arithmetic expression ("(17 + 5) * 3"), one innermost operation
// at a time, in `style`; *answer gets its value. Throws muse::Error when it does not parse or a
// division is not exact.
std::string solve_arithmetic(const std::string& expression, std::string* answer,
                             const TraceStyle& style);

// Countdown solver (exhaustive over combinations of pairs, Countdown rules: each number at most
// once, no zero or negative intermediate, division only when exact). Returns an expression that
// reaches target, or "" when none does; `trace`, when given, receives a readable search log.
std::string solve_countdown(const std::vector<int>& numbers, int target,
                            std::string* trace = nullptr);
std::string solve_countdown(const std::vector<int>& numbers, int target, std::string* trace,
                            const TraceStyle& style);
// One combination of two values, larger first: a op b = result.
struct CountdownMove {
  int64_t a = 0, b = 0, result = 0;
  char op = '+';
};
// The moves solve_countdown tries first (on all of `numbers`), in the order it tries them with
// `style`; a move listed twice (equal numbers) is listed once.
std::vector<CountdownMove> countdown_first_moves(const std::vector<int>& numbers,
                                                 const TraceStyle& style);
// Value of an integer expression of + - * / and parentheses (no unary minus, every division
// exact), or nullopt when it is malformed or overflows. `literals` receives its integers in order.
std::optional<int64_t> evaluate_expression(const std::string& text,
                                           std::vector<int64_t>* literals = nullptr);

// The model's answer from its reply (reasoning already removed): from the last line holding
// "Answer: X", "\boxed{X}" or "answer is X", else the last non-empty line; trimmed, without a
// trailing period, markdown ** or `backticks`.
std::string extract_final_answer(const std::string& reply);
// Whether `given` (already extracted) is correct for `item`.
bool check_answer(const EvalItem& item, const std::string& given);

const char* check_kind_name(CheckKind k);
CheckKind parse_check_kind(const std::string& s);  // throws muse::Error when unknown

// JSONL: one object per line, {"id","question","answer","check","choices","numbers","target",
// "solution"}, optional members omitted when empty. from_json validates the item (a bad regex,
// a choice or countdown answer that is not correct for its own item) and throws muse::Error.
Json eval_item_to_json(const EvalItem& item);
EvalItem eval_item_from_json(const Json& j);
// Errors read "FILE:LINE: message"; blank lines are skipped; an item without "id" is named
// after its line number.
std::vector<EvalItem> read_eval_items(const std::string& path);
void write_eval_items(const std::string& path, const std::vector<EvalItem>& items);

}  // namespace muse
