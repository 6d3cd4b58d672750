// SFT training text: deterministic per (seed, index); every answer is right by the eval checkers,
// re-derived from the question text alone; traces vary in length, shorter ones leaving out
// redundant lines and Countdown moves that lead nowhere; the eval sets' traces are unchanged;
// sub-agent examples follow the native spawn markup as MarkupProtocol reads it.
#include "train/sft_data.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "evals/tasks.h"
#include "io/gguf.h"
#include "reasoning/contemplation.h"
#include "reasoning/parallel_thinking.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "util/error.h"

namespace muse {
namespace {

const std::string kEnd = "<|im_end|>";

bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

std::string between(const std::string& s, const std::string& open, const std::string& close) {
  const size_t a = s.find(open);
  if (a == std::string::npos) return "";
  const size_t b = s.find(close, a + open.size());
  return b == std::string::npos ? "" : s.substr(a + open.size(), b - a - open.size());
}

std::vector<int> parse_numbers(const std::string& list) {  // "9, 5, 1 and 35"
  std::vector<int> out;
  for (size_t i = 0; i < list.size();) {
    if (!std::isdigit(static_cast<unsigned char>(list[i]))) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < list.size() && std::isdigit(static_cast<unsigned char>(list[j]))) ++j;
    out.push_back(std::stoi(list.substr(i, j - i)));
    i = j;
  }
  return out;
}

// The item a prompt asks about, from the question text alone (not the generator's item).
EvalItem item_from_prompt(const std::string& prompt) {
  const std::string q = between(prompt, "<|im_start|>user\n", kEnd);
  EvalItem item;
  item.question = q;
  if (q.rfind("Compute ", 0) == 0) {
    const std::optional<int64_t> v = evaluate_expression(between(q, "Compute ", ". Give"));
    if (!v) fail("bad arithmetic question ", q);
    item.check = CheckKind::kNumeric;
    item.answer = std::to_string(*v);
  } else {
    item.check = CheckKind::kCountdown;
    item.numbers = parse_numbers(between(q, "Using the numbers ", ", each"));
    item.target = std::stoi(between(q, "reach ", ". Every"));
  }
  return item;
}

std::string answer_of(const std::string& target) {  // after the last "Answer: ", before the end
  EXPECT_TRUE(ends_with(target, kEnd)) << target;
  const size_t at = target.rfind("Answer: ");
  if (at == std::string::npos) return "";
  return target.substr(at + 8, target.size() - kEnd.size() - at - 8);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1)
    out.push_back(text.substr(start, nl - start));
  out.push_back(text.substr(start));
  return out;
}

// Whether every line of `shorter` appears in `longer`, in order.
bool lines_subsequence(const std::string& shorter, const std::string& longer) {
  const std::vector<std::string> a = lines_of(shorter), b = lines_of(longer);
  size_t j = 0;
  for (const std::string& line : a) {
    while (j < b.size() && b[j] != line) ++j;
    if (j++ == b.size()) return false;
  }
  return true;
}

void expect_clean(const TrainingText& t) {
  ASSERT_GE(t.size(), 2u);
  EXPECT_FALSE(t[0].target);
  EXPECT_TRUE(t.back().target);
  const std::string all = joined_text(t);
  EXPECT_EQ(all.find('\r'), std::string::npos);
  EXPECT_EQ(all.find('\t'), std::string::npos);
  EXPECT_EQ(all.find("not shown"), std::string::npos) << all;
  EXPECT_EQ(all.rfind("<|im_start|>user\n", 0), 0u);
  EXPECT_TRUE(ends_with(all, kEnd));
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// A byte-level vocabulary, enough for MarkupProtocol (which tokenizes only what it appends).
std::unique_ptr<Tokenizer> byte_tokenizer() {
  static std::string bytes;
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.push_back(byte_to_gpt2_char(uint8_t(b)));
  GgufWriter w;
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", "gpt-2");
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_i32_array("tokenizer.ggml.token_type", std::vector<int32_t>(tokens.size(), 1));
  w.set_string_array("tokenizer.ggml.merges", {});
  bytes = w.to_bytes();
  const auto file =
      GgufFile::from_memory(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  return Tokenizer::from_gguf(*file);
}

TEST(SftData, DeterministicPerSeedAndIndex) {
  const SftMix mix;
  std::set<std::string> seen;
  for (uint64_t i = 0; i < 80; ++i) {
    const std::string a = joined_text(sft_example(mix, 7, i));
    EXPECT_EQ(a, joined_text(sft_example(mix, 7, i)));
    EXPECT_NE(a, joined_text(sft_example(mix, 8, i)));
    seen.insert(a);
  }
  EXPECT_GE(seen.size(), 78u);
  // Out of order gives the same texts: an index does not depend on the others.
  EXPECT_EQ(joined_text(sft_example(mix, 7, 1000)), joined_text(sft_example(mix, 7, 1000)));
  const std::vector<TrainingText> s = sft_spawn_example(3, 4);
  const std::vector<TrainingText> again = sft_spawn_example(3, 4);
  ASSERT_EQ(s.size(), again.size());
  for (size_t i = 0; i < s.size(); ++i) EXPECT_EQ(joined_text(s[i]), joined_text(again[i]));
}

TEST(SftData, AnswersAreRightAndTextsAreWellFormed) {
  const SftMix mix;
  int think = 0, no_think = 0, parents = 0, children = 0, arithmetic = 0, countdown = 0;
  for (uint64_t i = 0; i < 400; ++i) {
    const TrainingText t = sft_example(mix, 11, i);
    SCOPED_TRACE(joined_text(t));
    expect_clean(t);
    const EvalItem item = item_from_prompt(t[0].text);
    (item.check == CheckKind::kNumeric ? arithmetic : countdown)++;
    const std::string& last = t.back().text;
    if (t.size() == 2 && t[0].text == chat_prompt_text(item.question)) {  // think
      ++think;
      EXPECT_EQ(last.rfind("<think>\n", 0), 0u);
      EXPECT_NE(last.find("\n</think>\n\nAnswer: "), std::string::npos);
      EXPECT_EQ(last.find("\n\n</think>"), std::string::npos);  // no blank line before the end
      EXPECT_EQ(last.find("Answer:"), last.rfind("Answer:"));   // once, after thinking
      EXPECT_TRUE(check_answer(item, answer_of(last))) << answer_of(last);
    } else if (t.size() == 2) {  // no think
      ++no_think;
      EXPECT_EQ(t[0].text, chat_prompt_text(item.question) + "<think>\n\n</think>\n\n");
      EXPECT_EQ(last.rfind("Answer: ", 0), 0u);
      EXPECT_TRUE(check_answer(item, answer_of(last))) << answer_of(last);
    } else if (t[1].text.rfind("<task>", 0) == 0) {  // a sub-agent
      ++children;
      const std::string answer = answer_after_thinking(last.substr(0, last.size() - kEnd.size()));
      EXPECT_TRUE(answer == "none" || check_answer(item, answer)) << answer;
    } else {  // a parent
      ++parents;
      EXPECT_TRUE(check_answer(item, answer_of(last))) << answer_of(last);
    }
  }
  // The mix's fractions, roughly (0.25, 0.5, 0.2 and 0.05 of 400).
  EXPECT_GT(think, 260);
  EXPECT_GT(no_think, 5);
  EXPECT_GT(parents, 15);
  EXPECT_GT(children, 15);
  EXPECT_GT(arithmetic, 60);
  EXPECT_GT(countdown, 200);
}

TEST(SftData, MixSelectsKindsAndValidates) {
  SftMix only_arithmetic;
  only_arithmetic.countdown3 = only_arithmetic.countdown4 = only_arithmetic.countdown4_spawn =
      only_arithmetic.no_think = 0;
  only_arithmetic.arithmetic_min_steps = only_arithmetic.arithmetic_max_steps = 4;
  for (uint64_t i = 0; i < 20; ++i) {
    const std::string target = sft_example(only_arithmetic, 1, i).back().text;
    EXPECT_NE(target.find("Step 4: "), std::string::npos) << target;
    EXPECT_EQ(target.find("Step 5: "), std::string::npos) << target;
  }
  SftMix bad;
  bad.no_think = -1;
  EXPECT_THROW(sft_example(bad, 1, 0), Error);
  bad = SftMix();
  bad.arithmetic = bad.countdown3 = bad.countdown4_spawn = bad.no_think = 0;
  EXPECT_THROW(sft_example(bad, 1, 0), Error);
  bad = SftMix();
  bad.arithmetic_max_steps = 1;
  EXPECT_THROW(sft_example(bad, 1, 0), Error);
  EXPECT_THROW(sft_spawn_example(1, 0, -1), Error);
  // Countdown-4 by a single agent: four numbers, a right answer, the trace within its limit.
  SftMix only_countdown4;
  only_countdown4.arithmetic = only_countdown4.countdown3 = only_countdown4.countdown4_spawn =
      only_countdown4.no_think = 0;
  only_countdown4.countdown4 = 1;
  only_countdown4.max_trace_lines_4 = 40;
  for (uint64_t i = 0; i < 20; ++i) {
    const TrainingText t = sft_example(only_countdown4, 3, i);
    const EvalItem item = item_from_prompt(t[0].text);
    EXPECT_EQ(item.numbers.size(), 4u);
    const std::string& target = t.back().text;
    EXPECT_TRUE(check_answer(item, answer_of(target))) << target;
    EXPECT_LE(std::count(target.begin(), target.end(), '\n'), 40 + 3) << target;
  }
  // Countdown-3 traces stay within max_trace_lines.
  SftMix short_traces;
  short_traces.arithmetic = short_traces.countdown4 = short_traces.countdown4_spawn =
      short_traces.no_think = 0;
  short_traces.max_trace_lines = 20;
  for (uint64_t i = 0; i < 40; ++i) {
    const std::string target = sft_example(short_traces, 2, i).back().text;
    EXPECT_LE(std::count(target.begin(), target.end(), '\n'), 20 + 3) << target;
  }
}

TEST(SftData, TraceVerbosityVariesWithinTheMix) {
  SftMix countdown_only;
  countdown_only.arithmetic = countdown_only.countdown4 = countdown_only.countdown4_spawn =
      countdown_only.no_think = 0;
  const int n = 300;
  auto with_preamble = [&] {
    int count = 0;
    for (uint64_t i = 0; i < n; ++i)
      count += sft_example(countdown_only, 5, i).back().text.find("Combine two numbers") !=
               std::string::npos;
    return count;
  };
  // 0.75 fully verbose, and on average half of the others: 0.875.
  const int at_three_quarters = with_preamble();
  EXPECT_GT(at_three_quarters, n * 0.75);
  EXPECT_LT(at_three_quarters, n * 0.97);
  countdown_only.verbose_share = 0.5;  // then 0.75
  const int at_half = with_preamble();
  EXPECT_GT(at_half, n * 0.65);
  EXPECT_LT(at_half, n * 0.85);
}

// With recheck_results, a fully verbose single-agent trace re-checks every Countdown try and
// arithmetic step; sub-agents' traces never do.
TEST(SftData, FullyVerboseTracesRecheckEveryStepWhenTheMixSaysSo) {
  SftMix mix;
  mix.countdown4 = 0.1;
  mix.no_think = 0;
  mix.verbose_share = 1;
  mix.recheck_results = true;
  struct Counts {
    bool spawn = false;
    size_t tries = 0, steps = 0, checks = 0;
  };
  auto counts = [&](uint64_t i) {
    const std::string text = joined_text(sft_example(mix, 9, i));
    Counts c;
    c.spawn = text.find("<spawn>") != std::string::npos || text.find("<task>") != std::string::npos;
    for (const std::string& line : lines_of(text)) {
      c.tries += line.find("Try ") != std::string::npos;
      c.steps += line.rfind("Step ", 0) == 0;
      c.checks += line.find("Check: ") != std::string::npos;
    }
    return c;
  };
  int single = 0, spawned = 0;
  for (uint64_t i = 0; i < 60; ++i) {
    const Counts c = counts(i);
    if (c.spawn) {
      EXPECT_EQ(c.checks, 0u) << i;
      ++spawned;
    } else {
      EXPECT_EQ(c.checks, c.tries + c.steps) << i;
      single += c.tries + c.steps > 0;
    }
  }
  EXPECT_GT(single, 30);
  EXPECT_GT(spawned, 5);
  // Without them in the fully verbose Countdown searches: arithmetic still re-checks every step.
  mix.recheck_verbose_countdown = false;
  int countdown = 0, arithmetic = 0;
  for (uint64_t i = 0; i < 60; ++i) {
    const Counts c = counts(i);
    if (c.spawn) continue;
    if (c.tries > 0) {
      EXPECT_EQ(c.checks, 0u) << i;
      ++countdown;
    } else if (c.steps > 0) {
      EXPECT_EQ(c.checks, c.steps) << i;
      ++arithmetic;
    }
  }
  EXPECT_GT(countdown, 20);
  EXPECT_GT(arithmetic, 5);
  mix.recheck_results = false;
  for (uint64_t i = 0; i < 20; ++i)
    EXPECT_EQ(joined_text(sft_example(mix, 9, i)).find("Check: "), std::string::npos);
}

// With shuffle_countdown off, every Countdown-3 search tries its first moves in the solver's
// fixed order (terse traces leave some out); with it on, most searches of two or more first
// moves do not.
TEST(SftData, CountdownSearchOrderFollowsTheMix) {
  SftMix countdown_only;
  countdown_only.arithmetic = countdown_only.countdown4 = countdown_only.countdown4_spawn =
      countdown_only.no_think = 0;
  auto first_moves = [](const std::string& trace) {  // "Try a op b = c" at depth 0, in order
    std::vector<std::string> out;
    for (const std::string& line : lines_of(trace))
      if (line.rfind("Try ", 0) == 0) out.push_back(line.substr(0, line.find_first_of(",:")));
    return out;
  };
  // 1: in the fixed order, 0: not, -1: fewer than two first moves to tell by.
  auto in_fixed_order = [&](const std::string& text) {
    const std::vector<int> numbers = parse_numbers(between(text, "Numbers: ", ". Target:"));
    const int target = std::stoi(between(text, "Target: ", ".\n"));
    TraceStyle all;
    all.max_shown_lines = 0;
    std::string verbose;
    solve_countdown(numbers, target, &verbose, all);
    const std::vector<std::string> order = first_moves(verbose), tried = first_moves(text);
    if (tried.size() < 2) return -1;
    auto at = order.begin();
    for (const std::string& t : tried) {
      at = std::find(at, order.end(), t);
      if (at == order.end()) return 0;
      ++at;
    }
    return 1;
  };
  int shuffled = 0, shuffled_in_order = 0;
  for (uint64_t i = 0; i < 60; ++i) {
    const int s = in_fixed_order(joined_text(sft_example(countdown_only, 6, i)));
    shuffled += s >= 0;
    shuffled_in_order += s == 1;
    SftMix fixed = countdown_only;
    fixed.shuffle_countdown = false;
    EXPECT_NE(in_fixed_order(joined_text(sft_example(fixed, 6, i))), 0) << i;
  }
  EXPECT_GT(shuffled, 30);
  EXPECT_LT(shuffled_in_order, shuffled / 2);
}

TEST(SftTraceStyle, DefaultsKeepTheEvalTraces) {
  // Hashes and the trace of the generators before TraceStyle existed.
  std::string a, c;
  for (const EvalItem& it : generate_arithmetic(20, 3, 3))
    a += it.question + "\n" + it.answer + "\n" + it.solution + "\n";
  for (const EvalItem& it : generate_countdown(20, 5, 4))
    c += it.question + "\n" + it.answer + "\n" + it.solution + "\n";
  for (const EvalItem& it : generate_countdown(5, 9, 6))
    c += it.question + "\n" + it.answer + "\n" + it.solution + "\n";
  EXPECT_EQ(fnv1a(a), 0x2504af2129892e1bull);
  EXPECT_EQ(fnv1a(c), 0xdcfaa9922ca38467ull);
  EXPECT_NE(c.find("more tries not shown.)"), std::string::npos);
  EXPECT_EQ(generate_arithmetic(1, 3, 3, TraceStyle())[0].solution,
            "We work out the innermost operation first, one at a time.\n"
            "The expression is 12 * ((78 - 18) + 24).\n"
            "Step 1: 78 - 18 = 60.\n"
            "The expression is now 12 * (60 + 24).\n"
            "Step 2: 60 + 24 = 84.\n"
            "The expression is now 12 * 84.\n"
            "Step 3: 12 * 84 = 1008.\n"
            "Answer: 1008");
  std::string old_style, default_style;
  EXPECT_EQ(solve_countdown({3, 7, 25, 50}, 96, &old_style),
            solve_countdown({3, 7, 25, 50}, 96, &default_style, TraceStyle()));
  EXPECT_EQ(old_style, default_style);
}

TEST(SftTraceStyle, TerseTracesAreVerboseOnesWithLinesLeftOut) {
  TraceStyle verbose;
  verbose.max_shown_lines = 0;
  verbose.shuffle_moves = true;
  for (uint64_t seed = 1; seed <= 30; ++seed) {
    verbose.seed = seed;
    TraceStyle terse = verbose, half = verbose;
    terse.verbosity = 0;
    half.verbosity = 0.5;
    const EvalItem a1 = generate_arithmetic(1, seed, 3, verbose)[0];
    const EvalItem a0 = generate_arithmetic(1, seed, 3, terse)[0];
    const EvalItem ah = generate_arithmetic(1, seed, 3, half)[0];
    EXPECT_EQ(a0.question, a1.question);
    EXPECT_EQ(a0.answer, a1.answer);
    EXPECT_LT(a0.solution.size(), a1.solution.size());
    EXPECT_TRUE(lines_subsequence(a0.solution, ah.solution)) << a0.solution << "\n" << ah.solution;
    EXPECT_TRUE(lines_subsequence(ah.solution, a1.solution)) << ah.solution << "\n" << a1.solution;
    EXPECT_NE(a1.solution.find("The expression is now"), std::string::npos);
    EXPECT_EQ(a0.solution.find("The expression is now"), std::string::npos);
    EXPECT_NE(a0.solution.find("Step 3: "), std::string::npos);

    const EvalItem item = generate_countdown(1, seed, 4)[0];
    std::string t1, t0, th;
    const std::string e1 = solve_countdown(item.numbers, item.target, &t1, verbose);
    const std::string e0 = solve_countdown(item.numbers, item.target, &t0, terse);
    const std::string eh = solve_countdown(item.numbers, item.target, &th, half);
    EXPECT_EQ(e0, e1);  // the same search
    EXPECT_EQ(eh, e1);
    EXPECT_TRUE(check_answer(item, e1)) << e1;
    EXPECT_LT(t0.size(), t1.size());
    EXPECT_TRUE(lines_subsequence(t0, th));
    EXPECT_TRUE(lines_subsequence(th, t1));
    EXPECT_EQ(t0.find("Combine two"), std::string::npos);
    EXPECT_EQ(t0.find("Found it."), std::string::npos);
    EXPECT_EQ(t0.find("Dead end:"), std::string::npos);
    EXPECT_NE(t0.find("As one expression: " + e0 + " = "), std::string::npos);
    EXPECT_TRUE(ends_with(t0, "\nAnswer: " + e0));
    EXPECT_EQ(t1.find("not shown"), std::string::npos);
  }
}

// With optional_dead_ends, a fully verbose trace is unchanged, a terse one shows only moves from
// which the target can be reached, and any one shows only moves the verbose search tries.
TEST(SftTraceStyle, OptionalDeadEndsLeaveOutMovesThatLeadNowhere) {
  auto tries = [](const std::string& trace) {
    std::vector<std::string> out;
    for (const std::string& line : lines_of(trace)) {
      const size_t at = line.find("Try ");
      if (at != std::string::npos) out.push_back(line.substr(at));
    }
    return out;
  };
  int shorter = 0;
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    const EvalItem item = generate_countdown(1, seed, seed % 2 ? 3 : 4)[0];
    SCOPED_TRACE(item.question);
    TraceStyle plain;
    plain.max_shown_lines = 0;
    plain.seed = seed;
    TraceStyle verbose = plain;
    verbose.optional_dead_ends = true;
    TraceStyle terse = verbose, half = verbose;
    terse.verbosity = 0;
    half.verbosity = 0.5;
    std::string tp, t1, t0, th;
    const std::string ep = solve_countdown(item.numbers, item.target, &tp, plain);
    EXPECT_EQ(solve_countdown(item.numbers, item.target, &t1, verbose), ep);
    EXPECT_EQ(t1, tp);
    EXPECT_EQ(solve_countdown(item.numbers, item.target, &t0, terse), ep);
    EXPECT_EQ(solve_countdown(item.numbers, item.target, &th, half), ep);
    // The terse trace: with three numbers, one try per operation of the answer (with four, a
    // move whose result the answer leaves unused may lead to it too), the last one a hit.
    const std::vector<std::string> path = tries(t0);
    const size_t operations = size_t(std::count_if(
        ep.begin(), ep.end(), [](char c) { return c == '+' || c == '-' || c == '*' || c == '/'; }));
    if (item.numbers.size() == 3) {
      EXPECT_EQ(path.size(), operations) << t0;
    }
    EXPECT_LE(path.size(), item.numbers.size() - 1) << t0;
    ASSERT_FALSE(path.empty());
    EXPECT_TRUE(ends_with(path.back(), ": that is the target.")) << t0;
    const std::vector<std::string> all = tries(t1);
    for (const std::string& t : tries(th))
      EXPECT_NE(std::find(all.begin(), all.end(), t), all.end()) << t;
    shorter += th.size() < t1.size();
  }
  EXPECT_GT(shorter, 20);
  // Where nothing reaches the target, every try is still shown.
  TraceStyle terse;
  terse.max_shown_lines = 0;
  terse.verbosity = 0;
  std::string without, with;
  EXPECT_EQ(solve_countdown({1, 2, 3}, 97, &without, terse), "");
  terse.optional_dead_ends = true;
  EXPECT_EQ(solve_countdown({1, 2, 3}, 97, &with, terse), "");
  EXPECT_EQ(with, without);
  EXPECT_NE(with.find("Try 3 * 2 = 6"), std::string::npos) << with;
}

// compare_to_target: every try says "target T: yes." exactly when its result is T, else "no";
// the search and the answer are the plain trace's.
TEST(SftTraceStyle, EveryTryComparesItsResultWithTheTarget) {
  int hits = 0, misses = 0;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    const EvalItem item = generate_countdown(1, seed, seed % 2 ? 3 : 4, TaskNumbers::small())[0];
    TraceStyle plain;
    plain.max_shown_lines = 0;
    TraceStyle compared = plain;
    compared.compare_to_target = true;
    std::string tp, tc;
    EXPECT_EQ(solve_countdown(item.numbers, item.target, &tc, compared),
              solve_countdown(item.numbers, item.target, &tp, plain));
    const std::vector<std::string> lines = lines_of(tc);
    EXPECT_EQ(lines.size(), lines_of(tp).size()) << tc;
    const std::string target = std::to_string(item.target);
    for (const std::string& line : lines) {
      const size_t at = line.find("Try ");
      if (at == std::string::npos) continue;
      const std::string result = between(line, " = ", ", target ");
      const bool hit = result == target;
      EXPECT_NE(line.find(", target " + target + (hit ? ": yes." : ": no")), std::string::npos)
          << line;
      hits += hit;
      misses += !hit;
    }
  }
  EXPECT_GE(hits, 20);
  EXPECT_GT(misses, 100);
}

// recheck_results: each Countdown try and arithmetic step is followed by a "Check:" line that
// repeats it (a try's with the same decision); without those lines the trace is exactly the one
// written without re-checks, so a model can leave them out and search the same way. Terse traces
// have none.
TEST(SftTraceStyle, RechecksCanBeLeftOutWithoutChangingTheRest) {
  auto without_checks = [](const std::string& trace) {
    std::string out;
    for (const std::string& line : lines_of(trace))
      if (line.find("Check: ") == std::string::npos) out += line + "\n";
    return out;
  };
  int checks = 0;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    const EvalItem item = generate_countdown(1, seed, seed % 2 ? 3 : 4, TaskNumbers::small())[0];
    TraceStyle plain;
    plain.max_shown_lines = 0;
    plain.compare_to_target = true;
    TraceStyle rechecked = plain, terse = plain;
    rechecked.recheck_results = true;
    terse.recheck_results = true;
    terse.verbosity = 0;
    std::string tp, tr, tt;
    const std::string answer = solve_countdown(item.numbers, item.target, &tp, plain);
    EXPECT_EQ(solve_countdown(item.numbers, item.target, &tr, rechecked), answer);
    EXPECT_EQ(without_checks(tr), without_checks(tp));
    solve_countdown(item.numbers, item.target, &tt, terse);
    EXPECT_EQ(tt.find("Check: "), std::string::npos) << tt;
    const std::vector<std::string> lines = lines_of(tr);
    const std::string target = std::to_string(item.target);
    for (size_t i = 0; i < lines.size(); ++i) {
      const size_t at = lines[i].find("Try ");
      if (at == std::string::npos) continue;
      ASSERT_LT(i + 1, lines.size());
      const std::string step = between(lines[i], "Try ", ", target ");
      const std::string result = step.substr(step.rfind(' ') + 1);
      EXPECT_EQ(lines[i + 1],
                std::string(at, ' ') + "Check: " + step + ", and " + result +
                    (result == target ? " is the target." : " is not " + target + "."));
      ++checks;
    }
  }
  EXPECT_GT(checks, 100);
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    TraceStyle plain;
    plain.place_value_steps = true;
    TraceStyle rechecked = plain;
    rechecked.recheck_results = true;
    const EvalItem a = generate_arithmetic(1, seed, 3, plain, TaskNumbers::small())[0];
    const EvalItem b = generate_arithmetic(1, seed, 3, rechecked, TaskNumbers::small())[0];
    EXPECT_EQ(b.answer, a.answer);
    EXPECT_EQ(without_checks(b.solution), without_checks(a.solution));
    const std::vector<std::string> lines = lines_of(b.solution);
    for (size_t i = 0; i + 1 < lines.size(); ++i) {
      if (lines[i].rfind("Step ", 0) != 0) continue;
      // "Step k: 14 + 97 = 14 + 90 + 7 = 104 + 7 = 111." is checked as "Check: 14 + 97 = 111."
      const std::string step = between(lines[i], ": ", ".");
      const std::string first = step.substr(0, step.find(" = "));
      EXPECT_EQ(lines[i + 1], "Check: " + first + " = " + step.substr(step.rfind(' ') + 1) + ".");
    }
  }
}

// weigh_decisions splits out exactly the words after "target T:" in target pieces, weighted; the
// sequence and everything else stay as they were.
TEST(SftData, DecisionWeightsCoverExactlyTheDecisionWords) {
  SftMix mix;
  mix.numbers = TaskNumbers::small();
  SftMix weighted = mix;
  weighted.decision_weight = 5;
  int decisions = 0, yes = 0;
  for (uint64_t i = 0; i < 60; ++i) {
    const TrainingText plain = sft_example(mix, 3, i);
    const TrainingText text = sft_example(weighted, 3, i);
    ASSERT_EQ(joined_text(text), joined_text(plain));
    std::string before;  // the sequence up to the piece
    for (const TextPiece& p : text) {
      if (p.weight != 1) {
        EXPECT_TRUE(p.target);
        EXPECT_EQ(p.weight, 5.f);
        EXPECT_TRUE(p.text == " yes" || p.text == " no") << p.text;
        const size_t at = before.rfind(", target ");
        ASSERT_NE(at, std::string::npos);
        const std::string number = before.substr(at + 9, before.size() - at - 10);
        EXPECT_TRUE(!number.empty() && std::all_of(number.begin(), number.end(), ::isdigit) &&
                    ends_with(before, ":"))
            << before.substr(at);
        ++decisions;
        yes += p.text == " yes";
      }
      before += p.text;
    }
    // Every decision of the targets is weighted; prompts never are.
    int expected = 0;
    for (const TextPiece& p : plain)
      for (size_t at = p.text.find(", target "); p.target && at != std::string::npos;
           at = p.text.find(", target ", at + 1))
        ++expected;
    int got = 0;
    for (const TextPiece& p : text) got += p.weight != 1;
    EXPECT_EQ(got, expected) << joined_text(plain);
  }
  EXPECT_GT(decisions, 300);
  EXPECT_GT(yes, 10);
  weighted.decision_weight = 0;
  EXPECT_THROW(sft_example(weighted, 3, 0), Error);
  // Only whole decision words after "target <digits>:" in target pieces.
  const TrainingText hand = weigh_decisions(
      {{"Try 1 + 2 = 3, target 3: yes.", false},
       {"Try 3 * 4 = 12, target 3: no; x, target 3: none. y, target z: no. 5, target 7: no", true}},
      2);
  std::vector<std::pair<std::string, float>> pieces;
  for (const TextPiece& p : hand) pieces.push_back({p.text, p.weight});
  EXPECT_EQ(pieces, (std::vector<std::pair<std::string, float>>{
                        {"Try 1 + 2 = 3, target 3: yes.", 1.f},
                        {"Try 3 * 4 = 12, target 3:", 1.f},
                        {" no", 2.f},
                        {"; x, target 3: none. y, target z: no. 5, target 7:", 1.f},
                        {" no", 2.f}}));
}

TEST(SftTraceStyle, ShuffledSearchFindsAnAnswerExactlyWhenThePlainOneDoes) {
  std::mt19937 rng(1234);
  auto draw = [&](int lo, int hi) { return lo + int(rng() % unsigned(hi - lo + 1)); };
  int solvable = 0;
  std::set<std::string> first_tries;
  for (int k = 0; k < 200; ++k) {
    EvalItem item;
    item.check = CheckKind::kCountdown;
    const int n = draw(2, 5);
    for (int i = 0; i < n; ++i)
      item.numbers.push_back(draw(0, 4) == 0 ? 25 * draw(1, 4) : draw(1, 10));
    item.target = draw(1, 300);
    TraceStyle shuffled;
    shuffled.shuffle_moves = true;
    shuffled.max_shown_lines = 0;
    shuffled.seed = uint64_t(k);
    std::string trace;
    const std::string plain = solve_countdown(item.numbers, item.target);
    const std::string found = solve_countdown(item.numbers, item.target, &trace, shuffled);
    SCOPED_TRACE(trace);
    EXPECT_EQ(plain.empty(), found.empty());
    if (!found.empty()) {
      EXPECT_TRUE(check_answer(item, found)) << found;
    }
    solvable += !found.empty();
    // The root's tries come in countdown_first_moves' order (a repeated move tried again).
    const std::vector<CountdownMove> moves = countdown_first_moves(item.numbers, shuffled);
    std::vector<std::string> expected, tried;
    for (const CountdownMove& m : moves)
      expected.push_back("Try " + std::to_string(m.a) + " " + m.op + " " + std::to_string(m.b) +
                         " = " + std::to_string(m.result));
    for (const std::string& line : lines_of(trace)) {
      if (line.rfind("Try ", 0) != 0) continue;
      const std::string head = line.substr(0, line.find_first_of(",:"));
      if (std::find(tried.begin(), tried.end(), head) == tried.end()) tried.push_back(head);
    }
    ASSERT_LE(tried.size(), expected.size());
    EXPECT_TRUE(std::equal(tried.begin(), tried.end(), expected.begin()));
    for (const CountdownMove& m : moves) EXPECT_GE(m.a, m.b);
    if (!expected.empty()) first_tries.insert(expected[0]);
  }
  EXPECT_GT(solvable, 40);
  EXPECT_LT(solvable, 190);
  EXPECT_GT(first_tries.size(), 50u);  // the order does change
}

// In the solver's fixed order, a parent spawns the first moves as countdown_first_moves lists
// them; shuffled, the order changes between problems.
TEST(SftData, SpawnOrderFollowsTheMix) {
  SftMix fixed;
  fixed.shuffle_countdown = false;
  int shuffled_in_order = 0;
  const int n = 20;
  for (uint64_t index = 0; index < n; ++index) {
    for (const bool shuffle : {false, true}) {
      const std::string parent =
          joined_text(sft_spawn_example(9, index, 0, shuffle ? SftMix() : fixed)[0]);
      const std::vector<int> numbers = parse_numbers(between(parent, "<think>\nNumbers: ", "."));
      const std::vector<CountdownMove> moves = countdown_first_moves(numbers, TraceStyle());
      std::vector<std::string> spawned, expected;
      for (size_t at = parent.find(" = ", parent.find("Use ")); at != std::string::npos;
           at = parent.find("Use ", at)) {
        at = parent.find(" = ", at) + 3;
        spawned.push_back(parent.substr(at, parent.find(".</spawn>", at) - at));
      }
      for (size_t k = 0; k < spawned.size() && k < moves.size(); ++k)
        expected.push_back(std::to_string(moves[k].a) + " " + moves[k].op + " " +
                           std::to_string(moves[k].b));
      if (shuffle)
        shuffled_in_order += spawned == expected;
      else
        EXPECT_EQ(spawned, expected) << parent;
    }
  }
  EXPECT_LT(shuffled_in_order, n / 2);
}

TEST(SftData, SpawnExamplesFollowTheMarkupProtocol) {
  const std::unique_ptr<Tokenizer> tokenizer = byte_tokenizer();
  MarkupProtocol protocol(*tokenizer);
  int multi_round = 0;
  for (uint64_t index = 0; index < 40; ++index) {
    const std::vector<TrainingText> all = sft_spawn_example(9, index, 1000);
    ASSERT_GE(all.size(), 2u);
    const TrainingText& parent = all[0];
    SCOPED_TRACE(joined_text(parent));
    expect_clean(parent);
    const EvalItem item = item_from_prompt(parent[0].text);
    ASSERT_EQ(item.numbers.size(), 4u);

    // The parent's segments, as MarkupProtocol reads them, give the children's tasks in order;
    // the results it is given are the children's answers.
    std::vector<std::string> tasks, results;
    std::vector<std::string> prefixes;  // the parent's sequence at each join
    std::string sequence;
    for (const TextPiece& p : parent) {
      sequence += p.text;
      if (p.target && ends_with(p.text, "<join>")) {
        AgentView agent;
        const std::optional<std::vector<std::string>> asked =
            protocol.spawn_request(agent, p.text, false);
        ASSERT_TRUE(asked.has_value());
        ASSERT_GE(asked->size(), 1u);
        ASSERT_LE(asked->size(), 4u);
        for (const std::string& t : *asked) tasks.push_back(t), prefixes.push_back(sequence);
      } else if (!p.target && p.text.rfind("<result>", 0) == 0) {
        for (size_t at = 0; (at = p.text.find("<result>", at)) != std::string::npos;) {
          const size_t end = p.text.find("</result>", at);
          results.push_back(p.text.substr(at + 8, end - at - 8));
          at = end;
        }
      }
    }
    multi_round += prefixes.front() != prefixes.back();
    ASSERT_EQ(tasks.size(), all.size() - 1);
    ASSERT_EQ(results.size(), tasks.size());
    for (size_t c = 1; c < all.size(); ++c) {
      const TrainingText& child = all[c];
      expect_clean(child);
      ASSERT_EQ(child.size(), 3u);
      EXPECT_EQ(child[0].text, prefixes[c - 1]);
      EXPECT_EQ(child[1].text, "<task>" + tasks[c - 1] + "</task>");
      const std::string& body = child[2].text;
      const std::string answer = answer_after_thinking(body.substr(0, body.size() - kEnd.size()));
      EXPECT_EQ(answer, results[c - 1]);
      // "Numbers: A, B and C. Target: T. Use A = x op y.": the answer is "none" exactly when
      // the three values cannot make the target, else an answer to the original problem.
      const std::string& task = tasks[c - 1];
      const std::vector<int> values = parse_numbers(between(task, "Numbers: ", ". Target"));
      ASSERT_EQ(values.size(), 3u) << task;
      EXPECT_EQ(std::stoi(between(task, "Target: ", ".")), item.target);
      const std::string use = between(task, "Use ", ".");
      EXPECT_EQ(evaluate_expression(use.substr(use.find(" = ") + 3)),
                std::optional<int64_t>(values[0]));
      const bool can = !solve_countdown(values, item.target).empty();
      EXPECT_EQ(answer != "none", can) << task;
      if (answer != "none") {
        EXPECT_TRUE(check_answer(item, answer)) << answer;
        // The thinking ends by putting the first move back in: "With 14 = 9 + 5: ... = T."
        EXPECT_TRUE(ends_with(body, "\nWith " + use + ": " + answer + " = " +
                                        std::to_string(item.target) + ".\n</think>\n\n" + answer +
                                        kEnd))
            << body;
      }
    }
    // The parent takes the first answer, in its last round.
    const auto first = std::find_if(results.begin(), results.end(),
                                    [](const std::string& r) { return r != "none"; });
    ASSERT_NE(first, results.end());
    const std::string final_text = joined_text(parent);
    EXPECT_TRUE(
        ends_with(final_text, "\nFound: " + *first + "\n</think>\n\nAnswer: " + *first + kEnd));
    EXPECT_LE(std::set<std::string>(prefixes.begin(), prefixes.end()).size(), 4u);  // rounds
    AgentView root;
    root.text = final_text.substr(0, final_text.size() - kEnd.size());
    EXPECT_EQ(extract_final_answer(protocol.answer(root)), *first);

    // The default selection: the parent and two children, one of them the solving one.
    const std::vector<TrainingText> picked = sft_spawn_example(9, index);
    ASSERT_LE(picked.size(), 3u);
    ASSERT_GE(picked.size(), 2u);
    EXPECT_EQ(joined_text(picked[0]), final_text);
    bool solving = false;
    for (size_t c = 1; c < picked.size(); ++c)
      solving |= ends_with(picked[c].back().text, "\n\n" + *first + kEnd);
    EXPECT_TRUE(solving);
  }
  EXPECT_GT(multi_round, 5);
}

}  // namespace
}  // namespace muse
