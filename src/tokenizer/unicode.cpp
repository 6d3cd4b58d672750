#include "tokenizer/unicode.h"

#include <unicode/regex.h>
#include <unicode/utext.h>

#include <array>

#include "util/error.h"

namespace muse {

namespace {

// GPT-2 keeps printable Latin-1 bytes as themselves and moves the rest to U+0100 onwards.
bool gpt2_keeps_byte(int b) {
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

struct Gpt2ByteTable {
  std::array<std::string, 256> to_char;
  std::array<int, 512> to_byte;  // every mapped code point is below U+0200
  Gpt2ByteTable() {
    to_byte.fill(-1);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const uint32_t cp = gpt2_keeps_byte(b) ? uint32_t(b) : uint32_t(next++);
      append_utf8(to_char[b], cp);
      to_byte[cp] = b;
    }
  }
};

const Gpt2ByteTable& gpt2_table() {
  static const Gpt2ByteTable table;
  return table;
}

// tokenizer.json's `\s` is Unicode White_Space (it includes U+0085 and \v); ICU's is narrower.
std::string with_unicode_whitespace(const std::string& pattern) {
  std::string out;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '\\' && i + 1 < pattern.size()) {
      const char next = pattern[++i];
      if (next == 's') out += "\\p{White_Space}";
      else if (next == 'S') out += "\\P{White_Space}";
      else (out += '\\') += next;
    } else {
      out += pattern[i];
    }
  }
  return out;
}

struct UTextCloser {
  void operator()(UText* t) const { utext_close(t); }
};

}  // namespace

const std::string& byte_to_gpt2_char(uint8_t b) { return gpt2_table().to_char[b]; }

bool gpt2_char_to_byte(uint32_t cp, uint8_t* byte) {
  if (cp >= 512 || gpt2_table().to_byte[cp] < 0) return false;
  *byte = uint8_t(gpt2_table().to_byte[cp]);
  return true;
}

struct RegexSplitter::Compiled {
  std::unique_ptr<icu::RegexPattern> pattern;
};

RegexSplitter::RegexSplitter(const std::vector<std::string>& patterns) {
  for (const std::string& p : patterns) {
    UErrorCode status = U_ZERO_ERROR;
    UParseError where;
    auto compiled = std::make_unique<Compiled>();
    compiled->pattern.reset(icu::RegexPattern::compile(
        icu::UnicodeString::fromUTF8(with_unicode_whitespace(p)), 0, where, status));
    if (U_FAILURE(status)) fail("bad pre-tokenizer pattern ", p, ": ", u_errorName(status));
    patterns_.push_back(std::move(compiled));
  }
}

bool regex_search(std::string_view pattern, std::string_view text) {
  UErrorCode status = U_ZERO_ERROR;
  UParseError where;
  std::unique_ptr<icu::RegexPattern> compiled(icu::RegexPattern::compile(
      icu::UnicodeString::fromUTF8(icu::StringPiece(pattern.data(), int32_t(pattern.size()))), 0, where, status));
  if (U_FAILURE(status)) fail("bad regex \"", std::string(pattern), "\": ", u_errorName(status));
  std::unique_ptr<icu::RegexMatcher> matcher(compiled->matcher(status));
  std::unique_ptr<UText, UTextCloser> utext(utext_openUTF8(nullptr, text.data(), int64_t(text.size()), &status));
  matcher->reset(utext.get());
  const bool found = matcher->find(status);
  if (U_FAILURE(status)) fail("regex \"", std::string(pattern), "\": ", u_errorName(status));
  return found;
}

RegexSplitter::~RegexSplitter() = default;
RegexSplitter::RegexSplitter(RegexSplitter&&) noexcept = default;
RegexSplitter& RegexSplitter::operator=(RegexSplitter&&) noexcept = default;

std::vector<std::string_view> RegexSplitter::split(std::string_view text) const {
  std::vector<std::string_view> pieces;
  if (text.empty()) return pieces;
  pieces.push_back(text);
  for (const auto& compiled : patterns_) {
    UErrorCode status = U_ZERO_ERROR;
    std::unique_ptr<icu::RegexMatcher> matcher(compiled->pattern->matcher(status));
    if (U_FAILURE(status)) fail("pre-tokenizer: ", u_errorName(status));
    std::vector<std::string_view> next;
    next.reserve(pieces.size() * 2);
    for (std::string_view piece : pieces) {
      // Matching a UTF-8 UText keeps native (byte) offsets, so pieces stay exact byte ranges
      // of the input even where it is not valid UTF-8.
      std::unique_ptr<UText, UTextCloser> utext(
          utext_openUTF8(nullptr, piece.data(), int64_t(piece.size()), &status));
      matcher->reset(utext.get());
      int64_t done = 0;
      while (matcher->find(status) && U_SUCCESS(status)) {
        const int64_t start = matcher->start64(status);
        const int64_t end = matcher->end64(status);
        if (end == start) continue;  // empty matches do not cut
        if (start > done) next.push_back(piece.substr(size_t(done), size_t(start - done)));
        next.push_back(piece.substr(size_t(start), size_t(end - start)));
        done = end;
      }
      if (U_FAILURE(status)) fail("pre-tokenizer: ", u_errorName(status));
      if (done < int64_t(piece.size())) next.push_back(piece.substr(size_t(done)));
      matcher->reset(icu::UnicodeString());  // release the UText before closing it
    }
    pieces = std::move(next);
  }
  return pieces;
}

}  // namespace muse
