// Tokenizers against llama.cpp's own test vectors and the reference models' prompts, plus
// hand-built vocabularies that pin each rule (merges order, byte fallback, special tokens,
// BOS/EOS, streaming UTF-8) without the reference data.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/gguf.h"
#include "testing/test_support.h"
#include "util/error.h"
#include "util/json.h"

namespace muse {
namespace {

std::vector<std::string> split(const std::string& s, const std::string& sep) {
  std::vector<std::string> parts;
  size_t pos = 0;
  for (size_t hit; (hit = s.find(sep, pos)) != std::string::npos; pos = hit + sep.size())
    parts.push_back(s.substr(pos, hit - pos));
  parts.push_back(s.substr(pos));
  return parts;
}

std::vector<int32_t> parse_ids(const std::string& line) {
  std::vector<int32_t> ids;
  std::istringstream in(line);
  for (int32_t id; in >> id;) ids.push_back(id);
  return ids;
}

std::string concat_pieces(const Tokenizer& t, const std::vector<int32_t>& ids) {
  StreamDecoder stream(t);
  std::string text;
  for (int32_t id : ids) text += stream.push(id);
  return text + stream.flush();
}

// The GGUF file whose tokenizer produced NAME.gguf.out.
std::string vocab_file(const std::string& dir, const std::string& name) {
  if (name == "tiny-llama3-f32") return dir + "/models/tiny-llama3-q8_0.gguf";
  if (name == "tiny-qwen2-f32") return dir + "/models/tiny-qwen2-f16.gguf";
  return dir + "/vocab/" + name + ".gguf";
}

TEST(TokenizerReference, AgreesWithEveryVocabTestCase) {
  MUSE_REQUIRE_REFERENCE(dir);
  int files = 0, cases = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir + "/vocab")) {
    const std::string path = entry.path().string();
    if (entry.path().extension() != ".inp") continue;
    const std::string name = entry.path().stem().stem().string();  // drop .gguf.inp
    std::vector<std::string> inputs = split(testing::read_file(path), "\n__ggml_vocab_test__\n");
    std::vector<std::string> outputs = split(testing::read_file(path.substr(0, path.size() - 4) + ".out"), "\n");
    // Both files end with a separator: the last piece is empty and not a case.
    inputs.pop_back();
    outputs.pop_back();
    ASSERT_EQ(inputs.size(), outputs.size()) << name;
    const auto file = GgufFile::open(vocab_file(dir, name));
    const auto tok = Tokenizer::from_gguf(*file);
    for (size_t i = 0; i < inputs.size(); ++i) {
      const auto ids = tok->encode(inputs[i], {.add_special = false, .parse_special = false});
      EXPECT_EQ(ids, parse_ids(outputs[i])) << name << " case " << i << ": \"" << inputs[i] << "\"";
      // Byte-level tokenizers lose nothing: the pieces give back the input exactly.
      if (tok->model() == Tokenizer::Model::kBpe) {
        EXPECT_EQ(concat_pieces(*tok, ids), inputs[i]) << name << " case " << i;
      }
      ++cases;
    }
    ++files;
  }
  EXPECT_EQ(files, 9);
  EXPECT_EQ(cases, 9 * 46);
}

TEST(TokenizerReference, AgreesWithTheModelsPromptTokens) {
  MUSE_REQUIRE_REFERENCE(dir);
  int models = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir + "/models")) {
    if (entry.path().extension() != ".gguf") continue;
    const std::string base = entry.path().string();
    const Json ref = Json::parse(testing::read_file(base.substr(0, base.size() - 5) + ".ref.json"));
    const auto file = GgufFile::open(base);
    const auto tok = Tokenizer::from_gguf(*file);
    std::vector<int32_t> expected;
    for (const Json& id : ref.at("tokens").as_array()) expected.push_back(int32_t(id.as_int()));
    EXPECT_EQ(tok->encode(ref.at("prompt").as_string()), expected) << base;
    ++models;
  }
  EXPECT_EQ(models, 5);
}

// ---- Hand-built vocabularies ------------------------------------------------------------------

struct VocabSpec {
  std::string model = "gpt2";
  std::string pre = "gpt-2";
  std::vector<std::string> tokens;
  std::vector<int32_t> types;  // default: normal
  std::vector<float> scores;
  std::vector<std::string> merges;
  int bos = -1, eos = -1;
  int add_bos = -1;  // -1: key absent
};

std::unique_ptr<GgufFile> write_vocab(const VocabSpec& s, std::string& bytes) {
  GgufWriter w;
  w.set_string("tokenizer.ggml.model", s.model);
  if (s.model == "gpt2") w.set_string("tokenizer.ggml.pre", s.pre);
  w.set_string_array("tokenizer.ggml.tokens", s.tokens);
  std::vector<int32_t> types = s.types;
  types.resize(s.tokens.size(), 1);
  w.set_i32_array("tokenizer.ggml.token_type", types);
  if (!s.scores.empty()) w.set_f32_array("tokenizer.ggml.scores", s.scores);
  if (s.model == "gpt2") w.set_string_array("tokenizer.ggml.merges", s.merges);
  if (s.bos >= 0) w.set_u32("tokenizer.ggml.bos_token_id", uint32_t(s.bos));
  if (s.eos >= 0) w.set_u32("tokenizer.ggml.eos_token_id", uint32_t(s.eos));
  if (s.add_bos >= 0) w.set_bool("tokenizer.ggml.add_bos_token", s.add_bos != 0);
  bytes = w.to_bytes();
  return GgufFile::from_memory(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

// A byte-level BPE vocabulary: all 256 byte characters, then merged tokens and specials.
VocabSpec small_bpe() {
  VocabSpec s;
  for (int b = 0; b < 256; ++b) s.tokens.push_back(byte_to_gpt2_char(uint8_t(b)));
  const std::string sp = byte_to_gpt2_char(' ');  // "Ġ"
  // Merge order decides: "l l" before "h e", so "hello" -> he ll o, not hel lo.
  s.merges = {"l l", "h e", "he ll", sp + " w", sp + "w o", "r l", "o r"};
  for (const std::string& m : s.merges) {
    const size_t space = m.find(' ', 1);
    s.tokens.push_back(m.substr(0, space) + m.substr(space + 1));
  }
  s.tokens.push_back("<|bos|>");
  s.tokens.push_back("<|end|>");
  s.tokens.push_back("<tool>");  // user-defined: matched even without special parsing
  s.types.assign(s.tokens.size(), 1);
  s.types[s.tokens.size() - 3] = 3;
  s.types[s.tokens.size() - 2] = 3;
  s.types[s.tokens.size() - 1] = 4;
  s.bos = int(s.tokens.size()) - 3;
  s.eos = int(s.tokens.size()) - 2;
  return s;
}

TEST(Tokenizer, BpeMergesInRankOrder) {
  std::string bytes;
  const auto file = write_vocab(small_bpe(), bytes);
  const auto tok = Tokenizer::from_gguf(*file);
  const std::vector<int32_t> ids = tok->encode("hello world", {.add_special = false});
  std::vector<std::string> texts;
  for (int32_t id : ids) texts.push_back(tok->text(id));
  const std::string sp = byte_to_gpt2_char(' ');
  // "Ġwo" wins over "or" (rank 4 < 6), then "rl" is merged inside "Ġworld".
  EXPECT_EQ(texts, (std::vector<std::string>{"hell", "o", sp + "wo", "rl", "d"}));
  EXPECT_EQ(concat_pieces(*tok, ids), "hello world");
}

TEST(Tokenizer, SpecialTokensAndBosEosRules) {
  VocabSpec spec = small_bpe();
  std::string bytes;
  auto file = write_vocab(spec, bytes);
  auto tok = Tokenizer::from_gguf(*file);
  const int32_t bos = spec.bos, end = spec.eos, tool = spec.bos + 2;
  EXPECT_FALSE(tok->adds_bos());  // gpt-2 pre-tokenizer: no BOS unless the file asks
  EXPECT_TRUE(tok->is_eog(end));  // "<|end|>" ends a turn whatever the ids say
  // Control tokens become one id only when special parsing is on.
  auto ids = tok->encode("a<|end|>b", {.add_special = false, .parse_special = true});
  EXPECT_EQ(ids, (std::vector<int32_t>{'a', end, 'b'}));
  ids = tok->encode("a<|end|>", {.add_special = false, .parse_special = false});
  EXPECT_EQ(ids.size(), 8u);
  // User-defined tokens are matched either way.
  ids = tok->encode("<tool>x", {.add_special = false, .parse_special = false});
  EXPECT_EQ(ids, (std::vector<int32_t>{tool, 'x'}));
  // add_bos_token decides about BOS.
  spec.add_bos = 1;
  file = write_vocab(spec, bytes);
  tok = Tokenizer::from_gguf(*file);
  ids = tok->encode("a");
  EXPECT_EQ(ids, (std::vector<int32_t>{bos, 'a'}));
  EXPECT_EQ(tok->decode(ids), "<|bos|>a");
  EXPECT_EQ(tok->decode(ids, /*render_special=*/false), "a");
}

TEST(Tokenizer, StreamingHoldsBackSplitCharacters) {
  std::string bytes;
  const auto file = write_vocab(small_bpe(), bytes);
  const auto tok = Tokenizer::from_gguf(*file);
  // "é🦙" is 2 + 4 bytes; with byte tokens only, each byte is its own token.
  const std::string text = "\xc3\xa9\xf0\x9f\xa6\x99!";
  const auto ids = tok->encode(text, {.add_special = false});
  ASSERT_EQ(ids.size(), 7u);
  StreamDecoder stream(*tok);
  std::vector<std::string> out;
  for (int32_t id : ids) out.push_back(stream.push(id));
  EXPECT_EQ(out, (std::vector<std::string>{"", "\xc3\xa9", "", "", "", "\xf0\x9f\xa6\x99", "!"}));
  EXPECT_EQ(stream.flush(), "");
  // A stream that ends mid-character gives the rest on flush.
  StreamDecoder cut(*tok);
  EXPECT_EQ(cut.push(ids[2]), "");
  EXPECT_EQ(cut.flush(), "\xef\xbf\xbd");
  // Bytes that cannot start a character are replaced at once, not passed on.
  StreamDecoder bad(*tok);
  EXPECT_EQ(bad.push(ids[3]), "\xef\xbf\xbd");
}

TEST(Tokenizer, SentencePieceMergesByScoreWithByteFallback) {
  VocabSpec s;
  s.model = "llama";
  s.tokens = {"<unk>", "<s>", "</s>"};
  s.types = {2, 3, 3};
  s.scores = {0, 0, 0};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    s.tokens.push_back(name);
    s.types.push_back(6);
    s.scores.push_back(0);
  }
  const std::string sp = "\xe2\x96\x81";
  // "▁ab" scores higher than "▁a", so "▁a" + "b" is not what comes out.
  for (auto [text, score] : std::vector<std::pair<std::string, float>>{
           {sp, -1}, {"a", -2}, {"b", -2}, {"c", -2}, {sp + "a", -5}, {"ab", -3}, {sp + "ab", -4}}) {
    s.tokens.push_back(text);
    s.types.push_back(1);
    s.scores.push_back(score);
  }
  std::string bytes;
  const auto file = write_vocab(s, bytes);
  const auto tok = Tokenizer::from_gguf(*file);
  EXPECT_TRUE(tok->adds_bos());
  const auto ids = tok->encode("ab c\xc3\xa9");
  std::vector<std::string> texts;
  for (int32_t id : ids) texts.push_back(tok->text(id));
  EXPECT_EQ(texts, (std::vector<std::string>{"<s>", sp + "ab", sp, "c", "<0xC3>", "<0xA9>"}));
  EXPECT_EQ(tok->decode(ids, false), "ab c\xc3\xa9");
}

TEST(Tokenizer, BadVocabulariesFailWithOneLine) {
  VocabSpec s = small_bpe();
  std::string bytes;
  s.pre = "no-such-pre";
  auto file = write_vocab(s, bytes);
  EXPECT_THROW(
      {
        try {
          Tokenizer::from_gguf(*file);
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("unknown pre-tokenizer \"no-such-pre\""), std::string::npos);
          throw;
        }
      },
      Error);
  s = small_bpe();
  s.model = "wordpiece-9000";
  file = write_vocab(s, bytes);
  EXPECT_THROW(Tokenizer::from_gguf(*file), Error);
  s = small_bpe();
  s.merges.push_back("nospace");
  file = write_vocab(s, bytes);
  EXPECT_THROW(Tokenizer::from_gguf(*file), Error);
  s = small_bpe();
  EXPECT_THROW(Tokenizer::from_gguf(*write_vocab(s, bytes))->piece(100000), Error);
}

TEST(Tokenizer, EveryNamedPreTokenizerCompiles) {
  for (const char* name : {"default", "gpt-2", "llama-bpe", "qwen2", "qwen35", "deepseek-llm",
                           "deepseek-coder", "deepseek-v3", "starcoder", "falcon", "smollm",
                           "refact", "mpt", "olmo", "tekken", "bloom", "viking", "gpt-4o",
                           "chatglm-bpe", "command-r", "dbrx"}) {
    EXPECT_NO_THROW(RegexSplitter(pre_tokenizer_patterns(name))) << name;
  }
  // Pieces cover the input exactly, including invalid UTF-8.
  const RegexSplitter s(pre_tokenizer_patterns("llama-bpe"));
  const std::string text = "Hello  world's 12345\xff\xfe end\n\n";
  std::string joined;
  for (auto p : s.split(text)) joined += p;
  EXPECT_EQ(joined, text);
}

TEST(Unicode, ValidUtf8HoldsUnfinishedSequencesAndReplacesBadBytes) {
  auto valid = [](std::string_view in, bool final, size_t* consumed = nullptr) {
    std::string out;
    const size_t n = append_valid_utf8(in, out, final);
    if (consumed) *consumed = n;
    return out;
  };
  size_t used;
  EXPECT_EQ(valid("abc", false, &used), "abc");
  EXPECT_EQ(used, 3u);
  EXPECT_EQ(valid("a\xc3", false, &used), "a");  // é not finished yet
  EXPECT_EQ(used, 1u);
  EXPECT_EQ(valid("a\xc3", true), "a\xef\xbf\xbd");  // ...and never will be
  EXPECT_EQ(valid("\xf0\x9f\xa6\x99", false), "\xf0\x9f\xa6\x99");
  EXPECT_EQ(valid("\xa6x", false), "\xef\xbf\xbdx");             // stray continuation byte
  EXPECT_EQ(valid("\xc3x", false), "\xef\xbf\xbdx");             // lead byte cut short
  EXPECT_EQ(valid("\xc0\xaf", false), "\xef\xbf\xbd\xef\xbf\xbd");  // overlong "/"
  EXPECT_EQ(valid("\xed\xa0\x80", false), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // surrogate
}

}  // namespace
}  // namespace muse
