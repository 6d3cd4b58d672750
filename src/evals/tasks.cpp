#include "evals/tasks.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string_view>

#include "tokenizer/unicode.h"
#include "util/error.h"

namespace muse {
namespace {

using Rng = std::mt19937_64;

// Uniform integer in [lo, hi] by rejection: std::uniform_int_distribution (and std::shuffle)
// give different streams on different standard libraries, and the sets must not.
int64_t uniform(Rng& rng, int64_t lo, int64_t hi) {
  const uint64_t range = uint64_t(hi - lo) + 1;
  const uint64_t limit = UINT64_MAX - UINT64_MAX % range;
  uint64_t x;
  do x = rng();
  while (x >= limit);
  return lo + int64_t(x % range);
}

template <typename T>
void shuffle(Rng& rng, std::vector<T>& v) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[size_t(uniform(rng, 0, i - 1))]);
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}

std::string fold(std::string_view s) {
  std::string out = trim(s);
  for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

std::string item_id(const char* prefix, int i) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%s-%04d", prefix, i);
  return buf;
}

// "a, b and c"
std::string join_and(const std::vector<std::string>& parts) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out += i + 1 == parts.size() ? " and " : ", ";
    out += parts[i];
  }
  return out;
}

std::string final_instruction(const char* what) {
  return std::string("Give the final answer on the last line as \"Answer: <") + what + ">\".";
}

// The random choices a TraceStyle asks for. Optional lines and move order draw from separate
// streams, so a seed searches in the same order at every verbosity.
class StyleDraws {
 public:
  explicit StyleDraws(const TraceStyle& style)
      : style_(style), lines_(style.seed ^ 0x9e3779b97f4a7c15ull), moves_(style.seed) {}

  // Whether to write an optional line (no draw at verbosity 0 or 1).
  bool keep_optional() {
    if (style_.verbosity >= 1) return true;
    if (style_.verbosity <= 0) return false;
    return double(lines_() >> 11) * 0x1p-53 < style_.verbosity;
  }
  Rng& moves() { return moves_; }
  const TraceStyle& style() const { return style_; }

 private:
  const TraceStyle& style_;
  Rng lines_, moves_;
};

// ---------------------------------------------------------------------------------------------
// Integer expressions: a recursive-descent parser into nodes stored children-first, so that
// evaluation is a loop (no recursion on a model's arbitrarily long reply).

struct ExprNode {
  char op = 0;  // 0: a literal
  int64_t value = 0;
  int left = -1, right = -1;
};

struct Expr {
  std::vector<ExprNode> nodes;
  int root = -1;
};

std::optional<int64_t> apply_op(char op, int64_t a, int64_t b) {
  int64_t r = 0;
  switch (op) {
    case '+':
      if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
      return r;
    case '-':
      if (__builtin_sub_overflow(a, b, &r)) return std::nullopt;
      return r;
    case '*':
      if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
      return r;
    case '/':
      if (b == 0 || (a == INT64_MIN && b == -1) || a % b != 0) return std::nullopt;
      return a / b;
  }
  return std::nullopt;
}

class ExprParser {
 public:
  explicit ExprParser(std::string_view s) : s_(s) {}

  std::optional<Expr> parse() {
    const int root = expr(0);
    skip_space();
    if (root < 0 || pos_ != s_.size()) return std::nullopt;
    out_.root = root;
    return std::move(out_);
  }

 private:
  static constexpr int kMaxDepth = 64;  // nested parentheses

  void skip_space() {
    while (pos_ < s_.size() && is_space(s_[pos_])) ++pos_;
  }
  bool take(char c) {
    skip_space();
    if (pos_ < s_.size() && s_[pos_] == c) return ++pos_, true;
    return false;
  }
  int node(char op, int left, int right) {
    out_.nodes.push_back({op, 0, left, right});
    return int(out_.nodes.size()) - 1;
  }
  int expr(int depth) {
    int left = term(depth);
    while (left >= 0) {
      const char op = take('+') ? '+' : take('-') ? '-' : 0;
      if (!op) break;
      const int right = term(depth);
      left = right < 0 ? -1 : node(op, left, right);
    }
    return left;
  }
  int term(int depth) {
    int left = factor(depth);
    while (left >= 0) {
      const char op = take('*') ? '*' : take('/') ? '/' : 0;
      if (!op) break;
      const int right = factor(depth);
      left = right < 0 ? -1 : node(op, left, right);
    }
    return left;
  }
  int factor(int depth) {
    if (take('(')) {
      if (depth >= kMaxDepth) return -1;
      const int e = expr(depth + 1);
      return e >= 0 && take(')') ? e : -1;
    }
    if (pos_ >= s_.size() || !is_digit(s_[pos_])) return -1;
    int64_t v = 0;
    for (int digits = 0; pos_ < s_.size() && is_digit(s_[pos_]); ++pos_) {
      if (++digits > 15) return -1;
      v = v * 10 + (s_[pos_] - '0');
    }
    out_.nodes.push_back({0, v, -1, -1});
    return int(out_.nodes.size()) - 1;
  }

  std::string_view s_;
  size_t pos_ = 0;
  Expr out_;
};

// Evaluates in node order (children come first); fills in every node's value.
std::optional<int64_t> evaluate(Expr& e) {
  for (ExprNode& n : e.nodes) {
    if (!n.op) continue;
    const std::optional<int64_t> v = apply_op(n.op, e.nodes[n.left].value, e.nodes[n.right].value);
    if (!v) return std::nullopt;
    n.value = *v;
  }
  return e.nodes[e.root].value;
}

// Fully parenthesised below the top level, so no reader needs precedence rules.
std::string render(const Expr& e, int i) {
  const ExprNode& n = e.nodes[i];
  if (!n.op) return n.value < 0 ? "(" + std::to_string(n.value) + ")" : std::to_string(n.value);
  auto side = [&](int c) { return e.nodes[c].op ? "(" + render(e, c) + ")" : render(e, c); };
  return side(n.left) + " " + n.op + " " + side(n.right);
}

// ---------------------------------------------------------------------------------------------
// Arithmetic

class ArithmeticBuilder {
 public:
  // Every value stays below `limit`.
  ArithmeticBuilder(Rng& rng, int64_t limit) : rng_(rng), limit_(limit) {}

  Expr build(int ops) {
    e_ = Expr();
    e_.root = gen(ops);
    return std::move(e_);
  }

 private:
  int leaf(int64_t v) {
    e_.nodes.push_back({0, v, -1, -1});
    return int(e_.nodes.size()) - 1;
  }
  int node(char op, int l, int r) {
    const int64_t v = *apply_op(op, e_.nodes[l].value, e_.nodes[r].value);
    e_.nodes.push_back({op, v, l, r});
    return int(e_.nodes.size()) - 1;
  }
  // a op b with the operands in random order, for the commutative ops.
  int either_way(char op, int a, int b) {
    return uniform(rng_, 0, 1) ? node(op, a, b) : node(op, b, a);
  }

  // A positive tree with `ops` operations. Abandoned attempts leave unreachable nodes behind,
  // which nothing reads.
  int gen(int ops) {
    if (ops == 0) return leaf(uniform(rng_, 2, 50));
    for (;;) {
      // Mostly chains, sometimes two subexpressions.
      const int right_ops = uniform(rng_, 0, 2) == 0 ? int(uniform(rng_, 0, ops - 1)) : 0;
      const int l = gen(ops - 1 - right_ops);
      const int64_t a = e_.nodes[l].value;
      const char op = "+-*/"[uniform(rng_, 0, 3)];
      if (right_ops == 0) {  // a literal chosen to suit the operation
        if (op == '+' && a + 99 < limit_)
          return either_way('+', l, leaf(uniform(rng_, 2, 99)));
        if (op == '-') {
          if (uniform(rng_, 0, 3) == 0 && a + 60 < limit_)
            return node('-', leaf(uniform(rng_, a + 1, a + 60)), l);
          if (a >= 2) return node('-', l, leaf(uniform(rng_, 1, std::min<int64_t>(a - 1, 60))));
        }
        if (op == '*' && a * 2 < limit_)
          return either_way('*', l,
                            leaf(uniform(rng_, 2, std::min<int64_t>(12, (limit_ - 1) / a))));
        if (op == '/') {
          // Not a divisor that undoes a multiplication just done: "(x * 11) / 11" is no step.
          const ExprNode& ln = e_.nodes[l];
          auto undoes = [&](int64_t d) {
            return ln.op == '*' && ((!e_.nodes[ln.left].op && e_.nodes[ln.left].value == d) ||
                                    (!e_.nodes[ln.right].op && e_.nodes[ln.right].value == d));
          };
          std::vector<int64_t> divisors;
          for (int64_t d = 2; d <= 12 && d < a; ++d)
            if (a % d == 0 && !undoes(d)) divisors.push_back(d);
          if (!divisors.empty())
            return node('/', l, leaf(divisors[size_t(uniform(rng_, 0, divisors.size() - 1))]));
        }
        continue;
      }
      const int r = gen(right_ops);
      const int64_t b = e_.nodes[r].value;
      if (op == '+' && a + b < limit_) return either_way('+', l, r);
      if (op == '-' && a != b) return a > b ? node('-', l, r) : node('-', r, l);
      if (op == '*' && a * b < limit_) return either_way('*', l, r);
      if (op == '/' && b > 1 && a % b == 0 && a != b) return node('/', l, r);
      if (op == '/' && a > 1 && b % a == 0 && a != b) return node('/', r, l);
    }
  }

  Rng& rng_;
  const int64_t limit_;
  Expr e_;
};

// The nonzero place parts of x, largest first: 307 -> {300, 7}.
std::vector<int64_t> place_parts(int64_t x) {
  std::vector<int64_t> parts;
  for (int64_t place = 1; x / place > 0; place *= 10)
    if (const int64_t digit = x / place % 10) parts.insert(parts.begin(), digit * place);
  return parts;
}

// "14 + 97 = 14 + 90 + 7 = 104 + 7 = 111", "368 - 32 = 368 - 30 - 2 = 338 - 2 = 336",
// "4 * 92 = 4 * 90 + 4 * 2 = 360 + 8 = 368", "119 / 7 = (70 + 49) / 7 = 10 + 7 = 17" (long
// division, by the quotient's places): a step done one place of an operand at a time, so most
// parts are one-digit facts at their place (a model of a few million parameters got a fifth of
// its two-digit sums wrong written at once; products of two multi-digit numbers keep a
// multi-digit factor in each part). Empty when the operand split (for division the quotient) has
// one nonzero place already.
std::string place_value_chain(char op, int64_t a, int64_t b) {
  auto s = [](int64_t x) { return std::to_string(x); };
  auto join = [&](const std::vector<std::string>& terms, char sign) {
    std::string out;
    for (const std::string& t : terms)
      out += (out.empty() ? "" : std::string(" ") + sign + " ") + t;
    return out;
  };
  auto join_values = [&](const std::vector<int64_t>& values, char sign) {
    std::vector<std::string> text;
    for (int64_t v : values) text.push_back(s(v));
    return join(text, sign);
  };
  // Reduces "t0 sign t1 sign t2..." left to right, one "= ..." per operation.
  auto reduce = [&](std::vector<int64_t> terms, char sign) {
    std::string out;
    while (terms.size() > 1) {
      terms[1] = sign == '+' ? terms[0] + terms[1] : terms[0] - terms[1];
      terms.erase(terms.begin());
      out += " = " + join_values(terms, sign);
    }
    return out;
  };
  const std::string head = s(a) + " " + op + " " + s(b);
  if (op == '+' || op == '-') {
    const std::vector<int64_t> parts = place_parts(b);
    if (parts.size() < 2) return "";
    std::vector<int64_t> terms{a};
    terms.insert(terms.end(), parts.begin(), parts.end());
    return head + " = " + join_values(terms, op) + reduce(terms, op);
  }
  if (op == '/') {
    const std::vector<int64_t> parts = place_parts(a / b);
    if (parts.size() < 2) return "";
    std::vector<int64_t> dividends;
    for (int64_t p : parts) dividends.push_back(b * p);
    return head + " = (" + join_values(dividends, '+') + ") / " + s(b) + " = " +
           join_values(parts, '+') + reduce(parts, '+');
  }
  if (op != '*') return "";
  const std::vector<int64_t> a_parts = place_parts(a), b_parts = place_parts(b);
  const bool split_b = b_parts.size() >= a_parts.size();
  const std::vector<int64_t>& parts = split_b ? b_parts : a_parts;
  if (parts.size() < 2) return "";
  std::vector<std::string> products;
  std::vector<int64_t> values;
  for (int64_t p : parts) {
    products.push_back(split_b ? s(a) + " * " + s(p) : s(p) + " * " + s(b));
    values.push_back(split_b ? a * p : p * b);
  }
  return head + " = " + join(products, '+') + " = " + join_values(values, '+') +
         reduce(values, '+');
}

// A step (a op b = result) worked column by column (TraceStyle::column_steps), from the ones up for
// sums, differences and products with a one-digit factor, from the leading digits down for
// quotients by a one-digit divisor; every part is a one-digit fact, plus the carry or borrow. Empty
// for other steps, and for steps of one-digit numbers, which are one fact already.
std::string column_working(char op, int64_t a, int64_t b, int64_t result) {
  auto s = [](int64_t x) { return std::to_string(x); };
  static const char* const kPlaces[] = {"ones",      "tens",          "hundreds",
                                        "thousands", "ten-thousands", "hundred-thousands"};
  auto digit = [](int64_t x, int place) {
    for (int i = 0; i < place; ++i) x /= 10;
    return x % 10;
  };
  auto n_digits = [](int64_t x) { return int(std::to_string(x).size()); };
  std::vector<std::string> parts;
  const std::string head = s(a) + " " + op + " " + s(b);
  if (op == '+' || op == '-') {
    const int places = std::max(n_digits(a), n_digits(b));
    if (places < 2 || places > 6) return "";
    int64_t carry = 0;  // the carry into a column (sums) or its borrow (differences)
    for (int p = 0; p < places; ++p) {
      const int64_t x = digit(a, p), y = digit(b, p);
      const bool last = p == places - 1;
      std::string part = std::string(kPlaces[p]) + " " + s(x);
      if (op == '+') {
        const int64_t sum = x + y + carry;
        part += " + " + s(y) + (carry ? " + " + s(carry) : "") + " = " + s(sum);
        carry = sum / 10;
        if (carry && !last) part += ", carry " + s(carry);
      } else {
        const std::string take = carry ? " - " + s(carry) : "";
        if (x - carry >= y) {
          part += take + " - " + s(y) + " = " + s(x - carry - y);
          carry = 0;
        } else {
          part += take + " - " + s(y) + ": borrow, " + s(10 + x) + take + " - " + s(y) + " = " +
                  s(10 + x - carry - y);
          carry = 1;
        }
      }
      parts.push_back(part);
    }
  } else if (op == '*') {
    const int64_t multi = b < 10 ? a : b, one = b < 10 ? b : a;
    if (one >= 10 || multi < 10) return "";
    const int places = n_digits(multi);
    if (places > 6) return "";
    int64_t carry = 0;
    for (int p = 0; p < places; ++p) {
      const int64_t x = digit(multi, p), product = x * one + carry;
      std::string part = std::string(kPlaces[p]) + " " + s(x) + " * " + s(one) +
                         (carry ? " + " + s(carry) : "") + " = " + s(product);
      carry = product / 10;
      if (carry && p < places - 1) part += ", carry " + s(carry);
      parts.push_back(part);
    }
  } else if (op == '/') {
    if (b >= 10 || b < 2 || a < 10) return "";
    const std::string digits = s(a);
    int64_t current = 0;
    size_t i = 0;
    while (i < digits.size() && current * 10 + (digits[i] - '0') < b)
      current = current * 10 + (digits[i++] - '0');
    for (; i < digits.size(); ++i) {
      current = current * 10 + (digits[i] - '0');
      parts.push_back(s(current) + " / " + s(b) + " = " + s(current / b) + " remainder " +
                      s(current % b));
      current %= b;
    }
    if (parts.size() < 2) return "";  // a one-digit quotient: one fact already
  } else {
    return "";
  }
  std::string out = head + ": ";
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? "; " : "") + parts[i];
  return out + "; so " + head + " = " + s(result);
}

}  // namespace

// The solver: parses the expression text and works it out one innermost operation at a time.
std::string solve_arithmetic(const std::string& text, std::string* answer,
                             const TraceStyle& style) {
  std::optional<Expr> parsed = ExprParser(text).parse();
  if (!parsed) fail("cannot parse the expression \"", text, "\"");
  Expr& e = *parsed;
  StyleDraws draws(style);
  std::string out;
  if (draws.keep_optional()) out += "We work out the innermost operation first, one at a time.\n";
  out += "The expression is " + text + ".\n";
  for (int step = 1; e.nodes[e.root].op; ++step) {
    int i = e.root;  // leftmost operation whose operands are both numbers
    for (;;) {
      const ExprNode& n = e.nodes[i];
      if (e.nodes[n.left].op)
        i = n.left;
      else if (e.nodes[n.right].op)
        i = n.right;
      else
        break;
    }
    ExprNode& n = e.nodes[i];
    const int64_t a = e.nodes[n.left].value, b = e.nodes[n.right].value;
    const std::optional<int64_t> v = apply_op(n.op, a, b);
    if (!v) fail("the expression \"", text, "\" has a step that is not exact");
    std::string chain = style.column_steps ? column_working(n.op, a, b, *v) : "";
    if (chain.empty() && style.place_value_steps) chain = place_value_chain(n.op, a, b);
    if (!chain.empty() && !draws.keep_optional()) chain.clear();
    const std::string plain =
        std::to_string(a) + " " + n.op + " " + std::to_string(b) + " = " + std::to_string(*v);
    out += "Step " + std::to_string(step) + ": " + (chain.empty() ? plain : chain) + ".\n";
    if (style.recheck_results && draws.keep_optional()) out += "Check: " + plain + ".\n";
    n = {0, *v, -1, -1};
    if (e.nodes[e.root].op && draws.keep_optional())
      out += "The expression is now " + render(e, e.root) + ".\n";
  }
  *answer = std::to_string(e.nodes[e.root].value);
  return out + "Answer: " + *answer;
}

namespace {

// ---------------------------------------------------------------------------------------------
// Countdown

struct Term {
  int64_t value;
  std::string expr;
  bool compound;
};

std::string list_values(const std::vector<Term>& terms) {
  std::string out;
  for (const Term& t : terms) out += (out.empty() ? "" : ", ") + std::to_string(t.value);
  return out;
}

void sort_larger_first(std::vector<Term>& terms) {
  std::stable_sort(terms.begin(), terms.end(),
                   [](const Term& a, const Term& b) { return a.value > b.value; });
}

// Depth-first over "combine two of the numbers", which reaches every expression tree over every
// subset; multisets of values already shown to fail are not searched again. Shuffling the moves
// at each node changes only the order: the search stays exhaustive.
class CountdownSolver {
 public:
  CountdownSolver(int64_t target, std::string* trace, StyleDraws& draws)
      : target_(target), trace_(trace), draws_(draws) {}

  struct Move {
    size_t i, j;  // terms[i].value >= terms[j].value
    char op;
    int64_t result;
  };
  // The valid moves on `terms` (sorted larger first), in the order they are tried.
  std::vector<Move> moves(const std::vector<Term>& terms) {
    std::vector<Move> out;
    for (size_t i = 0; i < terms.size(); ++i) {
      for (size_t j = i + 1; j < terms.size(); ++j) {
        const int64_t a = terms[i].value, b = terms[j].value;
        for (const char op : {'+', '-', '*', '/'}) {
          // No zero or negative results, and no * 1 or / 1, which only drop the 1.
          if (op == '-' && a == b) continue;
          if ((op == '*' || op == '/') && b == 1) continue;
          if (op == '/' && a % b != 0) continue;
          const std::optional<int64_t> r = apply_op(op, a, b);
          if (!r) continue;
          out.push_back({i, j, op, *r});
        }
      }
    }
    if (draws_.style().shuffle_moves) shuffle(draws_.moves(), out);
    return out;
  }

  bool dfs(std::vector<Term> terms, int depth) {
    for (const Term& t : terms) {
      if (t.value == target_) return answer_ = t.expr, true;
    }
    if (terms.size() < 2) return false;
    sort_larger_first(terms);
    std::vector<int64_t> key;
    for (const Term& t : terms) key.push_back(t.value);
    if (dead_.count(key)) {
      log(depth, "(" + list_values(terms) + " was already a dead end.)");
      return false;
    }
    for (const Move& m : moves(terms)) {
      const Term& a = terms[m.i];
      const Term& b = terms[m.j];
      auto wrap = [](const Term& t) { return t.compound ? "(" + t.expr + ")" : t.expr; };
      std::vector<Term> next;
      for (size_t k = 0; k < terms.size(); ++k)
        if (k != m.i && k != m.j) next.push_back(terms[k]);
      next.push_back({m.result, wrap(a) + " " + m.op + " " + wrap(b), true});
      if (prune_dead_ends && m.result != target_ && !reaches_target(next) &&
          !draws_.keep_optional())
        continue;
      const std::string step = std::to_string(a.value) + " " + m.op + " " +
                               std::to_string(b.value) + " = " + std::to_string(m.result);
      const std::string target = std::to_string(target_);
      const bool hit = m.result == target_;
      if (draws_.style().compare_to_target) {
        std::string line = "Try " + step + ", target " + target + (hit ? ": yes." : ": no");
        if (!hit) line += next.size() == 1 ? "." : "; leaving " + list_values(next) + ".";
        log(depth, line);
      } else if (hit)
        log(depth, "Try " + step + ": that is the target.");
      else if (next.size() == 1)
        log(depth, "Try " + step + ": not " + target + ".");
      else
        log(depth, "Try " + step + ", leaving " + list_values(next) + ".");
      if (draws_.style().recheck_results) {
        const std::string result = std::to_string(m.result);
        log(depth,
            "Check: " + step + ", and " + result +
                (hit ? " is the target." : " is not " + target + "."),
            true);
      }
      path_.push_back(step);
      if (dfs(std::move(next), depth + 1)) return true;
      path_.pop_back();
    }
    dead_.insert(key);
    if (depth > 0)
      log(depth,
          "Dead end: " + list_values(terms) + " cannot make " + std::to_string(target_) +
              "; back up.",
          true);
    return false;
  }

  void finish(bool found) {
    if (!trace_) return;
    if (hidden_) *trace_ += "(" + std::to_string(hidden_) + " more tries not shown.)\n";
    if (!found) {
      *trace_ += "Every combination has been tried: the target cannot be reached.\n";
      return;
    }
    if (draws_.keep_optional()) {
      *trace_ += "Found it. The steps are:\n";
      for (const std::string& s : path_) *trace_ += "  " + s + "\n";
    }
    *trace_ += "As one expression: " + answer_ + " = " + std::to_string(target_) + ".\n";
    *trace_ += "Answer: " + answer_;
  }

  std::string answer_;
  // Leave out each move that cannot lead to the target unless draws_.keep_optional(). Only for
  // a solvable problem: where nothing works, a trace that claims so must have tried it all.
  bool prune_dead_ends = false;

 private:
  // Whether some combination of `terms` makes the target (a silent search, remembered per
  // multiset of values).
  bool reaches_target(const std::vector<Term>& terms) {
    std::vector<int64_t> key;
    for (const Term& t : terms) key.push_back(t.value);
    std::sort(key.begin(), key.end());
    const auto known = reachable_.find(key);
    if (known != reachable_.end()) return known->second;
    const TraceStyle plain;
    StyleDraws draws(plain);
    const bool reached = CountdownSolver(target_, nullptr, draws).dfs(terms, 0);
    reachable_.emplace(std::move(key), reached);
    return reached;
  }

  // The eval sets' traces show how the search goes, not all of it (max_shown_lines 40).
  void log(int depth, const std::string& line, bool optional = false) {
    if (!trace_) return;
    if (optional && !draws_.keep_optional()) return;
    const int cap = draws_.style().max_shown_lines;
    if (cap > 0 && shown_ >= cap) return void(++hidden_);
    ++shown_;
    *trace_ += std::string(size_t(depth) * 2, ' ') + line + "\n";
  }

  int64_t target_;
  std::string* trace_;
  StyleDraws& draws_;
  std::set<std::vector<int64_t>> dead_;
  std::map<std::vector<int64_t>, bool> reachable_;
  std::vector<std::string> path_;  // steps on the branch being searched
  int shown_ = 0;
  int64_t hidden_ = 0;
};

bool countdown_answer_ok(const EvalItem& item, const std::string& given) {
  const std::string t = trim(given);
  const size_t eq = t.find('=');
  if (eq != std::string::npos) {
    const std::optional<int64_t> rhs = evaluate_expression(t.substr(eq + 1));
    if (!rhs || *rhs != item.target) return false;
  }
  std::vector<int64_t> literals;
  const std::optional<int64_t> v = evaluate_expression(t.substr(0, eq), &literals);
  if (!v || *v != item.target) return false;
  std::vector<int64_t> pool(item.numbers.begin(), item.numbers.end());
  for (int64_t x : literals) {
    const auto it = std::find(pool.begin(), pool.end(), x);
    if (it == pool.end()) return false;
    pool.erase(it);
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Logic puzzles

const char* const kNames[] = {"Ann", "Bob", "Cid", "Dee", "Eve", "Fay",
                              "Gus", "Hal", "Ivy", "Jon", "Kim", "Lou"};

std::vector<std::string> pick_names(Rng& rng, int n) {
  std::vector<std::string> pool(std::begin(kNames), std::end(kNames));
  shuffle(rng, pool);
  pool.resize(static_cast<size_t>(n));
  return pool;
}

std::string letter(size_t i) { return std::string(1, char('A' + i)); }

std::string options_text(const std::vector<std::string>& choices) {
  std::string out;
  for (size_t i = 0; i < choices.size(); ++i) out += letter(i) + ") " + choices[i] + "\n";
  return out;
}

struct Scale {
  const char *more, *less, *most, *least;
};
const Scale kScales[] = {{"taller", "shorter", "tallest", "shortest"},
                         {"older", "younger", "oldest", "youngest"},
                         {"faster", "slower", "fastest", "slowest"},
                         {"heavier", "lighter", "heaviest", "lightest"}};

std::string rank_name(const Scale& s, int rank, int n) {
  if (rank == 0) return std::string("the ") + s.most;
  if (rank == n - 1) return std::string("the ") + s.least;
  return std::string("the second ") + s.most;  // only rank 1 is asked
}

EvalItem ordering_puzzle(Rng& rng) {
  const int n = int(uniform(rng, 3, 4));
  const Scale& scale = kScales[uniform(rng, 0, 3)];
  const std::vector<std::string> names = pick_names(rng, n);
  std::vector<int> hidden(static_cast<size_t>(n));  // people from most to least
  for (int i = 0; i < n; ++i) hidden[size_t(i)] = i;
  shuffle(rng, hidden);
  std::vector<int> asked_ranks = {0, n - 1};
  if (n >= 4) asked_ranks.push_back(1);
  const int asked = asked_ranks[size_t(uniform(rng, 0, asked_ranks.size() - 1))];

  struct Clue {
    int more, less;
    std::string text;
  };
  std::vector<Clue> pairs;  // every true comparison, in a random order
  for (int i = 0; i < n; ++i) {
    for (int j = i + 1; j < n; ++j) {
      const int a = hidden[size_t(i)], b = hidden[size_t(j)];
      const std::string text =
          uniform(rng, 0, 1)
              ? names[size_t(a)] + " is " + scale.more + " than " + names[size_t(b)] + "."
              : names[size_t(b)] + " is " + scale.less + " than " + names[size_t(a)] + ".";
      pairs.push_back({a, b, text});
    }
  }
  shuffle(rng, pairs);

  // Brute force: the orders (most first) that fit the clues.
  auto fits = [&](const std::vector<int>& order, const std::vector<Clue>& clues) -> int {
    std::vector<int> pos(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) pos[size_t(order[size_t(i)])] = i;
    for (size_t c = 0; c < clues.size(); ++c)
      if (pos[size_t(clues[c].more)] > pos[size_t(clues[c].less)]) return int(c);
    return -1;
  };
  auto answers = [&](const std::vector<Clue>& clues) {
    std::set<int> out;
    std::vector<int> order(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) order[size_t(i)] = i;
    do {
      if (fits(order, clues) < 0) out.insert(order[size_t(asked)]);
    } while (std::next_permutation(order.begin(), order.end()));
    return out;
  };
  std::vector<Clue> clues;
  for (const Clue& c : pairs) {  // add clues until the answer is forced
    clues.push_back(c);
    if (answers(clues).size() == 1) break;
  }
  const int answer = *answers(clues).begin();

  EvalItem item;
  item.check = CheckKind::kChoice;
  item.choices = names;
  item.answer = letter(size_t(answer));
  item.question = join_and(names) + " are compared.\n";
  for (size_t c = 0; c < clues.size(); ++c)
    item.question += std::to_string(c + 1) + ". " + clues[c].text + "\n";
  const std::string who = rank_name(scale, asked, n);
  item.question +=
      "Who is " + who + "?\n" + options_text(item.choices) + final_instruction("letter");

  std::string& s = item.solution;
  s = "Try every order of the " + std::to_string(n) + " people, listed from " + scale.most +
      " to " + scale.least + ", and keep the orders that fit all the clues.\n";
  std::vector<int> order(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) order[size_t(i)] = i;
  std::vector<std::string> fitting;
  do {
    std::vector<std::string> parts;
    for (int p : order) parts.push_back(names[size_t(p)]);
    std::string line;
    for (const std::string& p : parts) line += (line.empty() ? "" : ", ") + p;
    const int broken = fits(order, clues);
    if (broken < 0) {
      s += line + ": fits every clue.\n";
      fitting.push_back(line);
    } else {
      s += line + ": breaks clue " + std::to_string(broken + 1) + ": " +
           clues[size_t(broken)].text + "\n";
    }
  } while (std::next_permutation(order.begin(), order.end()));
  s += fitting.size() == 1 ? "Only one order fits, and in it " : "In every order that fits, ";
  s += names[size_t(answer)] + " is " + who + ". " + names[size_t(answer)] + " is option " +
       item.answer + ".\nAnswer: " + item.answer;
  return item;
}

// Knights always tell the truth, knaves always lie. Bit p of an assignment: person p is a knight.
enum StatementKind {
  kIsKnight,
  kIsKnave,
  kBothKnights,
  kSameKind,
  kDifferentKinds,
  kAtLeastOneKnight,
  kExactlyOneOfUs,
  kAllOfUsKnaves,
  kSomeOfUsKnave,
  kStatementKinds
};

struct Statement {
  int kind = -1;  // -1: says nothing
  int x = 0, y = 0;
};

bool statement_holds(const Statement& s, unsigned mask, int n) {
  const bool kx = mask >> s.x & 1, ky = mask >> s.y & 1;
  const int knights = __builtin_popcount(mask & ((1u << n) - 1));
  switch (s.kind) {
    case kIsKnight:
      return kx;
    case kIsKnave:
      return !kx;
    case kBothKnights:
      return kx && ky;
    case kSameKind:
      return kx == ky;
    case kDifferentKinds:
      return kx != ky;
    case kAtLeastOneKnight:
      return kx || ky;
    case kExactlyOneOfUs:
      return knights == 1;
    case kAllOfUsKnaves:
      return knights == 0;
    case kSomeOfUsKnave:
      return knights < n;
  }
  return false;
}

std::string statement_text(const Statement& s, int speaker, const std::vector<std::string>& names) {
  const int n = int(names.size());
  const std::string& x = names[size_t(s.x)];
  const bool with_me = s.y == speaker;  // pair statements put the speaker second
  const std::string& y = names[size_t(s.y)];
  const std::string us = n == 2 ? "us" : "the three of us";
  switch (s.kind) {
    case kIsKnight:
      return x + " is a knight.";
    case kIsKnave:
      return x + " is a knave.";
    case kBothKnights:
      return x + (with_me ? " and I" : " and " + y) + " are both knights.";
    case kSameKind:
      return x + (with_me ? " and I" : " and " + y) + " are the same kind.";
    case kDifferentKinds:
      return x + (with_me ? " and I" : " and " + y) + " are different kinds.";
    case kAtLeastOneKnight:
      return "At least one of " + x + (with_me ? " and me" : " and " + y) + " is a knight.";
    case kExactlyOneOfUs:
      return "Exactly one of " + us + " is a knight.";
    case kAllOfUsKnaves:
      return n == 2 ? "We are both knaves." : "All three of us are knaves.";
    case kSomeOfUsKnave:
      return "At least one of " + us + " is a knave.";
  }
  return "";
}

std::string assignment_text(unsigned mask, const std::vector<std::string>& names) {
  std::string out;
  for (size_t p = 0; p < names.size(); ++p)
    out += (p ? ", " : "") + names[p] + ": " + (mask >> p & 1 ? "knight" : "knave");
  return out;
}

EvalItem knights_puzzle(Rng& rng) {
  const int n = int(uniform(rng, 2, 3));
  const std::vector<std::string> names = pick_names(rng, n);
  const unsigned cases = 1u << n;
  std::vector<Statement> says(static_cast<size_t>(n));
  unsigned solution = 0;
  for (;;) {
    bool anyone = false;
    for (int p = 0; p < n; ++p) {
      Statement& s = says[size_t(p)];
      s = Statement();
      if (uniform(rng, 0, 3) == 0) continue;  // silent
      anyone = true;
      s.kind = int(uniform(rng, 0, kStatementKinds - 1));
      if (s.kind == kIsKnight || s.kind == kIsKnave) {  // about someone else
        s.x = int(uniform(rng, 0, n - 2));
        if (s.x >= p) ++s.x;
      } else {  // a pair, possibly with the speaker, who then comes second
        s.x = int(uniform(rng, 0, n - 1));
        s.y = int(uniform(rng, 0, n - 2));
        if (s.y >= s.x) ++s.y;
        if (s.x == p) std::swap(s.x, s.y);
      }
    }
    if (!anyone) continue;
    int consistent = 0;
    for (unsigned mask = 0; mask < cases; ++mask) {
      bool ok = true;
      for (int p = 0; p < n && ok; ++p)
        if (says[size_t(p)].kind >= 0)
          ok = statement_holds(says[size_t(p)], mask, n) == bool(mask >> p & 1);
      if (ok) ++consistent, solution = mask;
    }
    if (consistent == 1) break;
  }

  std::vector<unsigned> options = {solution};
  std::vector<unsigned> wrong;
  for (unsigned mask = 0; mask < cases; ++mask)
    if (mask != solution) wrong.push_back(mask);
  shuffle(rng, wrong);
  for (size_t i = 0; i < 3; ++i) options.push_back(wrong[i]);
  shuffle(rng, options);

  EvalItem item;
  item.check = CheckKind::kChoice;
  for (size_t i = 0; i < options.size(); ++i) {
    item.choices.push_back(assignment_text(options[i], names));
    if (options[i] == solution) item.answer = letter(i);
  }
  item.question =
      "On an island, everyone is either a knight, who always tells the truth, or a knave, who "
      "always lies. You meet " +
      join_and(names) + ".\n";
  for (int p = 0; p < n; ++p)
    if (says[size_t(p)].kind >= 0)
      item.question +=
          names[size_t(p)] + " says: \"" + statement_text(says[size_t(p)], p, names) + "\"\n";
  item.question +=
      "Which of these is true?\n" + options_text(item.choices) + final_instruction("letter");

  std::string& s = item.solution;
  s = "Check every case: a knight's statement must be true and a knave's must be false.\n";
  int number = 0;
  for (unsigned c = cases; c-- > 0;) {  // from all knights to all knaves
    s += "Case " + std::to_string(++number) + ": " + assignment_text(c, names) + ".\n";
    bool ok = true;
    for (int p = 0; p < n && ok; ++p) {
      const Statement& st = says[size_t(p)];
      if (st.kind < 0) continue;
      const bool knight = c >> p & 1, holds = statement_holds(st, c, n);
      ok = holds == knight;
      s += "  " + names[size_t(p)] + " is a " + (knight ? "knight" : "knave") + ", so \"" +
           statement_text(st, p, names) + "\" must be " + (knight ? "true" : "false") + "; it is " +
           (holds ? "true" : "false") + (ok ? ".\n" : ", so this case is impossible.\n");
    }
    if (ok) s += "  Everything fits.\n";
  }
  s += "Only one case fits: " + assignment_text(solution, names) + ". That is option " +
       item.answer + ".\nAnswer: " + item.answer;
  return item;
}

// ---------------------------------------------------------------------------------------------
// Answers

std::optional<double> parse_number(std::string_view in) {
  std::string s = trim(in);
  if (starts_with(s, "=")) s = trim(s.substr(1));
  std::string sign;
  auto take_sign = [&] {
    if (sign.empty() && !s.empty() && (s[0] == '-' || s[0] == '+'))
      sign = s.substr(0, 1), s.erase(0, 1);
  };
  take_sign();
  if (starts_with(s, "$")) s.erase(0, 1);
  take_sign();
  if (s.find(',') != std::string::npos) {  // thousands separators: 1,234,567.5
    const size_t end = std::min(s.find_first_not_of("0123456789,"), s.size());
    const std::string whole = s.substr(0, end);
    const size_t first = whole.find(',');
    if (first == 0 || first > 3) return std::nullopt;
    for (size_t p = first; p != std::string::npos;) {
      const size_t next = whole.find(',', p + 1);
      if ((next == std::string::npos ? whole.size() : next) - p - 1 != 3) return std::nullopt;
      p = next;
    }
    std::string digits;
    for (char c : whole)
      if (c != ',') digits += c;
    s = digits + s.substr(end);
  }
  // [digits][.digits][e[+-]digits], with a digit in the mantissa: no "inf", "nan" or hex.
  size_t i = 0, mantissa = 0;
  while (i < s.size() && is_digit(s[i])) ++i, ++mantissa;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && is_digit(s[i])) ++i, ++mantissa;
  }
  if (mantissa == 0) return std::nullopt;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    const size_t digits_from = i;
    while (i < s.size() && is_digit(s[i])) ++i;
    if (i == digits_from) return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;
  const double v = std::strtod((sign + s).c_str(), nullptr);
  if (!std::isfinite(v)) return std::nullopt;
  return v;
}

// The option `s` names: "B", "b", "B)", "(B)", "B." or "B: <text>", or the option's own text.
int choice_index(const EvalItem& item, const std::string& given) {
  const std::string t = trim(given);
  const size_t n = item.choices.size();
  const bool paren = starts_with(t, "(");
  const size_t p = paren ? 1 : 0;
  if (p < t.size() && std::isalpha(static_cast<unsigned char>(t[p]))) {
    const size_t idx = size_t(std::toupper(static_cast<unsigned char>(t[p])) - 'A');
    size_t q = p + 1;
    bool marked = false;  // a closing mark after the letter
    if (q < t.size() && (t[q] == ')' || (!paren && (t[q] == '.' || t[q] == ':'))))
      ++q, marked = true;
    if (idx < n && (!paren || (marked && t[q - 1] == ')'))) {
      const std::string rest = trim(std::string_view(t).substr(q));
      if (rest.empty()) return int(idx);
      if (marked && fold(rest) == fold(item.choices[idx])) return int(idx);
    }
  }
  for (size_t i = 0; i < n; ++i)
    if (fold(t) == fold(item.choices[i])) return int(i);
  return -1;
}

// Text after the last marker on a line ("" when the line has none; *found tells them apart).
std::string answer_on_line(const std::string& line, bool* found) {
  std::string lower = line;
  for (char& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
  *found = true;
  const size_t boxed = lower.rfind("\\boxed{");
  if (boxed != std::string::npos) {
    const size_t from = boxed + 7;
    int depth = 1;
    for (size_t i = from; i < line.size(); ++i) {
      if (line[i] == '{') ++depth;
      if (line[i] == '}' && --depth == 0) return line.substr(from, i - from);
    }
    return line.substr(from);
  }
  for (const char* marker : {"answer:", "answer is"}) {
    const size_t at = lower.rfind(marker);
    if (at == std::string::npos) continue;
    std::string rest = trim(std::string_view(line).substr(at + std::string_view(marker).size()));
    if (marker[6] == ' ' && starts_with(rest, ":")) rest.erase(0, 1);
    return rest;
  }
  *found = false;
  return "";
}

std::string clean_answer(std::string s) {
  for (;;) {
    const std::string before = s;
    s = trim(s);
    if (starts_with(s, "**")) s.erase(0, 2);
    if (ends_with(s, "**")) s.erase(s.size() - 2);
    for (const char wrap : {'`', '$'}) {
      if (s.size() >= 2 && s.front() == wrap && s.back() == wrap) s = s.substr(1, s.size() - 2);
    }
    if (ends_with(s, ".")) s.pop_back();
    if (s == before) return s;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------

std::optional<int64_t> evaluate_expression(const std::string& text,
                                           std::vector<int64_t>* literals) {
  std::optional<Expr> e = ExprParser(text).parse();
  if (!e) return std::nullopt;
  const std::optional<int64_t> v = evaluate(*e);
  if (v && literals) {
    literals->clear();
    for (const ExprNode& n : e->nodes)  // literals are created left to right
      if (!n.op) literals->push_back(n.value);
  }
  return v;
}

std::string solve_countdown(const std::vector<int>& numbers, int target, std::string* trace) {
  return solve_countdown(numbers, target, trace, TraceStyle());
}

std::string solve_countdown(const std::vector<int>& numbers, int target, std::string* trace,
                            const TraceStyle& style) {
  std::vector<Term> terms;
  std::vector<std::string> shown;
  for (int x : numbers) {
    if (x <= 0) fail("countdown numbers must be positive, got ", x);
    terms.push_back({x, std::to_string(x), false});
    shown.push_back(std::to_string(x));
  }
  StyleDraws draws(style);
  if (trace) {
    *trace = "Numbers: " + join_and(shown) + ". Target: " + std::to_string(target) + ".\n";
    if (draws.keep_optional())
      *trace +=
          "Combine two numbers at a time (larger first, no negative or zero results, exact "
          "division only) until the target appears.\n";
  }
  CountdownSolver solver(target, trace, draws);
  solver.prune_dead_ends = trace && style.optional_dead_ends && style.verbosity < 1 &&
                           !solve_countdown(numbers, target).empty();
  const bool found = solver.dfs(std::move(terms), 0);
  solver.finish(found);
  return found ? solver.answer_ : "";
}

std::vector<CountdownMove> countdown_first_moves(const std::vector<int>& numbers,
                                                 const TraceStyle& style) {
  std::vector<Term> terms;
  for (int x : numbers) {
    if (x <= 0) fail("countdown numbers must be positive, got ", x);
    terms.push_back({x, std::to_string(x), false});
  }
  // As the solver's root: the same sorting, and the first draws of the same move stream.
  sort_larger_first(terms);
  StyleDraws draws(style);
  CountdownSolver solver(0, nullptr, draws);
  std::vector<CountdownMove> out;
  for (const CountdownSolver::Move& m : solver.moves(terms)) {
    const CountdownMove move{terms[m.i].value, terms[m.j].value, m.result, m.op};
    const bool seen = std::any_of(out.begin(), out.end(), [&](const CountdownMove& o) {
      return o.a == move.a && o.b == move.b && o.op == move.op;
    });
    if (!seen) out.push_back(move);
  }
  return out;
}

std::vector<EvalItem> generate_arithmetic(int count, uint64_t seed, int steps) {
  return generate_arithmetic(count, seed, steps, TraceStyle());
}

std::vector<EvalItem> generate_arithmetic(int count, uint64_t seed, int steps,
                                          const TraceStyle& style, const TaskNumbers& range) {
  if (count < 0) fail("count must not be negative, got ", count);
  if (steps < 1 || steps > 12) fail("arithmetic steps must be 1..12, got ", steps);
  if (range.arithmetic_limit < 200 || range.arithmetic_limit > 1'000'000'000)
    fail("the arithmetic limit must be 200..1e9, got ", range.arithmetic_limit);
  Rng rng(seed);
  ArithmeticBuilder builder(rng, range.arithmetic_limit);
  std::vector<EvalItem> items;
  for (int i = 0; i < count; ++i) {
    const Expr e = builder.build(steps);
    const std::string text = render(e, e.root);
    EvalItem item;
    item.id = item_id("arith", i);
    item.check = CheckKind::kNumeric;
    item.question = "Compute " + text + ". " + final_instruction("number");
    // Each item's draws from its own seed, so the style's draws never depend on the others.
    TraceStyle item_style = style;
    item_style.seed = style.seed + uint64_t(i);
    item.solution = solve_arithmetic(text, &item.answer, item_style);
    if (item.answer != std::to_string(e.nodes[e.root].value))
      fail("internal: arithmetic solver disagrees on ", text);
    items.push_back(std::move(item));
  }
  return items;
}

std::vector<EvalItem> generate_countdown(int count, uint64_t seed, int numbers,
                                         const TaskNumbers& range) {
  if (count < 0) fail("count must not be negative, got ", count);
  if (numbers < 2 || numbers > 6) fail("countdown numbers must be 2..6, got ", numbers);
  // Target ranges that most draws of that many numbers can reach (fewer without the large ones:
  // those are drawn again).
  const int64_t lo = numbers >= 6 ? 100 : 10;
  const int64_t hi = numbers <= 2   ? 60
                     : numbers == 3 ? 120
                     : numbers == 4 ? 250
                     : numbers == 5 ? 500
                                    : 999;
  Rng rng(seed);
  std::vector<EvalItem> items;
  for (int i = 0; i < count; ++i) {
    EvalItem item;
    for (;;) {  // draw until solvable
      std::vector<int> large = {25, 50, 75, 100};
      shuffle(rng, large);
      const int n_large =
          range.countdown_large ? int(uniform(rng, 0, std::min(2, numbers - 1))) : 0;
      std::vector<int> picked(large.begin(), large.begin() + n_large);
      while (int(picked.size()) < numbers) picked.push_back(int(uniform(rng, 1, 10)));
      shuffle(rng, picked);
      const int target = int(uniform(rng, lo, hi));
      if (std::find(picked.begin(), picked.end(), target) != picked.end()) continue;
      std::string trace;
      const std::string answer = solve_countdown(picked, target, &trace);
      if (answer.empty()) continue;
      item.numbers = picked;
      item.target = target;
      item.answer = answer;
      item.solution = trace;
      break;
    }
    item.id = item_id("countdown", i);
    item.check = CheckKind::kCountdown;
    std::vector<std::string> shown;
    for (int x : item.numbers) shown.push_back(std::to_string(x));
    item.question = "Using the numbers " + join_and(shown) +
                    ", each at most once, with + - * / and parentheses, reach " +
                    std::to_string(item.target) +
                    ". Every division must be exact. Write the expression, for example "
                    "\"(2 + 3) * 4\". " +
                    final_instruction("expression");
    items.push_back(std::move(item));
  }
  return items;
}

std::string problem_key(const std::string& question) {
  const std::string lead = "Using the numbers ";
  const size_t listed = question.find(", each at most once");
  const size_t reach = question.find(" reach ");
  if (question.rfind(lead, 0) != 0 || listed == std::string::npos || reach == std::string::npos)
    return question;
  auto integers = [](const std::string& text) {
    std::vector<long> out;
    for (size_t i = 0; i < text.size(); ++i)
      if (std::isdigit(static_cast<unsigned char>(text[i])) &&
          (i == 0 || !std::isdigit(static_cast<unsigned char>(text[i - 1]))))
        out.push_back(std::strtol(text.c_str() + i, nullptr, 10));
    return out;
  };
  std::vector<long> numbers = integers(question.substr(lead.size(), listed - lead.size()));
  const std::vector<long> target = integers(question.substr(reach, question.find('.', reach) - reach));
  std::sort(numbers.begin(), numbers.end());
  std::string key = "countdown";
  for (long x : numbers) key += " " + std::to_string(x);
  return key + " -> " + (target.empty() ? "?" : std::to_string(target[0]));
}

std::vector<EvalItem> generate_logic(int count, uint64_t seed) {
  if (count < 0) fail("count must not be negative, got ", count);
  Rng rng(seed);
  std::vector<EvalItem> items;
  for (int i = 0; i < count; ++i) {
    EvalItem item = uniform(rng, 0, 1) ? ordering_puzzle(rng) : knights_puzzle(rng);
    item.id = item_id("logic", i);
    items.push_back(std::move(item));
  }
  return items;
}

std::vector<EvalItem> generate_task(const std::string& task, int count, uint64_t seed, int size,
                                    const TaskNumbers& range) {
  if (task == "arithmetic")
    return generate_arithmetic(count, seed, size > 0 ? size : 3, TraceStyle(), range);
  if (task == "countdown") return generate_countdown(count, seed, size > 0 ? size : 4, range);
  if (task == "logic") return generate_logic(count, seed);
  fail("unknown task \"", task, "\" (arithmetic, countdown, logic)");
}

std::string extract_final_answer(const std::string& reply) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (;;) {
    const size_t nl = reply.find('\n', start);
    lines.push_back(reply.substr(start, nl == std::string::npos ? std::string::npos : nl - start));
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  for (size_t i = lines.size(); i-- > 0;) {
    bool found = false;
    const std::string a = clean_answer(answer_on_line(lines[i], &found));
    if (!found) continue;
    if (!a.empty()) return a;
    // "Answer:" alone on its line: the answer is on the next non-empty one.
    for (size_t j = i + 1; j < lines.size(); ++j)
      if (!trim(lines[j]).empty()) return clean_answer(lines[j]);
    return "";
  }
  for (size_t i = lines.size(); i-- > 0;)
    if (!trim(lines[i]).empty()) return clean_answer(lines[i]);
  return "";
}

bool check_answer(const EvalItem& item, const std::string& given) {
  switch (item.check) {
    case CheckKind::kExact:
      return fold(given) == fold(item.answer);
    case CheckKind::kNumeric: {
      const std::optional<double> a = parse_number(given), b = parse_number(item.answer);
      if (!a || !b) return false;
      return *a == *b || std::fabs(*a - *b) <= 1e-6 * std::max(std::fabs(*a), std::fabs(*b));
    }
    case CheckKind::kChoice: {
      const int g = choice_index(item, given);
      return g >= 0 && g == choice_index(item, item.answer);
    }
    case CheckKind::kRegex:
      try {
        return regex_search(item.answer, given);
      } catch (const Error&) {
        return false;  // read_eval_items rejects such items; built ones just fail
      }
    case CheckKind::kCountdown:
      return countdown_answer_ok(item, given);
  }
  return false;
}

const char* check_kind_name(CheckKind k) {
  switch (k) {
    case CheckKind::kExact:
      return "exact";
    case CheckKind::kNumeric:
      return "numeric";
    case CheckKind::kChoice:
      return "choice";
    case CheckKind::kRegex:
      return "regex";
    case CheckKind::kCountdown:
      return "countdown";
  }
  return "exact";
}

CheckKind parse_check_kind(const std::string& s) {
  for (CheckKind k : {CheckKind::kExact, CheckKind::kNumeric, CheckKind::kChoice, CheckKind::kRegex,
                      CheckKind::kCountdown})
    if (s == check_kind_name(k)) return k;
  fail("unknown check \"", s, "\" (exact, numeric, choice, regex, countdown)");
}

Json eval_item_to_json(const EvalItem& item) {
  Json::Object o;
  if (!item.id.empty()) o["id"] = item.id;
  o["question"] = item.question;
  o["answer"] = item.answer;
  o["check"] = check_kind_name(item.check);
  if (!item.choices.empty()) {
    Json::Array a;
    for (const std::string& c : item.choices) a.push_back(c);
    o["choices"] = std::move(a);
  }
  if (!item.numbers.empty()) {
    Json::Array a;
    for (int x : item.numbers) a.push_back(x);
    o["numbers"] = std::move(a);
  }
  if (item.check == CheckKind::kCountdown || !item.numbers.empty()) o["target"] = item.target;
  if (!item.solution.empty()) o["solution"] = item.solution;
  return Json(std::move(o));
}

EvalItem eval_item_from_json(const Json& j) {
  if (!j.is_object()) fail("expected a JSON object");
  auto text = [&](const char* key, bool required) -> std::string {
    const Json* v = j.find(key);
    if (!v || v->is_null()) {
      if (required) fail("missing \"", key, "\"");
      return "";
    }
    if (v->is_string()) return v->as_string();
    if (v->is_number() && std::string_view(key) == "answer") return v->dump();  // {"answer": 42}
    fail("\"", key, "\" must be a string");
  };
  auto integer = [](const Json& v, const char* what) {
    if (!v.is_integer() || v.as_int() < INT32_MIN || v.as_int() > INT32_MAX)
      fail("\"", what, "\" must hold integers");
    return int(v.as_int());
  };
  EvalItem item;
  item.id = text("id", false);
  item.question = text("question", true);
  item.answer = text("answer", true);
  if (const Json* c = j.find("check"); c && !c->is_null()) {
    if (!c->is_string()) fail("\"check\" must be a string");
    item.check = parse_check_kind(c->as_string());
  }
  if (const Json* c = j.find("choices"); c && !c->is_null()) {
    if (!c->is_array()) fail("\"choices\" must be an array of strings");
    for (const Json& x : c->as_array()) {
      if (!x.is_string()) fail("\"choices\" must be an array of strings");
      item.choices.push_back(x.as_string());
    }
  }
  if (const Json* c = j.find("numbers"); c && !c->is_null()) {
    if (!c->is_array()) fail("\"numbers\" must be an array of integers");
    for (const Json& x : c->as_array()) item.numbers.push_back(integer(x, "numbers"));
  }
  const Json* target = j.find("target");
  if (target && !target->is_null()) item.target = integer(*target, "target");
  item.solution = text("solution", false);

  switch (item.check) {
    case CheckKind::kExact:
      break;
    case CheckKind::kNumeric:
      if (!parse_number(item.answer)) fail("answer \"", item.answer, "\" is not a number");
      break;
    case CheckKind::kChoice:
      if (item.choices.empty()) fail("a choice item needs \"choices\"");
      if (choice_index(item, item.answer) < 0)
        fail("answer \"", item.answer, "\" is not one of the ", item.choices.size(), " choices");
      break;
    case CheckKind::kRegex:
      regex_search(item.answer, "");  // throws for a pattern that does not compile
      break;
    case CheckKind::kCountdown:
      if (item.numbers.empty()) fail("a countdown item needs \"numbers\"");
      if (!target || target->is_null()) fail("a countdown item needs \"target\"");
      if (!countdown_answer_ok(item, item.answer))
        fail("answer \"", item.answer, "\" does not reach ", item.target, " with the numbers");
      break;
  }
  return item;
}

std::vector<EvalItem> read_eval_items(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot open ", path);
  std::vector<EvalItem> items;
  std::set<std::string> ids;
  std::string line;
  for (int number = 1; std::getline(f, line); ++number) {
    if (trim(line).empty()) continue;
    try {
      EvalItem item = eval_item_from_json(Json::parse(line));
      if (item.id.empty()) item.id = "line-" + std::to_string(number);
      if (!ids.insert(item.id).second) fail("duplicate id \"", item.id, "\"");
      items.push_back(std::move(item));
    } catch (const Error& e) {
      fail(path, ":", number, ": ", e.what());
    }
  }
  return items;
}

void write_eval_items(const std::string& path, const std::vector<EvalItem>& items) {
  std::string out;
  for (const EvalItem& item : items) {
    eval_item_to_json(item).dump_to(out);
    out += '\n';
  }
  std::ofstream f(path, std::ios::binary);
  if (!f || !(f << out) || !f.flush()) fail("cannot write ", path);
}

}  // namespace muse
