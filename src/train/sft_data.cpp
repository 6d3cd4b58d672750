#include "train/sft_data.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <string_view>

#include "evals/tasks.h"
#include "reasoning/contemplation.h"
#include "util/error.h"

namespace muse {
namespace {

// Salts that keep the streams of sft_example and sft_spawn_example for one (seed, index) apart.
constexpr uint64_t kExampleSalt = 0x5f7e'0001;
constexpr uint64_t kSpawnSalt = 0x5f7e'0002;

constexpr int kSpawnWidth = 4;   // first moves a parent spawns per round
constexpr int kSpawnRounds = 4;  // a solving move comes within this many rounds
constexpr int kMaxRedraws = 1000;

const char* const kEndOfTurn = "<|im_end|>";

// SplitMix64: the same stream on every platform (std distributions are not), seeded from the
// seed and the index alone.
class Draws {
 public:
  Draws(uint64_t seed, uint64_t index, uint64_t salt) : state_(mix(mix(seed ^ salt) + index)) {}

  uint64_t next() { return mix(state_ += 0x9e3779b97f4a7c15ull); }
  double unit() { return double(next() >> 11) * 0x1p-53; }  // [0, 1)
  uint64_t below(uint64_t n) {                              // [0, n), n > 0, by rejection
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = next();
    while (x >= limit);
    return x % n;
  }

 private:
  static uint64_t mix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

  uint64_t state_;
};

bool ends_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

// A training trace's style: mix.verbose_share fully verbose (the "think long" model SFT makes),
// the rest anywhere between terse and verbose, terse ones skipping arithmetic place-value chains
// or column working and re-checks (mix.recheck_results) too, and Countdown dead ends
// (mix.skip_dead_ends); every Countdown try writes the target beside its result.
TraceStyle training_style(Draws& d, const SftMix& mix) {
  TraceStyle style;
  style.max_shown_lines = 0;
  style.shuffle_moves = mix.shuffle_countdown;
  style.place_value_steps = true;
  style.column_steps = mix.column_steps;
  style.optional_dead_ends = mix.skip_dead_ends;
  style.compare_to_target = true;
  style.recheck_results = mix.recheck_results;
  style.verbosity = d.unit() < mix.verbose_share ? 1.0 : d.unit();
  style.seed = d.next();
  return style;
}

// A solver trace without its last line when that is "Answer: ...", and without trailing
// newlines: the answer is written once, after the thinking.
std::string thinking_of(const std::string& trace) {
  std::string out = trace;
  const size_t line = out.rfind('\n');
  if (out.compare(line == std::string::npos ? 0 : line + 1, 8, "Answer: ") == 0)
    out.erase(line == std::string::npos ? 0 : line);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

int count_lines(const std::string& text) {
  return int(std::count(text.begin(), text.end(), '\n')) + (ends_with(text, "\n") ? 0 : 1);
}

TrainingText think_text(const EvalItem& item, const std::string& trace) {
  return {{chat_prompt_text(item.question), false},
          {"<think>\n" + thinking_of(trace) + "\n</think>\n\nAnswer: " + item.answer + kEndOfTurn,
           true}};
}

TrainingText no_think_text(const EvalItem& item) {
  // What the template renders with enable_thinking=false: an empty block the model continues.
  return {{chat_prompt_text(item.question) + "<think>\n\n</think>\n\n", false},
          {"Answer: " + item.answer + kEndOfTurn, true}};
}

EvalItem arithmetic_item(const SftMix& mix, Draws& d, const TraceStyle& style) {
  const int span = mix.arithmetic_max_steps - mix.arithmetic_min_steps + 1;
  const int steps = mix.arithmetic_min_steps + int(d.below(uint64_t(span)));
  return generate_arithmetic(1, d.next(), steps, style, mix.numbers)[0];
}

// A Countdown item of `numbers` numbers whose solution is `style`'s trace (re-checked as the mix
// says), drawn until its fully verbose trace (the same search with every line and move shown)
// fits the mix's line limit, so the problems do not depend on the verbosity.
EvalItem countdown_item(const SftMix& mix, Draws& d, TraceStyle style, int numbers) {
  if (style.verbosity >= 1 && !mix.recheck_verbose_countdown) style.recheck_results = false;
  const int max_lines = numbers == 3 ? mix.max_trace_lines : mix.max_trace_lines_4;
  for (int attempt = 0; attempt < kMaxRedraws; ++attempt) {
    EvalItem item = generate_countdown(1, d.next(), numbers, mix.numbers)[0];
    TraceStyle verbose = style;
    verbose.verbosity = 1;
    verbose.recheck_results = false;  // the same problems with re-checks or without
    std::string trace;
    std::string answer = solve_countdown(item.numbers, item.target, &trace, verbose);
    if (count_lines(trace) > max_lines) continue;
    if (style.verbosity < 1 || style.recheck_results)
      answer = solve_countdown(item.numbers, item.target, &trace, style);
    if (!check_answer(item, answer)) fail("internal: the Countdown solver missed ", item.id);
    item.answer = answer;
    item.solution = trace;
    return item;
  }
  fail("a line limit of ", max_lines, " is too small for Countdown-", numbers, " traces");
}

std::string join_numbers(const std::vector<int>& values) {
  std::string out;
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += i + 1 == values.size() ? " and " : ", ";
    out += std::to_string(values[i]);
  }
  return out;
}

// `expr` with its first literal equal to `value` replaced by `replacement` in parentheses (a
// literal, not digits inside a longer number).
std::string substitute(const std::string& expr, int64_t value, const std::string& replacement) {
  const std::string literal = std::to_string(value);
  if (expr == literal) return replacement;
  for (size_t i = 0; i < expr.size();) {
    if (!std::isdigit(static_cast<unsigned char>(expr[i]))) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < expr.size() && std::isdigit(static_cast<unsigned char>(expr[j]))) ++j;
    if (expr.compare(i, j - i, literal) == 0 && j - i == literal.size())
      return expr.substr(0, i) + "(" + replacement + ")" + expr.substr(j);
    i = j;
  }
  fail("internal: ", literal, " is not in \"", expr, "\"");
}

// One first move as a sub-agent's Countdown-3 task: the new value first, then the numbers left.
struct SubTask {
  std::vector<int> values;
  std::string compound;  // "9 + 5"
  std::string task;      // "Numbers: 14, 7 and 1. Target: 35. Use 14 = 9 + 5."
};

SubTask sub_task(const EvalItem& item, const CountdownMove& m) {
  SubTask t;
  t.compound = std::to_string(m.a) + " " + m.op + " " + std::to_string(m.b);
  std::vector<int> rest = item.numbers;
  for (const int64_t used : {m.a, m.b}) rest.erase(std::find(rest.begin(), rest.end(), int(used)));
  t.values = {int(m.result)};
  t.values.insert(t.values.end(), rest.begin(), rest.end());
  t.task = "Numbers: " + join_numbers(t.values) + ". Target: " + std::to_string(item.target) +
           ". Use " + std::to_string(m.result) + " = " + t.compound + ".";
  return t;
}

bool solves(const EvalItem& item, const CountdownMove& m) {
  return !solve_countdown(sub_task(item, m).values, item.target).empty();
}

struct SpawnProblem {
  EvalItem item;
  std::vector<CountdownMove> moves;  // in the parent's order
};

// A solvable Countdown-4 problem with a move order (shuffled, or the solver's) whose first
// solving move comes within the rounds, and no single operation that reaches the target (nothing
// to hand out then).
SpawnProblem spawn_problem(Draws& d, const SftMix& mix) {
  for (int attempt = 0; attempt < kMaxRedraws; ++attempt) {
    SpawnProblem p{generate_countdown(1, d.next(), 4, mix.numbers)[0], {}};
    TraceStyle order;
    order.shuffle_moves = mix.shuffle_countdown;
    const int orders = mix.shuffle_countdown ? 4 : 1;
    for (int redraw = 0; redraw < orders; ++redraw) {  // other orders before another problem
      order.seed = d.next();
      p.moves = countdown_first_moves(p.item.numbers, order);
      if (std::any_of(p.moves.begin(), p.moves.end(),
                      [&](const CountdownMove& m) { return m.result == p.item.target; }))
        break;
      const size_t within = std::min(p.moves.size(), size_t(kSpawnWidth * kSpawnRounds));
      for (size_t k = 0; k < within; ++k)
        if (solves(p.item, p.moves[k])) return p;
    }
  }
  fail("internal: no Countdown-4 problem with a solving first move");
}

TrainingText pick(std::vector<TrainingText> texts, Draws& d) {
  if (texts.size() == 1 || d.unit() < 0.5) return std::move(texts[0]);
  return std::move(texts[1 + size_t(d.below(texts.size() - 1))]);
}

}  // namespace

std::string joined_text(const TrainingText& text) {
  std::string out;
  for (const TextPiece& p : text) out += p.text;
  return out;
}

TrainingText weigh_decisions(const TrainingText& text, float weight) {
  TrainingText out;
  for (const TextPiece& p : text) {
    if (!p.target) {
      out.push_back(p);
      continue;
    }
    size_t done = 0;  // p.text before this is in `out`
    for (size_t at = p.text.find(", target "); at != std::string::npos;
         at = p.text.find(", target ", at + 1)) {
      size_t colon = at + 9;
      while (colon < p.text.size() && std::isdigit(static_cast<unsigned char>(p.text[colon])))
        ++colon;
      if (colon == at + 9 || p.text.compare(colon, 1, ":") != 0) continue;
      const size_t word = colon + 1;
      size_t length = 0;
      for (const char* w : {" yes", " no"}) {
        const size_t end = word + std::strlen(w);  // a whole word: not " none" or " not"
        if (p.text.compare(word, std::strlen(w), w) == 0 &&
            (end == p.text.size() || !std::isalpha(static_cast<unsigned char>(p.text[end]))))
          length = std::strlen(w);
      }
      if (!length) continue;
      out.push_back({p.text.substr(done, word - done), true, p.weight});
      out.push_back({p.text.substr(word, length), true, p.weight * weight});
      done = word + length;
    }
    if (done < p.text.size()) out.push_back({p.text.substr(done), true, p.weight});
  }
  return out;
}

std::string chat_prompt_text(const std::string& question) {
  return "<|im_start|>user\n" + question + "<|im_end|>\n<|im_start|>assistant\n";
}

std::vector<TrainingText> sft_spawn_example(uint64_t seed, uint64_t index, int max_children,
                                            const SftMix& mix) {
  if (max_children < 0) fail("max_children must not be negative, got ", max_children);
  Draws d(seed, index, kSpawnSalt);
  const SpawnProblem p = spawn_problem(d, mix);
  const EvalItem& item = p.item;
  const std::string target = std::to_string(item.target);

  TrainingText parent = {{chat_prompt_text(item.question), false}};
  std::string sequence = parent[0].text;  // the parent's sequence so far, what children fork
  auto add = [&](std::string text, bool is_target) {
    sequence += text;
    parent.push_back({std::move(text), is_target});
  };
  std::vector<TrainingText> children;
  size_t solving = 0;  // the child whose answer the parent takes
  std::string found;
  std::string written =
      "<think>\nNumbers: " + join_numbers(item.numbers) + ". Target: " + target + ".\n";
  for (size_t from = 0; found.empty(); from += kSpawnWidth) {
    if (from >= p.moves.size()) fail("internal: spawn rounds ran out on ", item.question);
    const size_t to = std::min(p.moves.size(), from + kSpawnWidth);
    std::vector<SubTask> tasks;
    for (size_t k = from; k < to; ++k) {
      tasks.push_back(sub_task(item, p.moves[k]));
      written += (k > from ? "\n<spawn>" : "<spawn>") + tasks.back().task + "</spawn>";
    }
    add(written + "<join>", true);
    std::string results;
    for (const SubTask& t : tasks) {
      std::string trace;
      TraceStyle style = training_style(d, mix);
      style.recheck_results = false;
      const std::string answer = solve_countdown(t.values, item.target, &trace, style);
      std::string result = SpawnMarkup().no_answer;  // what a branch that found nothing returns
      std::string thinking = thinking_of(trace);
      if (!answer.empty()) {
        result = substitute(answer, t.values[0], t.compound);
        if (!check_answer(item, result)) fail("internal: sub-agent answer ", result, " is wrong");
        if (found.empty()) found = result, solving = children.size();
        // The answer is over the original numbers: the first move goes back in, written out
        // (a model left to do it after the thinking answered with made-up expressions).
        thinking += "\nWith " + std::to_string(t.values[0]) + " = " + t.compound + ": " + result +
                    " = " + target + ".";
      }
      children.push_back({{sequence, false},
                          {"<task>" + t.task + "</task>", false},
                          {"\n" + thinking + "\n</think>\n\n" + result + kEndOfTurn, true}});
      results += "<result>" + result + "</result>";
    }
    add(results, false);
    written = "\nNo luck.\n";
  }
  add("\nFound: " + found + "\n</think>\n\nAnswer: " + found + kEndOfTurn, true);

  // The solving child, and others drawn at random (those that answer "none" teach that too).
  std::vector<size_t> others;
  for (size_t i = 0; i < children.size(); ++i)
    if (i != solving) others.push_back(i);
  for (size_t i = 0; i < others.size(); ++i)
    std::swap(others[i], others[i + size_t(d.below(others.size() - i))]);
  std::vector<size_t> chosen;
  if (max_children > 0) chosen.push_back(solving);
  for (size_t i = 0; i < others.size() && chosen.size() < size_t(max_children); ++i)
    chosen.push_back(others[i]);
  std::sort(chosen.begin(), chosen.end());
  std::vector<TrainingText> out = {std::move(parent)};
  for (size_t i : chosen) out.push_back(std::move(children[i]));
  return out;
}

TrainingText sft_example(const SftMix& mix, uint64_t seed, uint64_t index) {
  const double weights[] = {mix.arithmetic, mix.countdown3, mix.countdown4, mix.countdown4_spawn,
                            mix.no_think};
  double total = 0;
  for (double w : weights) {
    if (!(w >= 0)) fail("SFT mix fractions must not be negative");
    total += w;
  }
  if (total <= 0) fail("SFT mix fractions must not all be zero");
  if (!(mix.decision_weight > 0)) fail("decision weight must be positive");
  if (mix.arithmetic_min_steps < 1 || mix.arithmetic_max_steps < mix.arithmetic_min_steps)
    fail("arithmetic steps must be 1 <= min <= max, got ", mix.arithmetic_min_steps, " and ",
         mix.arithmetic_max_steps);

  Draws d(seed, index, kExampleSalt);
  double u = d.unit() * total;
  enum Kind { kArithmetic, kCountdown3, kCountdown4, kSpawn, kNoThink };  // weights' order
  int kind = -1;  // the last with a weight, should rounding carry u past the end
  for (int k = kArithmetic; k <= kNoThink; ++k) {
    if (weights[k] <= 0) continue;
    kind = k;
    if (u < weights[k]) break;
    u -= weights[k];
  }
  TrainingText text;
  if (kind == kSpawn) {
    text = pick(sft_spawn_example(seed, index, 2, mix), d);
  } else {
    const TraceStyle style = training_style(d, mix);
    if (kind == kNoThink) {
      text = no_think_text(d.unit() < 0.5 ? arithmetic_item(mix, d, style)
                                          : countdown_item(mix, d, style, 3));
    } else {
      const EvalItem item = kind == kArithmetic
                                ? arithmetic_item(mix, d, style)
                                : countdown_item(mix, d, style, kind == kCountdown3 ? 3 : 4);
      text = think_text(item, item.solution);
    }
  }
  return mix.decision_weight == 1 ? text : weigh_decisions(text, mix.decision_weight);
}

}  // namespace muse
