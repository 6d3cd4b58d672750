#include "runtime/grammar.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <unordered_map>

#include "util/error.h"

namespace muse {
namespace {

constexpr uint32_t kMaxCodePoint = 0x10FFFF;
constexpr uint32_t kUnbounded = std::numeric_limits<uint32_t>::max();
constexpr size_t kMaxSymbols = size_t(1) << 22;
constexpr int kMaxGroupNesting = 200;
constexpr uint32_t kMaxRepetition = 100000;
constexpr uint32_t kMaxStackDepth = 2048;
constexpr size_t kMaxStacks = 8192;
constexpr size_t kMaxExpansionSteps = size_t(1) << 20;
constexpr size_t kMaxPieceBytes = 4096;

using Ranges = std::vector<std::pair<uint32_t, uint32_t>>;

Ranges normalized(Ranges r) {
  std::sort(r.begin(), r.end());
  Ranges out;
  for (const auto& [lo, hi] : r) {
    if (!out.empty() && lo <= out.back().second + 1) {
      out.back().second = std::max(out.back().second, hi);
    } else {
      out.push_back({lo, hi});
    }
  }
  return out;
}

Ranges complement(const Ranges& r) {
  Ranges out;
  uint32_t next = 0;
  for (const auto& [lo, hi] : r) {
    if (lo > next) out.push_back({next, lo - 1});
    next = hi + 1;
  }
  if (next <= kMaxCodePoint) out.push_back({next, kMaxCodePoint});
  return out;
}

uint64_t mix_hash(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  h ^= h >> 31;
  h *= 0xbf58476d1ce4e5b9ULL;
  return h ^ (h >> 29);
}

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

// A character for an error message, which must stay one printable line.
std::string printable(char c) {
  const unsigned char u = static_cast<unsigned char>(c);
  if (u >= 0x20 && u < 0x7F) return std::string(1, c);
  char buf[8];
  std::snprintf(buf, sizeof buf, "\\x%02X", u);
  return buf;
}

// Generated rules (groups, repetitions) are named "<rule>/<n>", which no user rule can be.
std::string describe_rule(const std::string& name) {
  const size_t slash = name.find('/');
  if (slash == std::string::npos) return "rule '" + name + "'";
  return "a group or repetition in rule '" + name.substr(0, slash) + "'";
}

}  // namespace

bool Grammar::CharClass::contains(uint32_t cp) const {
  if (cp < 128) return (ascii[cp >> 6] >> (cp & 63)) & 1;
  auto it = std::lower_bound(
      ranges.begin(), ranges.end(), cp,
      [](const std::pair<uint32_t, uint32_t>& r, uint32_t v) { return r.second < v; });
  return it != ranges.end() && it->first <= cp;
}

bool Grammar::CharClass::intersects(uint32_t lo, uint32_t hi) const {
  if (lo > hi) return false;
  auto it = std::lower_bound(
      ranges.begin(), ranges.end(), lo,
      [](const std::pair<uint32_t, uint32_t>& r, uint32_t v) { return r.second < v; });
  return it != ranges.end() && it->first <= hi;
}

// Reads GBNF text into rules of symbol sequences, expanding groups and repetitions into
// generated rules, then checks and flattens them into a Grammar.
class GrammarBuilder {
 public:
  explicit GrammarBuilder(std::string_view text) : text_(text) {}

  std::shared_ptr<const Grammar> build(std::string_view root_name) {
    skip_all();
    while (pos_ < text_.size()) {
      if (!is_name_char(text_[pos_])) error("expected a rule name");
      const size_t name_pos = pos_;
      const std::string name = parse_name();
      skip_inline();
      if (text_.substr(pos_, 3) != "::=") error("expected '::=' after the rule name");
      pos_ += 3;
      skip_all();
      std::vector<Seq> alts = parse_alternatives(name, 0);
      if (pos_ < text_.size() && text_[pos_] == ')') error("unmatched ')'");
      const int32_t r = rule_index(name, name_pos);
      if (rules_[r].defined) error_at(name_pos, "rule '", name, "' is defined twice");
      rules_[r].defined = true;
      rules_[r].alts = std::move(alts);
      skip_all();
    }
    for (const Rule& r : rules_) {
      if (!r.defined) error_at(r.first_use, "undefined rule '", r.name, "'");
    }
    auto it = index_.find(std::string(root_name));
    if (it == index_.end()) fail("grammar has no '", root_name, "' rule");
    check_left_recursion();
    return flatten(it->second);
  }

 private:
  using Seq = std::vector<int32_t>;
  struct Rule {
    std::string name;
    std::vector<Seq> alts;
    bool defined = false;
    size_t first_use = 0;
  };

  template <typename... Parts>
  [[noreturn]] void error_at(size_t pos, const Parts&... parts) {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < pos && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    fail("grammar line ", line, ", column ", col, ": ", parts...);
  }
  template <typename... Parts>
  [[noreturn]] void error(const Parts&... parts) {
    error_at(pos_, parts...);
  }

  void skip_inline() {
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == ' ' || c == '\t' || c == '\r') {
        ++pos_;
      } else if (c == '#') {
        while (pos_ < text_.size() && text_[pos_] != '\n') ++pos_;
      } else {
        break;
      }
    }
  }
  void skip_all() {
    for (;;) {
      skip_inline();
      if (pos_ < text_.size() && text_[pos_] == '\n') {
        ++pos_;
      } else {
        return;
      }
    }
  }
  // At a newline in a top-level sequence: the rule goes on only when the next line starts with
  // another alternative.
  bool at_rule_definition() const {
    size_t p = pos_;
    while (p < text_.size() && is_name_char(text_[p])) ++p;
    if (p == pos_) return false;
    while (p < text_.size() && (text_[p] == ' ' || text_[p] == '\t')) ++p;
    return text_.substr(p, 3) == "::=";
  }
  bool rule_continues() {
    const size_t save = pos_;
    skip_all();
    if (pos_ < text_.size() && text_[pos_] == '|') return true;
    pos_ = save;
    return false;
  }

  std::string parse_name() {
    const size_t start = pos_;
    while (pos_ < text_.size() && is_name_char(text_[pos_])) ++pos_;
    return std::string(text_.substr(start, pos_ - start));
  }

  int32_t rule_index(const std::string& name, size_t use_pos) {
    auto [it, inserted] = index_.try_emplace(name, int32_t(rules_.size()));
    if (inserted) {
      rules_.push_back({name, {}, false, use_pos});
    }
    return it->second;
  }
  int32_t new_rule(const std::string& parent) {
    const std::string base = parent.substr(0, parent.find('/'));
    const std::string name = base + "/" + std::to_string(++generated_);
    const int32_t r = rule_index(name, pos_);
    rules_[r].defined = true;
    return r;
  }

  void count_symbols(size_t n) {
    symbol_count_ += n;
    if (symbol_count_ > kMaxSymbols)
      error("grammar too large (more than ", kMaxSymbols, " symbols)");
  }
  int32_t class_symbol(Ranges ranges) {
    ranges = normalized(std::move(ranges));
    auto [it, inserted] = class_index_.try_emplace(ranges, int32_t(classes_.size()));
    if (inserted) {
      Grammar::CharClass cls;
      for (const auto& [lo, hi] : ranges) {
        for (uint32_t c = lo; c <= std::min<uint32_t>(hi, 127); ++c)
          cls.ascii[c >> 6] |= 1ULL << (c & 63);
      }
      cls.ranges = std::move(ranges);
      classes_.push_back(std::move(cls));
    }
    return Grammar::kFirstClass - it->second;
  }

  uint32_t parse_hex(int digits) {
    uint32_t v = 0;
    for (int i = 0; i < digits; ++i) {
      if (pos_ >= text_.size()) error("incomplete escape");
      const char c = text_[pos_];
      uint32_t d;
      if (c >= '0' && c <= '9')
        d = c - '0';
      else if (c >= 'a' && c <= 'f')
        d = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        d = c - 'A' + 10;
      else
        error("expected a hex digit in escape");
      v = v * 16 + d;
      ++pos_;
    }
    if (v > kMaxCodePoint) error("escape beyond U+10FFFF");
    return v;
  }

  // One character of a literal or class: an escape or one UTF-8 encoded code point.
  uint32_t parse_char() {
    const unsigned char c = text_[pos_];
    if (c == '\\') {
      if (++pos_ >= text_.size()) error("incomplete escape");
      const char e = text_[pos_++];
      switch (e) {
        case 'n':
          return '\n';
        case 'r':
          return '\r';
        case 't':
          return '\t';
        case 'f':
          return '\f';
        case 'v':
          return '\v';
        case '0':
          return 0;
        case '\\':
        case '"':
        case '\'':
        case '[':
        case ']':
        case '-':
        case '^':
        case '/':
          return uint32_t(e);
        case 'x':
          return parse_hex(2);
        case 'u':
          return parse_hex(4);
        case 'U':
          return parse_hex(8);
        default:
          --pos_;
          error("unknown escape '\\", printable(e), "'");
      }
    }
    if (c < 0x80) {
      ++pos_;
      return c;
    }
    int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    if (len == 0 || c > 0xF4 || pos_ + len > text_.size()) error("invalid UTF-8");
    uint32_t cp = c & (0x7F >> len);
    for (int i = 1; i < len; ++i) {
      const unsigned char b = text_[pos_ + i];
      if ((b & 0xC0) != 0x80) error("invalid UTF-8");
      cp = (cp << 6) | (b & 0x3F);
    }
    static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > kMaxCodePoint || (cp >= 0xD800 && cp <= 0xDFFF))
      error("invalid UTF-8");
    pos_ += len;
    return cp;
  }

  void parse_literal(Seq& seq) {
    const size_t start = pos_++;
    for (;;) {
      if (pos_ >= text_.size() || text_[pos_] == '\n')
        error_at(start, "unterminated string literal");
      if (text_[pos_] == '"') {
        ++pos_;
        return;
      }
      const uint32_t cp = parse_char();
      count_symbols(1);
      seq.push_back(class_symbol({{cp, cp}}));
    }
  }

  int32_t parse_class() {
    const size_t start = pos_++;
    bool negated = false;
    if (pos_ < text_.size() && text_[pos_] == '^') {
      negated = true;
      ++pos_;
    }
    Ranges ranges;
    for (;;) {
      if (pos_ >= text_.size() || text_[pos_] == '\n')
        error_at(start, "unterminated character class");
      if (text_[pos_] == ']') {
        ++pos_;
        break;
      }
      const uint32_t lo = parse_char();
      uint32_t hi = lo;
      if (pos_ + 1 < text_.size() && text_[pos_] == '-' && text_[pos_ + 1] != ']') {
        ++pos_;
        hi = parse_char();
        if (hi < lo) error("character range is reversed");
      }
      ranges.push_back({lo, hi});
    }
    ranges = normalized(std::move(ranges));
    count_symbols(1);
    return class_symbol(negated ? complement(ranges) : ranges);
  }

  bool parse_count(uint32_t& value) {
    if (pos_ >= text_.size() || text_[pos_] < '0' || text_[pos_] > '9') return false;
    uint64_t v = 0;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      v = v * 10 + uint64_t(text_[pos_++] - '0');
      if (v > kMaxRepetition) error("repetition count above ", kMaxRepetition);
    }
    value = uint32_t(v);
    return true;
  }

  // Replaces seq[from..] by its repetition min..max times (max may be kUnbounded).
  void repeat(const std::string& rule_name, Seq& seq, size_t from, uint32_t min, uint32_t max) {
    const Seq item(seq.begin() + from, seq.end());
    seq.resize(from);
    for (uint32_t i = 0; i < min; ++i) {
      count_symbols(item.size());
      seq.insert(seq.end(), item.begin(), item.end());
    }
    if (max == kUnbounded) {
      // star ::= item star | (empty)
      const int32_t star = new_rule(rule_name);
      Seq loop = item;
      loop.push_back(star);
      count_symbols(loop.size());
      rules_[star].alts = {std::move(loop), {}};
      seq.push_back(star);
    } else if (max > min) {
      // (item (item (item)?)?)?, innermost first
      int32_t inner = -1;
      for (uint32_t i = min; i < max; ++i) {
        const int32_t opt = new_rule(rule_name);
        Seq alt = item;
        if (inner >= 0) alt.push_back(inner);
        count_symbols(alt.size());
        rules_[opt].alts = {std::move(alt), {}};
        inner = opt;
      }
      seq.push_back(inner);
    }
  }

  Seq parse_sequence(const std::string& rule_name, int depth) {
    Seq seq;
    size_t last = std::string::npos;  // where the last element's symbols start
    for (;;) {
      skip_inline();
      if (pos_ >= text_.size()) break;
      const char c = text_[pos_];
      if (c == '\n') {
        if (depth > 0) {
          skip_all();
          continue;
        }
        if (!rule_continues()) break;
        continue;
      }
      if (c == '|' || c == ')') break;
      if (c == '"') {
        last = seq.size();
        parse_literal(seq);
      } else if (c == '[') {
        last = seq.size();
        seq.push_back(parse_class());
      } else if (c == '.') {
        ++pos_;
        last = seq.size();
        count_symbols(1);
        seq.push_back(class_symbol({{0, kMaxCodePoint}}));
      } else if (c == '(') {
        const size_t open = pos_++;
        skip_all();
        std::vector<Seq> alts = parse_alternatives(rule_name, depth + 1);
        if (pos_ >= text_.size() || text_[pos_] != ')') error_at(open, "unclosed '('");
        ++pos_;
        const int32_t group = new_rule(rule_name);
        rules_[group].alts = std::move(alts);
        last = seq.size();
        count_symbols(1);
        seq.push_back(group);
      } else if (is_name_char(c)) {
        if (depth == 0 && at_rule_definition()) break;  // after a trailing '|': empty alternative
        const size_t at = pos_;
        const std::string name = parse_name();
        last = seq.size();
        count_symbols(1);
        seq.push_back(rule_index(name, at));
      } else if (c == '*' || c == '+' || c == '?' || c == '{') {
        if (last == std::string::npos) error("'", c, "' has nothing to repeat");
        uint32_t min = 0, max = kUnbounded;
        ++pos_;
        if (c == '+') {
          min = 1;
        } else if (c == '?') {
          max = 1;
        } else if (c == '{') {
          skip_inline();
          const bool has_min = parse_count(min);
          skip_inline();
          if (pos_ < text_.size() && text_[pos_] == ',') {
            ++pos_;
            skip_inline();
            if (!parse_count(max)) max = kUnbounded;
            skip_inline();
          } else if (has_min) {
            max = min;
          } else {
            error("expected a count in '{...}'");
          }
          if (pos_ >= text_.size() || text_[pos_] != '}') error("expected '}'");
          ++pos_;
          if (max < min) error("repetition maximum below minimum");
        }
        repeat(rule_name, seq, last, min, max);
      } else if (c == '<') {
        error("token references '<...>' are not supported");
      } else {
        error("unexpected character '", printable(c), "'");
      }
    }
    return seq;
  }

  std::vector<Seq> parse_alternatives(const std::string& rule_name, int depth) {
    if (depth > kMaxGroupNesting) error("groups nested too deeply");
    std::vector<Seq> alts;
    alts.push_back(parse_sequence(rule_name, depth));
    while (pos_ < text_.size() && text_[pos_] == '|') {
      ++pos_;
      skip_all();
      alts.push_back(parse_sequence(rule_name, depth));
    }
    return alts;
  }

  // A rule is left-recursive when it can reach itself without consuming a character: through
  // references at the start of an alternative or after rules that can match empty text.
  void check_left_recursion() {
    const size_t n = rules_.size();
    std::vector<uint8_t> nullable(n, 0);
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t r = 0; r < n; ++r) {
        if (nullable[r]) continue;
        for (const Seq& alt : rules_[r].alts) {
          const bool all =
              std::all_of(alt.begin(), alt.end(), [&](int32_t s) { return s >= 0 && nullable[s]; });
          if (all) {
            nullable[r] = 1;
            changed = true;
            break;
          }
        }
      }
    }
    std::vector<std::vector<int32_t>> leftmost(n);
    for (size_t r = 0; r < n; ++r) {
      for (const Seq& alt : rules_[r].alts) {
        for (int32_t s : alt) {
          if (s < 0) break;
          leftmost[r].push_back(s);
          if (!nullable[s]) break;
        }
      }
    }
    // Iterative depth-first search for a cycle; 1 = on the current path, 2 = done.
    std::vector<uint8_t> state(n, 0);
    std::vector<std::pair<int32_t, size_t>> path;
    for (size_t start = 0; start < n; ++start) {
      if (state[start]) continue;
      path.push_back({int32_t(start), 0});
      state[start] = 1;
      while (!path.empty()) {
        auto& [r, next] = path.back();
        if (next == leftmost[r].size()) {
          state[r] = 2;
          path.pop_back();
          continue;
        }
        const int32_t s = leftmost[r][next++];
        if (state[s] == 1) fail("grammar: ", describe_rule(rules_[s].name), " is left-recursive");
        if (state[s] == 0) {
          state[s] = 1;
          path.push_back({s, 0});
        }
      }
    }
  }

  std::shared_ptr<const Grammar> flatten(int32_t root) {
    std::shared_ptr<Grammar> g(new Grammar());
    g->alt_begin_.push_back(0);
    for (Rule& r : rules_) {
      for (const Seq& alt : r.alts) {
        g->alt_starts_.push_back(int32_t(g->syms_.size()));
        g->syms_.insert(g->syms_.end(), alt.begin(), alt.end());
        g->syms_.push_back(Grammar::kEnd);
      }
      g->alt_begin_.push_back(int32_t(g->alt_starts_.size()));
      g->rule_names_.push_back(std::move(r.name));
    }
    g->classes_ = std::move(classes_);
    g->root_ = root;
    return g;
  }

  std::string_view text_;
  size_t pos_ = 0;
  std::vector<Rule> rules_;
  std::unordered_map<std::string, int32_t> index_;
  std::vector<Grammar::CharClass> classes_;
  std::map<Ranges, int32_t> class_index_;
  size_t symbol_count_ = 0;
  int generated_ = 0;
};

std::shared_ptr<const Grammar> Grammar::parse(std::string_view text, std::string_view root) {
  std::shared_ptr<const Grammar> g = GrammarBuilder(text).build(root);
  GrammarMatcher check(g);  // expanding the start state finds runaway ambiguity at load time
  return g;
}

GrammarVocab::GrammarVocab(std::vector<std::string> pieces, const std::vector<int32_t>& eog_ids)
    : pieces_(std::move(pieces)), eog_(pieces_.size(), 0) {
  for (int32_t id : eog_ids) {
    if (id < 0 || size_t(id) >= pieces_.size())
      fail("end-of-generation token ", id, " is not in the vocabulary");
    if (!eog_[id]) eog_ids_.push_back(id);
    eog_[id] = 1;
  }
  std::vector<int32_t> order;
  for (size_t id = 0; id < pieces_.size(); ++id) {
    if (!eog_[id] && !pieces_[id].empty() && pieces_[id].size() <= kMaxPieceBytes)
      order.push_back(int32_t(id));
  }
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return pieces_[a] < pieces_[b] || (pieces_[a] == pieces_[b] && a < b);
  });
  // Breadth-first, so each node's children are appended next to each other. Node i covers
  // order[lo[i]..hi[i]), the tokens sharing its prefix of length depth[i].
  std::vector<uint32_t> lo{0}, hi{uint32_t(order.size())}, depth{0};
  trie_.push_back({0, 0, 0, 0, 0});
  for (size_t i = 0; i < trie_.size(); ++i) {
    uint32_t a = lo[i];
    const uint32_t b = hi[i], d = depth[i];
    trie_[i].first_token = uint32_t(trie_tokens_.size());
    while (a < b && pieces_[order[a]].size() == d) trie_tokens_.push_back(order[a++]);
    trie_[i].token_count = uint32_t(trie_tokens_.size()) - trie_[i].first_token;
    trie_[i].first_child = uint32_t(trie_.size());
    while (a < b) {
      const uint8_t byte = uint8_t(pieces_[order[a]][d]);
      uint32_t e = a;
      while (e < b && uint8_t(pieces_[order[e]][d]) == byte) ++e;
      trie_.push_back({0, 0, 0, 0, byte});
      lo.push_back(a);
      hi.push_back(e);
      depth.push_back(d + 1);
      a = e;
    }
    trie_[i].child_count = uint32_t(trie_.size()) - trie_[i].first_child;
    max_depth_ = std::max(max_depth_, d);
  }
}

GrammarMatcher::GrammarMatcher(std::shared_ptr<const Grammar> grammar)
    : grammar_(std::move(grammar)) {
  reset();
}

void GrammarMatcher::reset() {
  nodes_.clear();
  nodes_.push_back({-1, -1, 0, 0x2545F4914F6CDD1DULL});  // the empty stack
  tops_.clear();
  utf8_ = {};
  const Grammar& g = *grammar_;
  for (const int32_t* a = g.alternatives_begin(g.root()); a != g.alternatives_end(g.root()); ++a) {
    expand(g.symbol(*a) == Grammar::kEnd ? 0 : push(0, *a), tops_);
  }
}

int32_t GrammarMatcher::push(int32_t parent, int32_t pos) const {
  const Node& p = nodes_[parent];
  if (p.depth + 1 > kMaxStackDepth) return -1;  // nesting this deep ends that continuation
  const Node n{pos, parent, p.depth + 1, mix_hash(p.hash, uint64_t(pos))};
  nodes_.push_back(n);
  return int32_t(nodes_.size() - 1);
}

void GrammarMatcher::add_stack(int32_t top, std::vector<int32_t>& out) const {
  const Node& t = nodes_[top];
  for (int32_t o : out) {
    if (o == top) return;
    const Node& n = nodes_[o];
    if (n.hash != t.hash || n.depth != t.depth) continue;
    int32_t a = o, b = top;
    while (a != b && nodes_[a].pos == nodes_[b].pos) {
      a = nodes_[a].parent;
      b = nodes_[b].parent;
    }
    if (a == b) return;
  }
  if (out.size() >= kMaxStacks) {
    fail("grammar is too ambiguous: more than ", kMaxStacks, " parses are open at once");
  }
  out.push_back(top);
}

// Replaces rule references on top of the stack by their alternatives until every stack waits
// for a character (or is empty: the grammar may end there).
void GrammarMatcher::expand(int32_t top, std::vector<int32_t>& out) const {
  const Grammar& g = *grammar_;
  work_.clear();
  work_.push_back(top);
  size_t steps = 0;
  while (!work_.empty()) {
    const int32_t t = work_.back();
    work_.pop_back();
    if (t < 0) continue;
    if (++steps > kMaxExpansionSteps) fail("grammar expands too much (runaway ambiguity)");
    if (t == 0) {
      add_stack(0, out);
      continue;
    }
    const Node n = nodes_[t];
    const int32_t sym = g.symbol(n.pos);
    if (sym <= Grammar::kFirstClass) {
      add_stack(t, out);
      continue;
    }
    const int32_t base =
        g.symbol(n.pos + 1) == Grammar::kEnd ? n.parent : push(n.parent, n.pos + 1);
    if (base < 0) continue;
    const int32_t* begin = g.alternatives_begin(sym);
    for (const int32_t* a = g.alternatives_end(sym); a != begin;) {
      --a;
      work_.push_back(g.symbol(*a) == Grammar::kEnd ? base : push(base, *a));
    }
  }
}

void GrammarMatcher::advance(const std::vector<int32_t>& tops, uint32_t cp,
                             std::vector<int32_t>& out) const {
  const Grammar& g = *grammar_;
  out.clear();
  for (int32_t t : tops) {
    if (t == 0) continue;
    const Node n = nodes_[t];
    if (!g.char_class(g.symbol(n.pos)).contains(cp)) continue;
    expand(g.symbol(n.pos + 1) == Grammar::kEnd ? n.parent : push(n.parent, n.pos + 1), out);
  }
}

GrammarMatcher::Step GrammarMatcher::step_utf8(Utf8State& u, uint8_t byte, uint32_t& cp) {
  if (u.remaining == 0) {
    if (byte < 0x80) {
      cp = byte;
      return Step::kCodePoint;
    }
    if (byte >= 0xC2 && byte <= 0xDF)
      u = {uint32_t(byte & 0x1F), 1, 2};
    else if (byte >= 0xE0 && byte <= 0xEF)
      u = {uint32_t(byte & 0x0F), 2, 3};
    else if (byte >= 0xF0 && byte <= 0xF4)
      u = {uint32_t(byte & 0x07), 3, 4};
    else
      return Step::kReject;
    return Step::kPartial;
  }
  if ((byte & 0xC0) != 0x80) return Step::kReject;
  u.value = (u.value << 6) | (byte & 0x3F);
  if (--u.remaining > 0) return Step::kPartial;
  static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  cp = u.value;
  const uint8_t length = u.length;
  u = {};
  if (cp < kMin[length] || cp > kMaxCodePoint || (cp >= 0xD800 && cp <= 0xDFFF))
    return Step::kReject;
  return Step::kCodePoint;
}

// Whether some stack accepts a code point that the partial UTF-8 sequence can still become.
bool GrammarMatcher::partial_possible(const std::vector<int32_t>& tops, const Utf8State& u) const {
  static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  const unsigned shift = 6 * u.remaining;
  const uint32_t lo = std::max(u.value << shift, kMin[u.length]);
  const uint32_t hi = std::min((u.value << shift) | ((1u << shift) - 1), kMaxCodePoint);
  const Grammar& g = *grammar_;
  for (int32_t t : tops) {
    if (t == 0) continue;
    const Grammar::CharClass& cls = g.char_class(g.symbol(nodes_[t].pos));
    if (cls.intersects(lo, std::min<uint32_t>(hi, 0xD7FF)) ||
        cls.intersects(std::max<uint32_t>(lo, 0xE000), hi)) {
      return true;
    }
  }
  return false;
}

bool GrammarMatcher::walk_bytes(std::string_view bytes, std::vector<int32_t>& tops,
                                Utf8State& u) const {
  std::vector<int32_t> next;
  for (char c : bytes) {
    uint32_t cp = 0;
    const Step step = step_utf8(u, uint8_t(c), cp);
    if (step == Step::kReject) return false;
    if (step == Step::kPartial) {
      if (!partial_possible(tops, u)) return false;
      continue;
    }
    advance(tops, cp, next);
    if (next.empty()) return false;
    tops.swap(next);
  }
  return true;
}

bool GrammarMatcher::can_accept(std::string_view bytes) const {
  const size_t mark = nodes_.size();
  std::vector<int32_t> tops = tops_;
  Utf8State u = utf8_;
  const bool ok = walk_bytes(bytes, tops, u);
  nodes_.resize(mark);
  return ok;
}

void GrammarMatcher::accept(std::string_view bytes) {
  const size_t mark = nodes_.size();
  std::vector<int32_t> tops = tops_;
  Utf8State u = utf8_;
  if (!walk_bytes(bytes, tops, u)) {
    nodes_.resize(mark);
    fail("the grammar does not allow this text here");
  }
  tops_.swap(tops);
  utf8_ = u;
  compact();
}

bool GrammarMatcher::can_end() const {
  return utf8_.remaining == 0 && std::find(tops_.begin(), tops_.end(), 0) != tops_.end();
}

bool GrammarMatcher::can_accept_token(const GrammarVocab& vocab, int32_t id) const {
  if (id < 0 || id >= vocab.size()) return false;
  if (vocab.is_eog(id)) return can_end();
  const std::string& piece = vocab.piece(id);
  return !piece.empty() && can_accept(piece);
}

void GrammarMatcher::accept_token(const GrammarVocab& vocab, int32_t id) {
  if (id < 0 || id >= vocab.size()) fail("token ", id, " is outside the vocabulary");
  if (vocab.is_eog(id)) {
    if (!can_end()) fail("the grammar does not allow ending here");
    return;
  }
  if (vocab.piece(id).empty()) fail("the grammar does not allow control token ", id);
  accept(vocab.piece(id));
}

void GrammarMatcher::clear_loop_cache(size_t slot) const {
  if (++loop_generation_[slot] == 0) {  // wrapped: really clear
    loop_cache_[slot].fill({0, 0, LoopState::kUnknown});
    loop_generation_[slot] = 1;
  }
}

bool GrammarMatcher::same_stacks(const std::vector<int32_t>& a,
                                 const std::vector<int32_t>& b) const {
  if (a.size() != b.size()) return false;
  std::vector<int32_t> probe;
  for (int32_t t : a) {
    probe = b;
    add_stack(t, probe);  // adds nothing when b already holds an equal stack
    if (probe.size() != b.size()) return false;
  }
  return true;
}

// Walks the token trie depth-first together with the grammar stacks: a byte that the grammar
// rejects prunes every token below it. Inside strings, comments and the like most characters
// lead back to the very same stacks; the walk remembers which ASCII characters do (per stack
// set, in loop_cache_[slot]) and then skips the stack work for them.
void GrammarMatcher::walk_trie(const GrammarVocab& vocab, uint32_t node, size_t level,
                               const Utf8State& u, const std::vector<int32_t>& tops, size_t slot,
                               std::vector<uint8_t>& allowed) const {
  const std::vector<GrammarVocab::TrieNode>& trie = vocab.trie();
  const std::vector<int32_t>& token_ids = vocab.token_ids();
  const uint32_t end = trie[node].first_child + trie[node].child_count;
  for (uint32_t c = trie[node].first_child; c < end; ++c) {
    const GrammarVocab::TrieNode& child = trie[c];
    Utf8State cu = u;
    uint32_t cp = 0;
    const Step step = step_utf8(cu, child.byte, cp);
    if (step == Step::kReject) continue;
    const size_t mark = nodes_.size();
    const std::vector<int32_t>* next = &tops;
    size_t next_slot = slot;
    if (step == Step::kCodePoint) {
      LoopEntry& known = loop_cache_[slot][cp % kLoopCacheSize];
      if (known.cp != cp || known.generation != loop_generation_[slot]) {
        known = {cp, loop_generation_[slot], LoopState::kUnknown};
      }
      if (known.state == LoopState::kDead) continue;
      if (known.state != LoopState::kSame) {
        std::vector<int32_t>& out = level_tops_[level];
        advance(tops, cp, out);
        clear_loop_cache(level + 1);
        if (out.empty()) {
          known.state = LoopState::kDead;
          nodes_.resize(mark);
          continue;
        }
        if (known.state == LoopState::kUnknown) {
          known.state = same_stacks(out, tops) ? LoopState::kSame : LoopState::kOther;
        }
        if (known.state == LoopState::kSame) {
          nodes_.resize(mark);
        } else {
          next = &out;
          next_slot = level + 1;
        }
      }
    } else if (!partial_possible(tops, cu)) {
      continue;
    }
    for (uint32_t i = 0; i < child.token_count; ++i) allowed[token_ids[child.first_token + i]] = 1;
    if (child.child_count) walk_trie(vocab, c, level + 1, cu, *next, next_slot, allowed);
    nodes_.resize(mark);
  }
}

void GrammarMatcher::allowed_tokens(const GrammarVocab& vocab,
                                    std::vector<uint8_t>& allowed) const {
  allowed.assign(vocab.size(), 0);
  if (can_end()) {
    for (int32_t id : vocab.eog_ids()) allowed[id] = 1;
  }
  // Slot 0 of the loop cache belongs to the accepted stacks, slot k + 1 to level_tops_[k].
  if (level_tops_.size() < vocab.max_depth() + 1) {
    level_tops_.resize(vocab.max_depth() + 1);
    loop_cache_.resize(vocab.max_depth() + 2);
    loop_generation_.resize(vocab.max_depth() + 2, 0);
  }
  clear_loop_cache(0);
  const size_t mark = nodes_.size();
  walk_trie(vocab, 0, 0, utf8_, tops_, 0, allowed);
  nodes_.resize(mark);
}

void GrammarMatcher::mask_logits(const GrammarVocab& vocab, float* logits) const {
  allowed_tokens(vocab, mask_scratch_);
  for (int i = 0; i < vocab.size(); ++i) {
    if (!mask_scratch_[i]) logits[i] = -std::numeric_limits<float>::infinity();
  }
}

// Keeps only the nodes the accepted stacks use, so the arena does not grow with the text.
void GrammarMatcher::compact() {
  std::vector<int32_t> remap(nodes_.size(), -1);
  std::vector<Node> kept{nodes_[0]};
  remap[0] = 0;
  std::vector<int32_t> chain;
  for (int32_t& top : tops_) {
    chain.clear();
    for (int32_t t = top; remap[t] < 0; t = nodes_[t].parent) chain.push_back(t);
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
      Node n = nodes_[*it];
      n.parent = remap[n.parent];
      remap[*it] = int32_t(kept.size());
      kept.push_back(n);
    }
    top = remap[top];
  }
  nodes_.swap(kept);
}

}  // namespace muse
