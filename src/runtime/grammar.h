// Constrained decoding with GBNF grammars (llama.cpp's grammar syntax), matched over Unicode code
// points while tokens arrive as bytes.
//
// Syntax: rules `name ::= alternatives`, `|`, grouping `( )`, literals "..." and character
// classes [a-z] [^...] (escapes \n \r \t \\ \" \[ \] \xHH \uHHHH \UHHHHHHHH), `.` for any
// character, repetition `* + ? {m} {m,} {m,n} {,n}`, `#` comments. A rule ends at a newline
// outside parentheses unless the next line starts with `|`.
//
// The matcher keeps every way the text so far can continue as a stack of grammar positions (with
// shared tails), so ambiguous grammars are handled exactly. Left recursion is refused when the
// grammar is loaded; deep nesting and runaway ambiguity stop with a one-line muse::Error.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace muse {

class Grammar {
 public:
  // Parses and checks GBNF text; the start rule is `root`. Throws muse::Error (one line, with
  // line and column for syntax errors) on bad syntax, undefined or missing rules, left recursion.
  static std::shared_ptr<const Grammar> parse(std::string_view text,
                                              std::string_view root = "root");

  int rule_count() const { return int(rule_names_.size()); }

  // Symbol encoding in syms_: >= 0 a rule index, kEnd closes an alternative, <= kFirstClass a
  // character class (index kFirstClass - value).
  static constexpr int32_t kEnd = -1;
  static constexpr int32_t kFirstClass = -2;

  struct CharClass {
    uint64_t ascii[2] = {0, 0};                         // bitmap of code points below 128
    std::vector<std::pair<uint32_t, uint32_t>> ranges;  // sorted, disjoint, inclusive
    bool contains(uint32_t cp) const;
    bool intersects(uint32_t lo, uint32_t hi) const;
  };

  int32_t symbol(int32_t pos) const { return syms_[pos]; }
  const CharClass& char_class(int32_t sym) const { return classes_[kFirstClass - sym]; }
  // Positions where the alternatives of `rule` start.
  const int32_t* alternatives_begin(int32_t rule) const {
    return alt_starts_.data() + alt_begin_[rule];
  }
  const int32_t* alternatives_end(int32_t rule) const {
    return alt_starts_.data() + alt_begin_[rule + 1];
  }
  int32_t root() const { return root_; }
  const std::string& rule_name(int32_t rule) const { return rule_names_[rule]; }

 private:
  friend class GrammarBuilder;
  Grammar() = default;

  std::vector<int32_t> syms_;
  std::vector<int32_t> alt_starts_;
  std::vector<int32_t> alt_begin_;  // per rule, into alt_starts_; one extra at the end
  std::vector<CharClass> classes_;
  std::vector<std::string> rule_names_;
  int32_t root_ = 0;
};

// The byte string of every token of a vocabulary (empty for control tokens, which a grammar never
// allows) and its end-of-generation ids, indexed as a byte trie so that a grammar mask walks each
// shared prefix once. Build it once per model and share it.
class GrammarVocab {
 public:
  GrammarVocab(std::vector<std::string> pieces, const std::vector<int32_t>& eog_ids);

  int size() const { return int(pieces_.size()); }
  const std::string& piece(int32_t id) const { return pieces_[id]; }
  bool is_eog(int32_t id) const { return id >= 0 && id < size() && eog_[id]; }
  const std::vector<int32_t>& eog_ids() const { return eog_ids_; }

  struct TrieNode {
    uint32_t first_child;  // children are contiguous, sorted by byte
    uint32_t child_count;
    uint32_t first_token;  // into token_ids(): tokens whose bytes end at this node
    uint32_t token_count;
    uint8_t byte;  // the byte leading to this node from its parent
  };
  const std::vector<TrieNode>& trie() const { return trie_; }
  const std::vector<int32_t>& token_ids() const { return trie_tokens_; }
  uint32_t max_depth() const { return max_depth_; }

 private:
  std::vector<std::string> pieces_;
  std::vector<uint8_t> eog_;
  std::vector<int32_t> eog_ids_;
  std::vector<TrieNode> trie_;
  std::vector<int32_t> trie_tokens_;
  uint32_t max_depth_ = 0;
};

// Where generation stands in a grammar. Not thread-safe (queries reuse scratch space).
class GrammarMatcher {
 public:
  explicit GrammarMatcher(std::shared_ptr<const Grammar> grammar);

  // Whether the bytes can continue the text so far (they may end inside a UTF-8 sequence).
  bool can_accept(std::string_view bytes) const;
  // Advances over the bytes; throws muse::Error when the grammar does not allow them.
  void accept(std::string_view bytes);
  // Whether the text so far is a complete sentence of the grammar.
  bool can_end() const;

  // Token-level forms: an end-of-generation token is allowed only when can_end(); tokens with
  // empty bytes (control tokens) never are.
  bool can_accept_token(const GrammarVocab& vocab, int32_t id) const;
  void accept_token(const GrammarVocab& vocab, int32_t id);
  // Sets logits[id] = -inf for every token the grammar does not allow next (logits has
  // vocab.size() entries).
  void mask_logits(const GrammarVocab& vocab, float* logits) const;
  // allowed[id] = 1 for every token the grammar allows next, else 0.
  void allowed_tokens(const GrammarVocab& vocab, std::vector<uint8_t>& allowed) const;

  void reset();
  const Grammar& grammar() const { return *grammar_; }

 private:
  struct Node {
    int32_t pos;     // grammar position still to match
    int32_t parent;  // the rest of the stack; 0 is the empty stack
    uint32_t depth;
    uint64_t hash;
  };
  // A UTF-8 sequence cut short by a token boundary.
  struct Utf8State {
    uint32_t value = 0;
    uint8_t remaining = 0;  // continuation bytes still expected
    uint8_t length = 0;     // length of the whole sequence
  };
  enum class Step { kReject, kPartial, kCodePoint };

  static Step step_utf8(Utf8State& u, uint8_t byte, uint32_t& cp);
  int32_t push(int32_t parent, int32_t pos) const;
  void add_stack(int32_t top, std::vector<int32_t>& out) const;
  void expand(int32_t top, std::vector<int32_t>& out) const;
  void advance(const std::vector<int32_t>& tops, uint32_t cp, std::vector<int32_t>& out) const;
  bool partial_possible(const std::vector<int32_t>& tops, const Utf8State& u) const;
  bool walk_bytes(std::string_view bytes, std::vector<int32_t>& tops, Utf8State& u) const;
  bool same_stacks(const std::vector<int32_t>& a, const std::vector<int32_t>& b) const;
  void clear_loop_cache(size_t slot) const;
  void walk_trie(const GrammarVocab& vocab, uint32_t node, size_t level, const Utf8State& u,
                 const std::vector<int32_t>& tops, size_t slot,
                 std::vector<uint8_t>& allowed) const;
  void compact();

  std::shared_ptr<const Grammar> grammar_;
  // Stack nodes: the accepted state's, then scratch nodes that queries append and drop again.
  mutable std::vector<Node> nodes_;
  std::vector<int32_t> tops_;  // the accepted state: one entry per live stack
  Utf8State utf8_;
  mutable std::vector<int32_t> work_;
  mutable std::vector<std::vector<int32_t>> level_tops_;
  mutable std::vector<uint8_t> mask_scratch_;
  // What one character does to a set of stacks during a mask walk; direct-mapped by code point.
  enum class LoopState : uint8_t { kUnknown, kSame, kOther, kDead };
  struct LoopEntry {
    uint32_t cp;
    uint32_t generation;  // valid while equal to the slot's generation
    LoopState state;
  };
  static constexpr size_t kLoopCacheSize = 256;
  mutable std::vector<std::array<LoopEntry, kLoopCacheSize>> loop_cache_;
  mutable std::vector<uint32_t> loop_generation_;
};

}  // namespace muse
