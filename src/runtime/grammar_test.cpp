#include "runtime/grammar.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <random>
#include <set>

#include "runtime/json_schema.h"
#include "runtime/sampler.h"
#include "util/error.h"
#include "util/json.h"

namespace muse {
namespace {

std::shared_ptr<const Grammar> G(std::string_view text) { return Grammar::parse(text); }

// Whether the whole text is a sentence of the grammar.
bool matches(const std::shared_ptr<const Grammar>& g, std::string_view text) {
  GrammarMatcher m(g);
  if (!m.can_accept(text)) return false;
  m.accept(text);
  return m.can_end();
}

std::string parse_error(std::string_view text) {
  try {
    Grammar::parse(text);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(GrammarTest, ParseErrorsAreOneLineWithPosition) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"root ::= \"a\"\nfoo = \"b\"", "grammar line 2, column 5: expected '::='"},
      {"root ::= \"abc", "grammar line 1, column 10: unterminated string literal"},
      {"root ::= [a-", "unterminated character class"},
      {"root ::= [z-a]", "character range is reversed"},
      {"root ::= \"\\q\"", "unknown escape '\\q'"},
      {"root ::= \"\\xZ1\"", "expected a hex digit"},
      {"root ::= * \"a\"", "'*' has nothing to repeat"},
      {"root ::= (\"a\" | \"b\"", "grammar line 1, column 10: unclosed '('"},
      {"root ::= \"a\" )", "unmatched ')'"},
      {"root ::= x{3,1}", "repetition maximum below minimum"},
      {"root ::= \"a\"{1000000}", "repetition count above"},
      {"root ::= \"a\" {", "expected a count"},
      {"root ::= foo\n", "grammar line 1, column 10: undefined rule 'foo'"},
      {"foo ::= \"a\"\n", "grammar has no 'root' rule"},
      {"root ::= \"a\"\nroot ::= \"b\"", "grammar line 2, column 1: rule 'root' is defined twice"},
      {"root ::= root \"a\" | \"b\"", "grammar: rule 'root' is left-recursive"},
      {"root ::= a\na ::= b \"x\"\nb ::= c?\nc ::= a", "left-recursive"},
      {"root ::= (\"a\"?)*", "grammar: a group or repetition in rule 'root' is left-recursive"},
      {"root ::= <think>", "token references '<...>' are not supported"},
      {"root ::= \"a\" $", "unexpected character '$'"},
      {"::= \"a\"", "expected a rule name"},
  };
  for (const auto& [text, want] : cases) {
    const std::string got = parse_error(text);
    EXPECT_NE(got.find(want), std::string::npos) << text << "\n  got: " << got;
    EXPECT_EQ(got.find('\n'), std::string::npos) << got;
  }
}

TEST(GrammarTest, MatchesLiteralsClassesAndRepetitions) {
  auto g = G(R"(
# comments are ignored
root ::= greeting " " name ("!" | "?")?   # trailing comment
greeting ::= "hi" | "hello"
name ::= [A-Z] [a-z]*
)");
  EXPECT_TRUE(matches(g, "hi Bob"));
  EXPECT_TRUE(matches(g, "hello Alice!"));
  EXPECT_TRUE(matches(g, "hi X?"));
  EXPECT_FALSE(matches(g, "hi bob"));
  EXPECT_FALSE(matches(g, "hey Bob"));
  EXPECT_FALSE(matches(g, "hi Bob!!"));
  EXPECT_FALSE(matches(g, "hi "));  // a prefix is accepted but not complete
  GrammarMatcher m(g);
  EXPECT_TRUE(m.can_accept("hel"));
  EXPECT_FALSE(m.can_accept("hex"));

  auto counts = G(R"(root ::= "a"{2} "b"{1,3} "c"{2,} "d"{,2} "e"+)");
  EXPECT_TRUE(matches(counts, "aabccde"));
  EXPECT_TRUE(matches(counts, "aabbbcccccddeee"));
  EXPECT_FALSE(matches(counts, "abcce"));
  EXPECT_FALSE(matches(counts, "aabbbbcce"));
  EXPECT_FALSE(matches(counts, "aabce"));
  EXPECT_FALSE(matches(counts, "aabccddde"));
  EXPECT_FALSE(matches(counts, "aabcc"));

  auto group = G(R"(root ::= ("ab" | "c")* "." )");
  EXPECT_TRUE(matches(group, "."));
  EXPECT_TRUE(matches(group, "abcab."));
  EXPECT_FALSE(matches(group, "aab."));
}

TEST(GrammarTest, ClassesEscapesAndAnyCharacter) {
  auto g = G(R"(root ::= [^"\\\x00-\x1F]+ "\t" [\u00e0-\u00ff] . "\"" [\]\[-] "\U0001F600")");
  EXPECT_TRUE(matches(g, "abc\t\xC3\xA9\xE6\x97\xA5\"]\xF0\x9F\x98\x80"));
  EXPECT_TRUE(matches(g, "x\t\xC3\xA0\n\"-\xF0\x9F\x98\x80"));
  EXPECT_FALSE(matches(g, "a\"b\t\xC3\xA0xx\"-\xF0\x9F\x98\x80"));  // quote in the first class
  EXPECT_FALSE(matches(g, "x\tax\"-\xF0\x9F\x98\x80"));             // 'a' below U+00E0
  EXPECT_FALSE(matches(g, "x\t\xC3\xA0x\"a\xF0\x9F\x98\x80"));
  // Literal UTF-8 in the grammar text is one code point per character.
  auto utf8 = G("root ::= \"日本\"+");
  EXPECT_TRUE(matches(utf8, "日本日本"));
  EXPECT_FALSE(matches(utf8, "日"));
}

TEST(GrammarTest, AlternativesMayContinueOnNextLines) {
  auto g = G("root ::= \"a\"\n  | \"b\" \"c\"\nother ::= \"x\"");
  EXPECT_TRUE(matches(g, "a"));
  EXPECT_TRUE(matches(g, "bc"));
  EXPECT_FALSE(matches(g, "b"));
  auto nested = G("root ::= (\n  \"a\" |\n  \"b\"\n) \"c\"");
  EXPECT_TRUE(matches(nested, "bc"));
}

TEST(GrammarTest, PartialUtf8AcrossAccepts) {
  auto g = G(R"(root ::= "é" [a-z] "日"?)");
  GrammarMatcher m(g);
  EXPECT_TRUE(m.can_accept("\xC3"));
  EXPECT_FALSE(m.can_accept("\xC4"));  // U+0100.. cannot become 'é'
  EXPECT_FALSE(m.can_accept("\x80"));  // a stray continuation byte
  m.accept("\xC3");
  EXPECT_FALSE(m.can_end());
  EXPECT_FALSE(m.can_accept("\xAA"));
  m.accept("\xA9x\xE6");
  EXPECT_FALSE(m.can_end());  // inside a UTF-8 sequence
  EXPECT_TRUE(m.can_accept("\x97\xA5"));
  EXPECT_FALSE(m.can_accept("\x97\xA6"));
  m.accept("\x97");
  m.accept("\xA5");
  EXPECT_TRUE(m.can_end());
  EXPECT_THROW(m.accept("x"), Error);
  // Overlong encodings and surrogates are not characters.
  auto any = G("root ::= .*");
  EXPECT_FALSE(GrammarMatcher(any).can_accept("\xC0\xAF"));
  EXPECT_FALSE(GrammarMatcher(any).can_accept("\xE0\x80"));
  EXPECT_FALSE(GrammarMatcher(any).can_accept("\xED\xA0\x80"));
  EXPECT_TRUE(GrammarMatcher(any).can_accept("\xF0\x9F"));
}

TEST(GrammarTest, NullableRulesAndEmptyAlternatives) {
  auto g = G(R"(
root ::= a b c "!"
a ::= "x" |
b ::= ()
c ::= "y"? "z"*
)");
  EXPECT_TRUE(matches(g, "!"));
  EXPECT_TRUE(matches(g, "xyzz!"));
  EXPECT_TRUE(matches(g, "xz!"));
  EXPECT_FALSE(matches(g, "yx!"));
  auto empty = G("root ::= \"\"");
  EXPECT_TRUE(matches(empty, ""));
  EXPECT_FALSE(matches(empty, "a"));
}

TEST(GrammarTest, RightRecursionAndNestingLimit) {
  auto g = G(R"g(root ::= "(" root ")" | "x")g");
  EXPECT_TRUE(matches(g, "((x))"));
  EXPECT_FALSE(matches(g, "((x)"));
  // Unbounded nesting ends at the stack depth limit instead of exhausting memory.
  GrammarMatcher m(g);
  EXPECT_FALSE(m.can_accept(std::string(5000, '(')));
  // A long right-recursive list does not grow the stack.
  auto list = G(R"(root ::= "a" root | "")");
  EXPECT_TRUE(matches(list, std::string(20000, 'a')));
}

TEST(GrammarTest, RunawayAmbiguityIsAnError) {
  // After n a's there are 2^n distinct ways to continue.
  auto g = G(R"(root ::= "a" root "b" | "a" root "c" | "")");
  GrammarMatcher m(g);
  try {
    m.accept(std::string(20, 'a'));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("too ambiguous"), std::string::npos) << e.what();
  }
  // Ambiguity that collapses to the same continuations is fine.
  auto same = G(R"(root ::= (x | x | x)*
x ::= "a" | "a" "a")");
  EXPECT_TRUE(matches(same, std::string(200, 'a')));
}

// A vocabulary with multi-character tokens, tokens spanning rule boundaries, UTF-8 cut inside
// tokens, a control token and an end-of-generation token.
struct SmallVocab {
  std::vector<std::string> pieces = {"a",  "b", "ab", "abc", "c",     "\xC3",  "\xA9", "\xC3\xA9",
                                     "é!", "!", "ba", "",    "<eos>", "\xA9!", "cc",   "a\xC3"};
  static constexpr int32_t kEos = 12;
  GrammarVocab vocab{pieces, {kEos}};
};

std::set<int32_t> allowed_set(const GrammarMatcher& m, const GrammarVocab& v) {
  std::vector<uint8_t> allowed;
  m.allowed_tokens(v, allowed);
  std::set<int32_t> out;
  for (int i = 0; i < v.size(); ++i) {
    if (allowed[i]) out.insert(i);
  }
  return out;
}

TEST(GrammarTest, MaskOnSmallVocabulary) {
  SmallVocab sv;
  auto g = G(R"(root ::= "a" "b"* "c"? "é"? "!"?)");
  GrammarMatcher m(g);
  EXPECT_EQ(allowed_set(m, sv.vocab), (std::set<int32_t>{0, 2, 3, 15}));
  m.accept_token(sv.vocab, 0);  // "a"
  EXPECT_EQ(allowed_set(m, sv.vocab), (std::set<int32_t>{1, 4, 5, 7, 8, 9, 12}));
  m.accept_token(sv.vocab, 5);  // "\xC3": inside 'é'
  EXPECT_EQ(allowed_set(m, sv.vocab), (std::set<int32_t>{6, 13}));
  m.accept_token(sv.vocab, 13);  // "\xA9!"
  EXPECT_EQ(allowed_set(m, sv.vocab), (std::set<int32_t>{12}));
  EXPECT_THROW(m.accept_token(sv.vocab, 11), Error);  // control token
  m.accept_token(sv.vocab, SmallVocab::kEos);

  std::vector<float> logits(sv.pieces.size(), 1.0f);
  GrammarMatcher fresh(g);
  fresh.mask_logits(sv.vocab, logits.data());
  for (int i = 0; i < sv.vocab.size(); ++i) {
    EXPECT_EQ(std::isinf(logits[i]), !fresh.can_accept_token(sv.vocab, i)) << i;
  }
}

// The trie walk must agree with checking every token on its own, in every state reached.
TEST(GrammarTest, MaskAgreesWithTokenByTokenChecks) {
  std::mt19937 rng(7);
  std::vector<std::string> pieces;
  const std::vector<std::string> alphabet = {
      "{", "}", "[", "]", "\"", ":", ",", " ", "\n", "a",    "b",    "1",        "0",    "-", ".",
      "e", "t", "r", "u", "\\", "n", "l", "f", "s",  "\xC3", "\xA9", "\xE6\x97", "\xA5", "é", "日"};
  for (const std::string& s : alphabet) pieces.push_back(s);
  for (int i = 0; i < 1500; ++i) {
    std::string p;
    const int len = 2 + int(rng() % 5);
    for (int j = 0; j < len; ++j) p += alphabet[rng() % alphabet.size()];
    pieces.push_back(p);
  }
  for (const char* p :
       {"true", "false", "null", "\": ", "\", \"", "{\"", "\"}", "\\u00e9", "\\ud83d\\ude00"})
    pieces.push_back(p);
  pieces.push_back("");  // a control token
  const int32_t eos = int32_t(pieces.size());
  pieces.push_back("</s>");
  const GrammarVocab vocab(pieces, {eos});
  const std::vector<std::string> grammars = {
      json_value_grammar(),
      json_schema_to_grammar(Json::parse(R"({"type": "object", "properties": {
          "s": {"type": "string", "maxLength": 5}, "n": {"type": "array", "items": {"type": "number"}}},
          "additionalProperties": false})")),
      R"(root ::= (word | "\"" [^"]* "\"" | [é日]+ "!"?)+ "."?
word ::= [a-f]+ ("\\" [nu])* | "tr" "ue"?)",
  };
  for (int run = 0; run < 9; ++run) {
    GrammarMatcher m(G(grammars[run % grammars.size()]));
    for (int step = 0; step < 40; ++step) {
      std::vector<uint8_t> allowed;
      m.allowed_tokens(vocab, allowed);
      std::vector<int32_t> ok;
      for (int i = 0; i < vocab.size(); ++i) {
        ASSERT_EQ(bool(allowed[i]), m.can_accept_token(vocab, i))
            << "token '" << pieces[i] << "' run " << run << " step " << step;
        if (allowed[i]) ok.push_back(i);
      }
      ASSERT_FALSE(ok.empty());
      const int32_t pick = ok[rng() % ok.size()];
      if (pick == eos) break;
      m.accept_token(vocab, pick);
    }
  }
}

// Random text made of grammar syntax either loads or fails with a one-line muse::Error; what
// loads can be matched against random bytes.
TEST(GrammarTest, RandomGrammarTextNeverCrashes) {
  const std::vector<std::string> parts = {
      "root", " ::= ", "a", "b", "\"", "[",  "]", "^", "-",  "(", ")", "|", "*",        "+", "?",
      "{",    "}",     ",", "1", "3",  "\\", "x", "u", "\n", "#", ".", " ", "\nb ::= ", "é"};
  std::mt19937 rng(11);
  int loaded = 0;
  for (int i = 0; i < 4000; ++i) {
    std::string text = "root ::= ";
    const int n = 1 + int(rng() % 25);
    for (int j = 0; j < n; ++j) text += parts[rng() % parts.size()];
    std::shared_ptr<const Grammar> g;
    try {
      g = Grammar::parse(text);
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << text;
      continue;
    }
    ++loaded;
    GrammarMatcher m(g);
    std::string bytes;
    for (int j = 0; j < 8; ++j) bytes += char(rng() % 4 == 0 ? rng() % 256 : "abx\"1-"[rng() % 6]);
    for (size_t len = 0; len <= bytes.size(); ++len) {
      try {
        if (m.can_accept(bytes.substr(0, len))) m.accept(bytes.substr(0, len));
      } catch (const Error&) {
      }
    }
  }
  EXPECT_GT(loaded, 100);
  // Byte flips in a real grammar.
  const std::string json = json_value_grammar();
  for (int i = 0; i < 2000; ++i) {
    std::string text = json;
    for (int k = 0; k < 3; ++k) text[rng() % text.size()] = char(rng() % 128);
    try {
      GrammarMatcher m(Grammar::parse(text));
      m.can_accept("{\"a\": [1, \"x\"]}");
    } catch (const Error&) {
    }
  }
}

TEST(GrammarTest, MaskSpeedOnLargeVocabulary) {
  // 150k tokens: printable ASCII words, some with leading spaces or quotes, and UTF-8 ones.
  std::mt19937 rng(3);
  std::vector<std::string> pieces;
  const std::string letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  const std::vector<std::string> utf8 = {"é", "ü", "日", "本", "語", "\xF0\x9F\x98\x80", "ñ"};
  for (int c = 0; c < 256; ++c) pieces.push_back(std::string(1, char(c)));
  while (pieces.size() < 150000) {
    std::string p;
    const unsigned kind = rng() % 10;
    if (kind < 4) p = " ";
    if (kind == 4) p = "\"";
    if (kind == 5) p = "\":";
    const int len = 1 + int(rng() % 8);
    for (int j = 0; j < len; ++j) {
      p += rng() % 12 == 0 ? utf8[rng() % utf8.size()]
                           : std::string(1, letters[rng() % letters.size()]);
    }
    if (kind == 6) p += "\",";
    pieces.push_back(p);
  }
  const GrammarVocab vocab(pieces, {});
  auto g = G(json_object_grammar());
  GrammarMatcher m(g);
  m.accept("{\"key\": \"some text");  // inside a string: nearly every token is allowed
  std::vector<uint8_t> allowed;
  const auto t0 = std::chrono::steady_clock::now();
  m.allowed_tokens(vocab, allowed);
  const double in_string =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  size_t count = 0;
  for (uint8_t a : allowed) count += a;
  EXPECT_GT(count, 100000u);
  GrammarMatcher start(g);
  const auto t1 = std::chrono::steady_clock::now();
  start.allowed_tokens(vocab, allowed);
  const double at_start =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  std::printf("mask over %zu tokens: %.1f ms inside a string, %.1f ms at the start\n",
              pieces.size(), in_string * 1e3, at_start * 1e3);
  EXPECT_LT(in_string, 2.0);  // generous: the machine may be loaded
}

// ---- JSON schema -> grammar ----

bool schema_accepts(const std::string& schema, const std::string& text) {
  return matches(G(json_schema_to_grammar(Json::parse(schema))), text);
}

TEST(JsonSchemaTest, ObjectsWithRequiredAndOptionalProperties) {
  const std::string schema = R"({"type": "object", "properties": {
      "name": {"type": "string"}, "age": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}},
      "required": ["name"], "additionalProperties": false})";
  // Properties appear in the order the schema object iterates them.
  std::vector<std::string> order;
  const Json parsed = Json::parse(schema);
  for (const auto& [k, v] : parsed.at("properties").as_object()) order.push_back(k);
  auto member = [](const std::string& k) {
    if (k == "name") return std::string("\"name\": \"Bo\"");
    if (k == "age") return std::string("\"age\": -12");
    return std::string("\"tags\": [\"x\", \"y\"]");
  };
  std::string all = "{";
  for (size_t i = 0; i < order.size(); ++i) all += (i ? ", " : "") + member(order[i]);
  all += "}";
  EXPECT_TRUE(schema_accepts(schema, all)) << all;
  EXPECT_TRUE(schema_accepts(schema, R"({"name":"x"})"));
  EXPECT_TRUE(schema_accepts(schema, "{\n  \"name\": \"x\"\n}"));
  EXPECT_FALSE(schema_accepts(schema, R"({})"));
  EXPECT_FALSE(schema_accepts(schema, R"({"name": 3})"));
  EXPECT_FALSE(schema_accepts(schema, R"({"name": "x", "other": 1})"));
  EXPECT_FALSE(schema_accepts(schema, R"({"name": "x",})"));
  EXPECT_FALSE(schema_accepts(schema, R"({"name": "x"} {)"));
}

TEST(JsonSchemaTest, AdditionalPropertiesAndGenericValues) {
  const std::string open =
      R"({"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]})";
  EXPECT_TRUE(schema_accepts(open, R"({"a": true, "zz": {"deep": [1, null, "s"]}})"));
  EXPECT_FALSE(schema_accepts(open, R"({"a": 1})"));
  const std::string typed = R"({"type": "object", "additionalProperties": {"type": "number"}})";
  EXPECT_TRUE(schema_accepts(typed, R"({"x": 1.5, "y": -2e10})"));
  EXPECT_TRUE(schema_accepts(typed, R"({})"));
  EXPECT_FALSE(schema_accepts(typed, R"({"x": "1"})"));
  EXPECT_TRUE(schema_accepts("{}", R"([1, {"a": "b"}, true])"));
  EXPECT_TRUE(schema_accepts("true", "\"s\""));
}

TEST(JsonSchemaTest, StringsNumbersAndLiterals) {
  EXPECT_TRUE(schema_accepts(R"({"type": "string", "minLength": 2, "maxLength": 3})", R"("日本")"));
  EXPECT_TRUE(schema_accepts(R"({"type": "string", "maxLength": 3})", R"("a\n\u00e9")"));
  EXPECT_FALSE(schema_accepts(R"({"type": "string", "minLength": 2, "maxLength": 3})", R"("a")"));
  EXPECT_FALSE(schema_accepts(R"({"type": "string", "maxLength": 3})", R"("abcd")"));
  EXPECT_TRUE(schema_accepts(R"({"type": "string"})", R"("\ud83d\ude00 \" \\ \/")"));
  EXPECT_FALSE(schema_accepts(R"({"type": "string"})", R"("\ud83d")"));  // lone surrogate
  EXPECT_FALSE(schema_accepts(R"({"type": "string"})", "\"a\nb\""));     // raw control character
  EXPECT_TRUE(schema_accepts(R"({"type": "integer"})", "-120"));
  EXPECT_FALSE(schema_accepts(R"({"type": "integer"})", "1.5"));
  EXPECT_FALSE(schema_accepts(R"({"type": "integer"})", "012"));
  EXPECT_TRUE(schema_accepts(R"({"type": "number"})", "0.25e-3"));
  EXPECT_TRUE(schema_accepts(R"({"type": ["number", "null"]})", "null"));
  EXPECT_FALSE(schema_accepts(R"({"type": ["number", "null"]})", "true"));
  EXPECT_TRUE(schema_accepts(R"({"enum": ["red", 2, null, {"k": [1]}]})", R"({"k":[1]})"));
  EXPECT_TRUE(schema_accepts(R"({"enum": ["red", 2, null]})", R"("red")"));
  EXPECT_FALSE(schema_accepts(R"({"enum": ["red", 2, null]})", R"("blue")"));
  EXPECT_TRUE(schema_accepts(R"({"const": "a\"b"})", R"("a\"b")"));
  EXPECT_TRUE(schema_accepts(
      R"({"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 1}]})", R"("x")"));
  EXPECT_FALSE(schema_accepts(
      R"({"oneOf": [{"type": "integer"}, {"type": "string", "maxLength": 1}]})", R"("xy")"));
}

TEST(JsonSchemaTest, ArraysWithBounds) {
  const std::string s =
      R"({"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3})";
  EXPECT_TRUE(schema_accepts(s, "[1]"));
  EXPECT_TRUE(schema_accepts(s, "[1, 2, 3]"));
  EXPECT_FALSE(schema_accepts(s, "[]"));
  EXPECT_FALSE(schema_accepts(s, "[1, 2, 3, 4]"));
  EXPECT_TRUE(schema_accepts(R"({"type": "array"})", "[]"));
  EXPECT_TRUE(schema_accepts(R"({"type": "array", "maxItems": 0})", "[ ]"));
  const std::string tuple =
      R"({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": false})";
  EXPECT_TRUE(schema_accepts(tuple, R"(["a", 1])"));
  EXPECT_FALSE(schema_accepts(tuple, R"(["a", 1, 2])"));
  EXPECT_FALSE(schema_accepts(tuple, R"([1, "a"])"));
}

TEST(JsonSchemaTest, ReferencesAndRecursion) {
  const std::string s = R"({
    "$defs": {"node": {"type": "object", "properties": {
        "v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
        "required": ["v"], "additionalProperties": false}},
    "$ref": "#/$defs/node"})";
  const std::string kids_last = R"({"v": 1, "kids": [{"v": 2}, {"v": 3, "kids": []}]})";
  const std::string kids_first = R"({"kids": [{"v": 2}, {"kids": [], "v": 3}], "v": 1})";
  EXPECT_TRUE(schema_accepts(s, kids_last) || schema_accepts(s, kids_first));
  EXPECT_FALSE(schema_accepts(s, R"({"v": 1, "kids": [{"w": 2}]})"));
  const std::string defs = R"({"definitions": {"color": {"enum": ["r", "g"]}},
      "type": "object", "properties": {"c": {"$ref": "#/definitions/color"}}, "required": ["c"],
      "additionalProperties": false})";
  EXPECT_TRUE(schema_accepts(defs, R"({"c": "g"})"));
  EXPECT_FALSE(schema_accepts(defs, R"({"c": "b"})"));
  const std::string all_of =
      R"({"allOf": [{"properties": {"a": {"type": "integer"}}, "required": ["a"]},
      {"properties": {"b": {"type": "string"}}, "required": ["b"]}], "additionalProperties": false})";
  EXPECT_TRUE(schema_accepts(all_of, R"({"a": 1, "b": "x"})"));
  EXPECT_FALSE(schema_accepts(all_of, R"({"a": 1})"));
}

TEST(JsonSchemaTest, UnsupportedSchemasAreOneLineErrors) {
  for (const char* s : {R"({"type": "string", "pattern": "^a+$"})", R"({"$ref": "http://x/y"})",
                        R"({"$ref": "#/$defs/missing"})", R"({"type": "frob"})", "false",
                        R"({"type": "array", "minItems": 3, "maxItems": 1})", R"({"enum": []})",
                        R"({"not": {}})", R"({"type": "string", "maxLength": -1})"}) {
    try {
      json_schema_to_grammar(Json::parse(s));
      ADD_FAILURE() << "accepted " << s;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
      EXPECT_NE(std::string(e.what()).find("JSON schema"), std::string::npos) << e.what();
    }
  }
  // A schema that only refers to itself is left-recursive: the grammar says so on load.
  EXPECT_THROW(
      G(json_schema_to_grammar(Json::parse(R"({"anyOf": [{"$ref": "#"}, {"type": "null"}]})"))),
      Error);
}

TEST(JsonSchemaTest, BuiltInJsonGrammars) {
  auto obj = G(json_object_grammar());
  EXPECT_TRUE(matches(obj, R"({"a": [1, 2.5e3, {"b": null}], "c": "\u00e9", "d": false})"));
  EXPECT_TRUE(matches(obj, "{}"));
  EXPECT_FALSE(matches(obj, "[]"));
  EXPECT_FALSE(matches(obj, R"({"a": 01})"));
  EXPECT_FALSE(matches(obj, R"({"a" 1})"));
  auto value = G(json_value_grammar());
  EXPECT_TRUE(matches(value, "[]"));
  EXPECT_TRUE(matches(value, "\"x\"\n"));
  EXPECT_FALSE(matches(value, "tru"));
}

// ---- sampling with a grammar ----

size_t utf8_length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// A "model" that returns random logits over a byte-level vocabulary (every single byte plus some
// multi-byte tokens, some ending inside a UTF-8 sequence); the grammar alone keeps its output
// valid.
TEST(GrammarSamplingTest, RandomLogitsFollowAJsonSchema) {
  std::vector<std::string> pieces;
  for (int c = 0; c < 256; ++c) pieces.push_back(std::string(1, char(c)));
  for (const char* p :
       {"{\"", "\":", "\", \"", "\"}",      "true",   "false",       "null",           "name",
        "age", "é",   "日本",   "\xE6\x97", "\xA5\"", " ",           "\n  ",           "12",
        "0.5", "],",  "[\"",    "\\n",      "\\u00",  "\"tags\": [", "\"kind\": \"b\""})
    pieces.push_back(p);
  pieces.push_back("");
  const int32_t eos = int32_t(pieces.size());
  pieces.push_back("<|end|>");
  auto vocab = std::make_shared<GrammarVocab>(pieces, std::vector<int32_t>{eos});
  const Json schema = Json::parse(R"({
    "type": "object",
    "properties": {
      "name": {"type": "string", "maxLength": 12},
      "age": {"type": "integer"},
      "score": {"type": ["number", "null"]},
      "tags": {"type": "array", "items": {"type": "string", "maxLength": 4}, "maxItems": 3},
      "kind": {"enum": ["a", "b", 3]},
      "ok": {"type": "boolean"}
    },
    "required": ["name", "age", "tags", "kind"],
    "additionalProperties": false})");
  auto grammar = G(json_schema_to_grammar(schema));
  std::set<std::string> known;
  for (const auto& [k, v] : schema.at("properties").as_object()) known.insert(k);

  for (uint64_t seed = 1; seed <= 25; ++seed) {
    SamplingParams sp;
    sp.temperature = 1.0f;
    sp.top_k = 0;
    sp.top_p = 1.0f;
    sp.min_p = 0.0f;
    sp.seed = seed;
    Sampler sampler(sp);
    sampler.set_grammar(grammar, vocab);
    std::mt19937 model(uint32_t(seed * 7919));
    std::normal_distribution<float> noise(0.0f, 3.0f);
    std::vector<float> logits(pieces.size());
    std::string text;
    bool ended = false;
    for (int step = 0; step < 4000 && !ended; ++step) {
      for (float& l : logits) l = noise(model);
      const int32_t t = sampler.sample(logits.data(), int(logits.size()));
      sampler.accept(t);
      if (t == eos)
        ended = true;
      else
        text += pieces[t];
    }
    ASSERT_TRUE(ended) << "seed " << seed << ": " << text;
    Json doc;
    ASSERT_NO_THROW(doc = Json::parse(text)) << text;
    ASSERT_TRUE(doc.is_object()) << text;
    for (const char* k : {"name", "age", "tags", "kind"})
      ASSERT_TRUE(doc.find(k)) << k << " in " << text;
    for (const auto& [k, v] : doc.as_object()) EXPECT_TRUE(known.count(k)) << k << " in " << text;
    EXPECT_TRUE(doc.at("name").is_string());
    EXPECT_LE(utf8_length(doc.at("name").as_string()), 12u) << text;
    EXPECT_NO_THROW(doc.at("age").as_int()) << text;
    ASSERT_TRUE(doc.at("tags").is_array());
    EXPECT_LE(doc.at("tags").size(), 3u);
    for (const Json& tag : doc.at("tags").as_array()) {
      ASSERT_TRUE(tag.is_string()) << text;
      EXPECT_LE(utf8_length(tag.as_string()), 4u) << text;
    }
    const Json& kind = doc.at("kind");
    EXPECT_TRUE((kind.is_string() && (kind.as_string() == "a" || kind.as_string() == "b")) ||
                (kind.is_number() && kind.as_number() == 3))
        << text;
    if (const Json* s = doc.find("score")) {
      EXPECT_TRUE(s->is_null() || s->is_number()) << text;
    }
    if (const Json* ok = doc.find("ok")) {
      EXPECT_EQ(ok->kind(), Json::Kind::kBool) << text;
    }
  }
}

// However the sampler applies the grammar (checking the best tokens one by one, or masking the
// whole vocabulary), it must draw exactly what sampling the masked logits draws.
TEST(GrammarSamplingTest, SamplingEqualsSamplingMaskedLogits) {
  std::vector<std::string> pieces;
  for (int c = 32; c < 127; ++c) pieces.push_back(std::string(1, char(c)));
  for (const char* p : {"{\"", "\":", "\", \"", "\"}", "true", "false", "null", "12", "0.5", "],"})
    pieces.push_back(p);
  const int32_t eos = int32_t(pieces.size());
  pieces.push_back("");
  auto vocab = std::make_shared<GrammarVocab>(pieces, std::vector<int32_t>{eos});
  auto g = G(json_value_grammar());
  std::vector<SamplingParams> settings(5);
  settings[0].temperature = 0;
  settings[1].top_k = 3;
  settings[2].top_k = 0;
  settings[2].top_p = 0.9f;
  settings[3].top_k = 40;
  settings[3].min_p = 0.1f;
  settings[3].typical_p = 0.8f;
  settings[4].top_k = 1;
  for (size_t i = 0; i < settings.size(); ++i) {
    settings[i].seed = 100 + i;
    Sampler constrained(settings[i]), plain(settings[i]);
    constrained.set_grammar(g, vocab);
    GrammarMatcher reference(g);
    std::mt19937 model{uint32_t(i)};
    std::normal_distribution<float> noise(0.0f, 2.0f);
    std::vector<float> logits(pieces.size()), masked;
    for (int step = 0; step < 60; ++step) {
      for (float& l : logits) l = noise(model);
      masked = logits;
      reference.mask_logits(*vocab, masked.data());
      const int32_t want = plain.sample(masked.data(), int(masked.size()));
      const int32_t got = constrained.sample(logits.data(), int(logits.size()));
      ASSERT_EQ(got, want) << "settings " << i << " step " << step;
      if (got == eos) break;
      constrained.accept(got);
      reference.accept_token(*vocab, got);
    }
  }
}

TEST(GrammarSamplingTest, GreedyWithGrammarIsArgmaxOverAllowedTokens) {
  std::vector<std::string> pieces = {"x", "y", "yes", "no", "n", "o", "</s>"};
  auto vocab = std::make_shared<GrammarVocab>(pieces, std::vector<int32_t>{6});
  auto g = G(R"(root ::= "yes" | "no")");
  SamplingParams sp;
  sp.temperature = 0;
  Sampler s(sp);
  s.set_grammar(g, vocab);
  // "x" is best but not allowed; "yes" beats "n".
  const std::vector<float> logits = {9, 1, 5, 2, 4, 0, 8};
  EXPECT_EQ(s.sample(logits.data(), 7), 2);
  s.accept(2);
  EXPECT_EQ(s.sample(logits.data(), 7), 6);  // only the end is left
  s.reset();
  const std::vector<float> prefer_n = {9, 1, 2, 3, 4, 0, 8};
  EXPECT_EQ(s.sample(prefer_n.data(), 7), 4);
  s.accept(4);
  EXPECT_EQ(s.sample(prefer_n.data(), 7), 5);
  s.accept(5);
  EXPECT_EQ(s.sample(prefer_n.data(), 7), 6);
  // Sampling at a temperature gives the same constraint.
  SamplingParams hot;
  hot.temperature = 1.5f;
  hot.top_k = 0;
  hot.min_p = 0;
  hot.top_p = 1;
  Sampler t(hot);
  t.set_grammar(g, vocab);
  for (int i = 0; i < 50; ++i) {
    const int32_t tok = t.sample(logits.data(), 7);
    EXPECT_TRUE(tok >= 1 && tok <= 4) << tok;  // "y" starts "yes"
  }
}

}  // namespace
}  // namespace muse
