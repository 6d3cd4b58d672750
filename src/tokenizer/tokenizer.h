// Text <-> token ids for the tokenizers GGUF files carry (`tokenizer.ggml.*`), matching
// llama.cpp token for token:
//  - byte-level BPE (`gpt2`) with the pre-tokenizer named by `tokenizer.ggml.pre`,
//  - SentencePiece (`llama`): score-ordered merges with `<0xXX>` byte fallback.
// Control, unknown and user-defined tokens are matched literally in the text before the model's
// own algorithm runs (control ones only when special-token parsing is on).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/unicode.h"

namespace muse {

class GgufFile;

// GGUF's tokenizer.ggml.token_type values.
enum class TokenType : uint8_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

class Tokenizer {
 public:
  enum class Model { kBpe, kSentencePiece };

  // Reads the vocabulary from a model's metadata; a file without one, or with one Muse does
  // not know, fails with a one-line muse::Error.
  static std::unique_ptr<Tokenizer> from_gguf(const GgufFile& file);

  struct EncodeOptions {
    bool add_special = true;    // BOS/EOS as the model's add_bos_token/add_eos_token say
    bool parse_special = true;  // "<|im_start|>" in the text becomes the control token
  };
  std::vector<int32_t> encode(std::string_view text, const EncodeOptions& options) const;
  std::vector<int32_t> encode(std::string_view text) const { return encode(text, {}); }

  // The bytes a token stands for; control tokens give their text (or nothing when
  // render_special is false). Pieces may end inside a UTF-8 character: see StreamDecoder.
  std::string_view piece(int32_t id, bool render_special = true) const;
  // All pieces concatenated, with the model's clean-up rules (as llama.cpp's detokenize).
  std::string decode(const std::vector<int32_t>& ids, bool render_special = true) const;

  int32_t n_vocab() const { return int32_t(tokens_.size()); }
  Model model() const { return model_; }
  const std::string& pre_tokenizer() const { return pre_; }
  int32_t bos() const { return bos_; }  // -1 when the model has none
  int32_t eos() const { return eos_; }
  bool adds_bos() const { return add_bos_; }
  bool adds_eos() const { return add_eos_; }
  // End-of-generation tokens: EOS, EOT and the end-of-turn tokens chat models use.
  bool is_eog(int32_t id) const;
  const std::vector<int32_t>& eog_ids() const { return eog_; }
  TokenType type(int32_t id) const { return tokens_.at(size_t(id)).type; }
  const std::string& text(int32_t id) const { return tokens_.at(size_t(id)).text; }
  int32_t find(std::string_view text) const;  // -1 when no token has exactly this text

 private:
  struct Token {
    std::string text;
    float score = 0;
    TokenType type = TokenType::kNormal;
    bool rstrip = false;  // swallow whitespace after the token (phi-3's added tokens)
  };
  struct Fragment {
    int32_t token;  // -1: raw text
    std::string_view text;
  };

  Tokenizer() = default;
  void load(const GgufFile& file);
  std::vector<Fragment> partition_special(std::string_view text, bool parse_special) const;
  void encode_bpe(std::string_view text, std::vector<int32_t>& out) const;
  void bpe_word(std::string_view word, std::vector<int32_t>& out) const;
  void encode_spm(std::string_view text, std::vector<int32_t>& out) const;
  int32_t byte_token(uint8_t byte) const;
  int bpe_rank(std::string_view left, std::string_view right) const;
  std::string make_piece(int32_t id) const;

  Model model_ = Model::kBpe;
  std::string pre_;
  std::vector<Token> tokens_;
  std::vector<std::string> pieces_;
  std::unordered_map<std::string, int32_t> token_ids_;
  std::unordered_map<std::string, int> merge_ranks_;  // "left\0right" -> rank
  std::vector<int32_t> special_by_length_;             // longest first, for literal matching
  std::vector<int32_t> eog_;
  std::unique_ptr<RegexSplitter> splitter_;
  int32_t bos_ = -1, eos_ = -1, unk_ = -1;
  bool add_bos_ = false, add_eos_ = false;
  bool add_space_prefix_ = false;  // SentencePiece: " " before the first piece of text
  bool ignore_merges_ = false;     // a whole pre-token that is in the vocabulary wins outright
  bool clean_spaces_ = false;      // decode: " ." -> "." etc. (clean_up_tokenization_spaces)
};

// Turns a stream of tokens into text that is always valid UTF-8: bytes of a character split
// across tokens are held back until the character is complete, and bytes that can never form
// one (a model may emit any byte token) become U+FFFD.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool render_special = true)
      : tokenizer_(tokenizer), render_special_(render_special) {}
  std::string push(int32_t id);
  // Whatever is still held back (an unfinished character at the end of the stream).
  std::string flush();

 private:
  const Tokenizer& tokenizer_;
  bool render_special_;
  std::string pending_;
};

// The pre-tokenizer regexes for a `tokenizer.ggml.pre` name; throws for unknown names.
std::vector<std::string> pre_tokenizer_patterns(const std::string& name);

}  // namespace muse
