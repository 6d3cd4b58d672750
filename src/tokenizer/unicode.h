// UTF-8 helpers and the regex splitting that pre-tokenizers use. Unicode properties come from
// ICU, so categories (\p{L}, \p{N}, ...) follow the Unicode version ICU ships.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "util/utf8.h"

namespace muse {

// GPT-2's byte-level encoding: every byte maps to one printable code point, so byte strings
// can be stored as text in vocabularies and merges.
const std::string& byte_to_gpt2_char(uint8_t b);
// Inverse; returns false when cp is not one of the 256 byte characters.
bool gpt2_char_to_byte(uint32_t cp, uint8_t* byte);

// Splits text the way tokenizers' pre-tokenizers do: each pattern in turn cuts every piece
// produced by the previous ones into its matches and the gaps between them. Patterns use
// Perl/Oniguruma syntax as in tokenizer.json; `\s` means the Unicode White_Space property
// there, as it does in Rust's and Python's regex engines.
class RegexSplitter {
 public:
  explicit RegexSplitter(const std::vector<std::string>& patterns);
  ~RegexSplitter();
  RegexSplitter(RegexSplitter&&) noexcept;
  RegexSplitter& operator=(RegexSplitter&&) noexcept;

  // Byte ranges of the pieces of text, in order, covering it entirely.
  std::vector<std::string_view> split(std::string_view text) const;

 private:
  struct Compiled;
  std::vector<std::unique_ptr<Compiled>> patterns_;
};

// Whether ICU regex `pattern` (Perl-like syntax) matches anywhere in `text`; a pattern that does
// not compile throws muse::Error. Answer checkers use it.
bool regex_search(std::string_view pattern, std::string_view text);

}  // namespace muse
