// Eval question sets: the generators' items are right by their own checkers and by independent
// re-solving, wrong answers are rejected, and sets survive a JSONL round trip.
#include "evals/tasks.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "util/error.h"

namespace muse {
namespace {

std::string dump_all(const std::vector<EvalItem>& items) {
  std::string out;
  for (const EvalItem& item : items) out += eval_item_to_json(item).dump() + "\n";
  return out;
}

EvalItem make_item(const std::string& answer, CheckKind check, const std::string& id = "x",
                   const std::string& question = "q") {
  EvalItem item;
  item.id = id;
  item.question = question;
  item.answer = answer;
  item.check = check;
  return item;
}

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "muse_eval_tasks_test_" + std::to_string(getpid()) + "_" + name;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

// The message of the muse::Error that reading `text` as a JSONL file throws.
std::string read_error(const std::string& text) {
  const std::string path = temp_path("bad.jsonl");
  write_text(path, text);
  std::string message = "no error";
  try {
    read_eval_items(path);
  } catch (const Error& e) {
    message = e.what();
  }
  std::remove(path.c_str());
  return message;
}

TEST(EvalTasksGenerate, DeterministicPerSeedAndDifferentAcrossSeeds) {
  for (const char* task : {"arithmetic", "countdown", "logic"}) {
    SCOPED_TRACE(task);
    const std::vector<EvalItem> a = generate_task(task, 12, 7);
    ASSERT_EQ(a.size(), 12u);
    EXPECT_EQ(dump_all(a), dump_all(generate_task(task, 12, 7)));
    EXPECT_NE(dump_all(a), dump_all(generate_task(task, 12, 8)));
    std::vector<std::string> questions;
    for (const EvalItem& item : a) {
      questions.push_back(item.question);
      EXPECT_NE(item.question.find("Give the final answer on the last line as \"Answer: <"),
                std::string::npos);
    }
    std::sort(questions.begin(), questions.end());
    EXPECT_GE(std::unique(questions.begin(), questions.end()) - questions.begin(), 8);
  }
  EXPECT_EQ(generate_arithmetic(3, 1)[2].id, "arith-0002");
  EXPECT_EQ(generate_task("logic", 0, 1).size(), 0u);
}

TEST(EvalTasksGenerate, UnknownTaskNamesTheValidOnes) {
  try {
    generate_task("poetry", 3, 1);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("\"poetry\" (arithmetic, countdown, logic)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(generate_arithmetic(-1, 1), Error);
  EXPECT_THROW(generate_countdown(1, 1, 9), Error);
}

TEST(EvalTasksGenerate, ArithmeticIsRightByReferenceAndByReSolving) {
  for (int steps = 1; steps <= 5; ++steps) {
    for (const EvalItem& item : generate_arithmetic(40, 100 + steps, steps)) {
      SCOPED_TRACE(item.question);
      EXPECT_EQ(item.check, CheckKind::kNumeric);
      EXPECT_TRUE(check_answer(item, item.answer));
      // The solver's trace ends with its answer.
      EXPECT_EQ(extract_final_answer(item.solution), item.answer);
      // Re-evaluate the expression in the question independently.
      const size_t from = std::string("Compute ").size();
      const size_t to = item.question.find(". Give");
      ASSERT_EQ(item.question.rfind("Compute ", 0), 0u);
      ASSERT_NE(to, std::string::npos);
      std::vector<int64_t> literals;
      const std::optional<int64_t> v =
          evaluate_expression(item.question.substr(from, to - from), &literals);
      ASSERT_TRUE(v.has_value());
      EXPECT_EQ(std::to_string(*v), item.answer);
      EXPECT_EQ(literals.size(), size_t(steps + 1));
      EXPECT_GT(*v, 0);
      EXPECT_LT(*v, 10000);
      EXPECT_FALSE(check_answer(item, std::to_string(*v + 1)));
      EXPECT_FALSE(check_answer(item, std::to_string(*v - 1)));
    }
  }
}

TEST(EvalTasksGenerate, CountdownIsSolvableWithTheGivenNumbers) {
  std::vector<EvalItem> items = generate_countdown(40, 5);
  for (const EvalItem& item : generate_countdown(8, 6, 3)) items.push_back(item);
  for (const EvalItem& item : generate_countdown(8, 7, 5)) items.push_back(item);
  for (const EvalItem& item : items) {
    SCOPED_TRACE(item.question + " / " + item.answer);
    EXPECT_EQ(item.check, CheckKind::kCountdown);
    EXPECT_TRUE(check_answer(item, item.answer));
    EXPECT_EQ(extract_final_answer(item.solution), item.answer);
    EXPECT_TRUE(check_answer(item, extract_final_answer(item.solution)));
    EXPECT_TRUE(check_answer(item, item.answer + " = " + std::to_string(item.target)));
    EXPECT_FALSE(check_answer(item, item.answer + " = " + std::to_string(item.target + 1)));
    // The reference uses only the given numbers, each at most once.
    std::vector<int64_t> literals;
    ASSERT_EQ(evaluate_expression(item.answer, &literals), std::optional<int64_t>(item.target));
    std::vector<int64_t> pool(item.numbers.begin(), item.numbers.end());
    for (int64_t x : literals) {
      const auto it = std::find(pool.begin(), pool.end(), x);
      ASSERT_NE(it, pool.end()) << x;
      pool.erase(it);
    }
    // Solving again from the numbers alone finds a valid expression too.
    const std::string again = solve_countdown(item.numbers, item.target);
    EXPECT_TRUE(check_answer(item, again)) << again;
    EXPECT_FALSE(check_answer(item, std::to_string(item.target)));  // not a given number
  }
}

// Generates `count` 3-step problems in both number ranges with `style` and without; checks that
// the style changes only the solutions (same questions and answers, the answer last), and calls
// fn on every "Step ..." line of the styled traces.
template <typename Fn>
void for_each_step_line(const TraceStyle& style, int count, uint64_t seed, Fn&& fn) {
  for (const TaskNumbers& range : {TaskNumbers(), TaskNumbers::small()}) {
    const std::vector<EvalItem> plain = generate_arithmetic(count, seed, 3, TraceStyle(), range);
    const std::vector<EvalItem> items = generate_arithmetic(count, seed, 3, style, range);
    for (size_t i = 0; i < items.size(); ++i) {
      SCOPED_TRACE(items[i].solution);
      EXPECT_EQ(items[i].question, plain[i].question);
      EXPECT_EQ(items[i].answer, plain[i].answer);
      EXPECT_EQ(extract_final_answer(items[i].solution), items[i].answer);
      std::istringstream lines(items[i].solution);
      for (std::string line; std::getline(lines, line);)
        if (line.rfind("Step ", 0) == 0) fn(line);
    }
  }
}

// Place-value chains: every "=" in a step's line joins expressions of the same value, the line
// ends with the step's result, and the items and answers are those without chains.
TEST(EvalTasksGenerate, PlaceValueChainsAreRightAtEveryStep) {
  EXPECT_EQ(generate_arithmetic(1, 3, 3, TraceStyle())[0].question,
            "Compute 12 * ((78 - 18) + 24). Give the final answer on the last line as "
            "\"Answer: <number>\".");
  TraceStyle chains;
  chains.place_value_steps = true;
  EXPECT_NE(generate_arithmetic(1, 3, 3, chains)[0].solution.find(
                "Step 1: 78 - 18 = 78 - 10 - 8 = 68 - 8 = 60.\n"),
            std::string::npos);
  std::set<char> chained_ops;
  int chained_steps = 0, whole_steps = 0;
  for_each_step_line(chains, 60, 21, [&](const std::string& line) {
    const std::string body =
        line.substr(line.find(": ") + 2, line.size() - line.find(": ") - 3);
    std::vector<std::string> sides;
    for (size_t from = 0;;) {
      const size_t eq = body.find(" = ", from);
      sides.push_back(body.substr(from, eq == std::string::npos ? eq : eq - from));
      if (eq == std::string::npos) break;
      from = eq + 3;
    }
    ASSERT_GE(sides.size(), 2u) << line;
    const std::optional<int64_t> value = evaluate_expression(sides.back());
    ASSERT_TRUE(value.has_value()) << line;
    EXPECT_EQ(std::to_string(*value), sides.back()) << line;  // ends with a plain number
    for (const std::string& side : sides)
      EXPECT_EQ(evaluate_expression(side), value) << side << " in " << line;
    if (sides.size() > 2) {
      ++chained_steps;
      chained_ops.insert(sides[0][sides[0].find(' ') + 1]);
    } else {
      ++whole_steps;
    }
  });
  EXPECT_EQ(chained_ops, (std::set<char>{'+', '-', '*', '/'}));
  // Chains are optional lines' kin: a terse trace writes every step at once.
  TraceStyle terse, terse_chains;
  terse.verbosity = terse_chains.verbosity = 0;
  terse_chains.place_value_steps = true;
  EXPECT_EQ(generate_arithmetic(20, 4, 3, terse_chains)[7].solution,
            generate_arithmetic(20, 4, 3, terse)[7].solution);
  EXPECT_GT(chained_steps, 100);
  EXPECT_GT(whole_steps, 20);  // one nonzero place: written at once
}

// Column working: the examples as written, and over many generated steps every part's fact is
// true, each carry or borrow is the one the previous column leaves, and the items and answers
// are those without it.
TEST(EvalTasksGenerate, ColumnStepsAreRightAtEveryPart) {
  TraceStyle columns;
  columns.column_steps = true;
  auto step_line = [&](const std::string& expr) {
    std::string answer;
    const std::string trace = solve_arithmetic(expr, &answer, columns);
    const size_t at = trace.find("Step 1: ");
    return trace.substr(at + 8, trace.find('\n', at) - at - 8);
  };
  EXPECT_EQ(step_line("79 + 48"),
            "79 + 48: ones 9 + 8 = 17, carry 1; tens 7 + 4 + 1 = 12; so 79 + 48 = 127.");
  EXPECT_EQ(step_line("104 - 99"),
            "104 - 99: ones 4 - 9: borrow, 14 - 9 = 5; tens 0 - 1 - 9: borrow, 10 - 1 - 9 = 0; "
            "hundreds 1 - 1 - 0 = 0; so 104 - 99 = 5.");
  EXPECT_EQ(step_line("4 * 47"),
            "4 * 47: ones 7 * 4 = 28, carry 2; tens 4 * 4 + 2 = 18; so 4 * 47 = 188.");
  EXPECT_EQ(step_line("119 / 7"),
            "119 / 7: 11 / 7 = 1 remainder 4; 49 / 7 = 7 remainder 0; so 119 / 7 = 17.");
  EXPECT_EQ(step_line("3 + 4"), "3 + 4 = 7.");    // one fact already
  EXPECT_EQ(step_line("42 / 7"), "42 / 7 = 6.");  // a one-digit quotient
  EXPECT_EQ(step_line("1234567 * 3"), "1234567 * 3 = 3703701.");  // more places than named
  // Two multi-digit factors: the place-value chain where the style asks for it, else at once.
  EXPECT_EQ(step_line("12 * 55"), "12 * 55 = 660.");
  columns.place_value_steps = true;
  EXPECT_EQ(step_line("12 * 55"), "12 * 55 = 12 * 50 + 12 * 5 = 600 + 60 = 660.");

  const std::regex fact(
      R"(^(?:[a-z-]+ )?(\d+)(?: ([-+*/]) (\d+))?(?: - (\d+))?(?: \+ (\d+))?(?:: borrow, (\d+)(?: - (\d+))? - (\d+))? = (\d+)(?: remainder (\d+))?(?:, carry (\d+))?$)");
  int worked = 0;
  std::set<char> worked_ops;
  for_each_step_line(columns, 80, 31, [&](const std::string& line) {
    const size_t colon = line.find(": ", line.find(": ") + 2);
    if (colon == std::string::npos || line.find(" so ") == std::string::npos) return;
    ++worked;
    const std::string head = line.substr(line.find(": ") + 2, colon - line.find(": ") - 2);
    worked_ops.insert(head[head.find(' ') + 1]);
    std::string body = line.substr(colon + 2, line.size() - colon - 3);
    const size_t so = body.rfind("; so ");
    const std::string result = body.substr(so + 5);
    EXPECT_EQ(result.substr(0, head.size()), head);
    EXPECT_EQ(evaluate_expression(head), evaluate_expression(result.substr(head.size() + 3)));
    body.erase(so);
    for (size_t from = 0; from <= body.size();) {
      const size_t end = std::min(body.find("; ", from), body.size());
      const std::string part = body.substr(from, end - from);
      from = end + 2;
      std::smatch m;
      ASSERT_TRUE(std::regex_match(part, m, fact)) << part;
      auto num = [&](int g) { return m[g].matched ? std::stoll(m[g].str()) : 0; };
      if (m[6].matched) {  // a borrow: the top digit plus ten
        EXPECT_EQ(num(6), num(1) + 10) << part;
        EXPECT_EQ(num(6) - num(7) - num(8), num(9)) << part;
        continue;
      }
      const char op = m[2].matched ? m[2].str()[0] : '/';
      int64_t v = 0;
      if (op == '+') v = num(1) + num(3) + num(5);
      if (op == '-') v = num(1) - num(4) - num(3);
      if (op == '*') v = num(1) * num(3) + num(5);
      if (op == '/') v = num(1) / num(3);
      EXPECT_EQ(v, num(9)) << part;
      if (op == '/') {
        EXPECT_EQ(num(1) % num(3), num(10)) << part;
      }
      if (m[11].matched) {
        EXPECT_EQ(num(11), num(9) / 10) << part;
      }
    }
  });
  EXPECT_EQ(worked_ops, (std::set<char>{'+', '-', '*', '/'}));
  EXPECT_GT(worked, 100);
}

// TaskNumbers::small(): every arithmetic value below 1000 (each step's result included), and
// Countdown numbers from 1..10 only; the items stay right.
TEST(EvalTasksGenerate, SmallNumbersStayInTheirRange) {
  const TaskNumbers small = TaskNumbers::small();
  for (int steps = 1; steps <= 4; ++steps) {
    for (const EvalItem& item : generate_arithmetic(40, 200 + steps, steps, TraceStyle(), small)) {
      SCOPED_TRACE(item.solution);
      EXPECT_TRUE(check_answer(item, item.answer));
      for (size_t i = 0; i < item.solution.size();) {
        if (!std::isdigit(static_cast<unsigned char>(item.solution[i]))) {
          ++i;
          continue;
        }
        size_t j = i;
        while (j < item.solution.size() && std::isdigit(static_cast<unsigned char>(item.solution[j])))
          ++j;
        EXPECT_LT(std::stoll(item.solution.substr(i, j - i)), 1000);
        i = j;
      }
    }
  }
  for (int numbers = 3; numbers <= 4; ++numbers) {
    for (const EvalItem& item : generate_countdown(40, 300 + numbers, numbers, small)) {
      SCOPED_TRACE(item.question);
      EXPECT_TRUE(check_answer(item, item.answer));
      for (int x : item.numbers) {
        EXPECT_GE(x, 1);
        EXPECT_LE(x, 10);
      }
    }
  }
  EXPECT_EQ(generate_task("countdown", 5, 7, 3, small)[0].question,
            generate_countdown(5, 7, 3, small)[0].question);
  TaskNumbers tiny;
  tiny.arithmetic_limit = 100;
  EXPECT_THROW(generate_arithmetic(1, 1, 2, TraceStyle(), tiny), Error);
}

// Countdown problems are the same problem in any order of their numbers; others by text.
TEST(EvalTasksGenerate, ProblemKeysIgnoreTheOrderOfCountdownNumbers) {
  const std::vector<EvalItem> items = generate_countdown(30, 11, 4, TaskNumbers::small());
  std::set<std::string> keys;
  for (const EvalItem& item : items) {
    keys.insert(problem_key(item.question));
    std::vector<int> reversed(item.numbers.rbegin(), item.numbers.rend());
    std::string question = item.question;
    std::string listed, again;
    for (size_t i = 0; i < item.numbers.size(); ++i) {
      const char* sep = i == 0 ? "" : i + 1 == item.numbers.size() ? " and " : ", ";
      listed += sep + std::to_string(item.numbers[i]);
      again += sep + std::to_string(reversed[i]);
    }
    ASSERT_NE(question.find(listed), std::string::npos) << question;
    question.replace(question.find(listed), listed.size(), again);
    EXPECT_EQ(problem_key(question), problem_key(item.question)) << question;
    const std::string other_target = std::to_string(item.target + 1) + ". Every";
    std::string moved = item.question;
    moved.replace(moved.find(std::to_string(item.target) + ". Every"),
                  std::to_string(item.target).size() + 7, other_target);
    EXPECT_NE(problem_key(moved), problem_key(item.question)) << moved;
  }
  EXPECT_GT(keys.size(), 25u);
  const EvalItem a = generate_arithmetic(1, 5, 2)[0];
  EXPECT_EQ(problem_key(a.question), a.question);
}

TEST(EvalTasksGenerate, LogicHasExactlyOneCorrectChoice) {
  int knights = 0, ordering = 0;
  for (const EvalItem& item : generate_logic(80, 11)) {
    SCOPED_TRACE(item.question);
    EXPECT_EQ(item.check, CheckKind::kChoice);
    ASSERT_GE(item.choices.size(), 3u);
    EXPECT_TRUE(check_answer(item, item.answer));
    EXPECT_EQ(extract_final_answer(item.solution), item.answer);
    int right = 0;
    for (size_t i = 0; i < item.choices.size(); ++i) {
      const std::string l(1, char('A' + i));
      const bool ok = check_answer(item, l);
      right += ok;
      EXPECT_EQ(check_answer(item, item.choices[i]), ok);
      EXPECT_EQ(check_answer(item, "(" + l + ")"), ok);
      EXPECT_NE(item.question.find(l + ") " + item.choices[i] + "\n"), std::string::npos);
    }
    EXPECT_EQ(right, 1);
    (item.question.find("knight") != std::string::npos ? knights : ordering)++;
  }
  EXPECT_GT(knights, 10);
  EXPECT_GT(ordering, 10);
}

TEST(EvalTasksCheck, ExactNumericAndRegex) {
  EvalItem exact = make_item("Paris", CheckKind::kExact);
  EXPECT_TRUE(check_answer(exact, "  paris "));
  EXPECT_FALSE(check_answer(exact, "Paris, France"));

  EvalItem num = make_item("1234", CheckKind::kNumeric);
  for (const char* ok : {"1234", "1,234", "= 1234", "$1,234", "1234.0", "1.234e3", "+1234"})
    EXPECT_TRUE(check_answer(num, ok)) << ok;
  for (const char* bad : {"1235", "1233", "12,34", "1234x", "", "inf", "0x4D2", "1 234", "-1234"})
    EXPECT_FALSE(check_answer(num, bad)) << bad;
  num.answer = "-2.5";
  EXPECT_TRUE(check_answer(num, "-2.5000000001"));
  EXPECT_FALSE(check_answer(num, "-2.6"));

  EvalItem re = make_item("^(4|four)$", CheckKind::kRegex);
  EXPECT_TRUE(check_answer(re, "four"));
  EXPECT_FALSE(check_answer(re, "fourteen"));
  re.answer = "(unclosed";
  EXPECT_FALSE(check_answer(re, "(unclosed"));  // a bad pattern fails the answer, no crash
}

TEST(EvalTasksCheck, ChoiceForms) {
  EvalItem item = make_item("B", CheckKind::kChoice);
  item.choices = {"Ann", "Bob", "Cid"};
  for (const char* ok : {"B", "b", "B)", "(B)", "B.", "Bob", "bob", "B) Bob", "(b) Bob"})
    EXPECT_TRUE(check_answer(item, ok)) << ok;
  for (const char* bad : {"A", "C)", "(A)", "Ann", "D", "B) Ann", "Bo", "", "(B"})
    EXPECT_FALSE(check_answer(item, bad)) << bad;
}

TEST(EvalTasksCheck, CountdownRejectsCheats) {
  EvalItem item = make_item("50 + 7", CheckKind::kCountdown);
  item.numbers = {3, 7, 25, 50};
  item.target = 57;
  for (const char* ok : {"50 + 7", "7+50", "((50) + 7)", "50 + 7 = 57", " 50+7 =57 "})
    EXPECT_TRUE(check_answer(item, ok)) << ok;
  EXPECT_FALSE(check_answer(item, "(50 - 25) * 3 - 25 + 7"));  // 25 twice
  for (const char* bad : {"50 + 7 = 58", "50 + 8 - 1", "57", "50 / 3 * 3 + 7", "50 + 7 + 7", "2+",
                          "((3", "50 + -7", "50 + 7x", "50 + 7 = ", "50 ^ 7", ""})
    EXPECT_FALSE(check_answer(item, bad)) << bad;
  item.target = 78;
  EXPECT_TRUE(check_answer(item, "50 + 25 + 3"));
  EXPECT_FALSE(check_answer(item, "25 * 3 + 3"));  // 3 reused
  EvalItem negative = item;                        // a negative value midway is fine when checking
  negative.numbers = {1, 4, 10};
  negative.target = 7;
  EXPECT_TRUE(check_answer(negative, "1 - 4 + 10"));
}

TEST(EvalTasksCheck, ExpressionsAndTheSolver) {
  EXPECT_EQ(evaluate_expression("2 + 3 * 4"), std::optional<int64_t>(14));
  EXPECT_EQ(evaluate_expression("(2+3)*4 - 10/5"), std::optional<int64_t>(18));
  EXPECT_EQ(evaluate_expression("8 - 3 - 2"), std::optional<int64_t>(3));
  std::vector<int64_t> literals;
  EXPECT_EQ(evaluate_expression("100 / (5 * 4)", &literals), std::optional<int64_t>(5));
  EXPECT_EQ(literals, (std::vector<int64_t>{100, 5, 4}));
  for (const char* bad : {"7 / 2", "1 / 0", "2+", "((3", "3)", "-3", "", "2 3", "1.5 + 1",
                          "99999999999999999999", "3037000500 * 3037000500 * 3037000500"})
    EXPECT_FALSE(evaluate_expression(bad).has_value()) << bad;
  EXPECT_FALSE(evaluate_expression(std::string(100000, '(') + "1").has_value());

  std::string trace;
  const std::string found = solve_countdown({3, 7, 25, 50}, 96, &trace);
  EXPECT_EQ(evaluate_expression(found), std::optional<int64_t>(96)) << found;
  EXPECT_NE(trace.find("Try "), std::string::npos);
  EXPECT_EQ(solve_countdown({3, 7, 25, 50}, 81), "");  // checked by an independent brute force
  EXPECT_EQ(solve_countdown({1, 1}, 5, &trace), "");
  EXPECT_NE(trace.find("cannot be reached"), std::string::npos);
  EXPECT_EQ(solve_countdown({2, 2}, 4), "2 + 2");
}

TEST(EvalTasksExtract, ReplyShapes) {
  EXPECT_EQ(extract_final_answer("Let me think.\n3 + 4 = 7\nAnswer: 7\n"), "7");
  EXPECT_EQ(extract_final_answer("Answer: 7\n\nHope this helps!"), "7");
  EXPECT_EQ(extract_final_answer("so **Answer:** B."), "B");
  EXPECT_EQ(extract_final_answer("**Answer: 42**"), "42");
  EXPECT_EQ(extract_final_answer("We get $\\boxed{\\frac{1}{2}}$ here.\nDone"), "\\frac{1}{2}");
  EXPECT_EQ(extract_final_answer("Thus the final answer is 1,234."), "1,234");
  EXPECT_EQ(extract_final_answer("The answer is: `(2 + 3) * 4`"), "(2 + 3) * 4");
  EXPECT_EQ(extract_final_answer("Final Answer:\n\n  58  \n"), "58");
  EXPECT_EQ(extract_final_answer("first\n  last line.  \n\n"), "last line");
  EXPECT_EQ(extract_final_answer("Answer: 1\nwait, no.\nAnswer: 2"), "2");
  EXPECT_EQ(extract_final_answer(""), "");
  EXPECT_EQ(extract_final_answer("a\r\nAnswer: C\r\n"), "C");
}

TEST(EvalTasksJsonl, RoundTripThroughAFile) {
  std::vector<EvalItem> items = generate_arithmetic(3, 1);
  for (const EvalItem& i : generate_countdown(3, 2)) items.push_back(i);
  for (const EvalItem& i : generate_logic(3, 3)) items.push_back(i);
  items.push_back(make_item("^four$", CheckKind::kRegex, "re", "Say \"four\".\nLine 2"));
  items.push_back(make_item("Paris", CheckKind::kExact, "ex", "Capital of France?"));
  const std::string path = temp_path("round.jsonl");
  write_eval_items(path, items);
  const std::vector<EvalItem> back = read_eval_items(path);
  std::remove(path.c_str());
  ASSERT_EQ(back.size(), items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    EXPECT_EQ(back[i].id, items[i].id);
    EXPECT_EQ(back[i].question, items[i].question);
    EXPECT_EQ(back[i].answer, items[i].answer);
    EXPECT_EQ(back[i].check, items[i].check);
    EXPECT_EQ(back[i].choices, items[i].choices);
    EXPECT_EQ(back[i].numbers, items[i].numbers);
    EXPECT_EQ(back[i].target, items[i].target);
    EXPECT_EQ(back[i].solution, items[i].solution);
  }
  const std::string exact = eval_item_to_json(items.back()).dump();
  EXPECT_EQ(exact,
            R"({"id":"ex","question":"Capital of France?","answer":"Paris","check":"exact"})");
  EXPECT_EQ(parse_check_kind(check_kind_name(CheckKind::kCountdown)), CheckKind::kCountdown);
}

TEST(EvalTasksJsonl, BadLinesAreErrorsNamingTheLine) {
  const std::string good = R"({"question":"2+2?","answer":"4","check":"numeric"})";
  const std::string path = temp_path("bad.jsonl");
  // Blank lines are skipped; items without an id are named after their line.
  write_text(path, good + "\n\n   \n" + good + "\n");
  const std::vector<EvalItem> ok = read_eval_items(path);
  std::remove(path.c_str());
  ASSERT_EQ(ok.size(), 2u);
  EXPECT_EQ(ok[1].id, "line-4");
  EXPECT_EQ(ok[0].check, CheckKind::kNumeric);

  struct Case {
    std::string line, expect;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"question":"x")", ".jsonl:3: invalid JSON"},
           {R"({"question":"x"})", ".jsonl:3: missing \"answer\""},
           {R"({"answer":"x"})", ".jsonl:3: missing \"question\""},
           {R"({"question":"x","answer":"y","check":"fuzzy"})", "unknown check \"fuzzy\""},
           {R"({"question":"x","answer":"(a","check":"regex"})", ".jsonl:3: bad regex \"(a\""},
           {R"({"question":"x","answer":"D","check":"choice","choices":["a","b"]})",
            "not one of the 2 choices"},
           {R"({"question":"x","answer":"1+2","check":"countdown","numbers":[1,2],"target":4})",
            "does not reach 4"},
           {R"({"question":"x","answer":"ten","check":"numeric"})", "is not a number"},
           {R"([1,2])", "expected a JSON object"},
       }) {
    const std::string message = read_error(good + "\n\n" + c.line + "\n");
    EXPECT_NE(message.find(c.expect), std::string::npos) << message;
  }
  EXPECT_THROW(read_eval_items(temp_path("missing.jsonl")), Error);
}

}  // namespace
}  // namespace muse
