// libFuzzer target for GBNF grammars: the input's first line is fed as text to the grammar the
// rest defines. Parsing fails with muse::Error or gives a grammar whose matcher walks the text
// and masks a small vocabulary without crashing.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/grammar.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t newline = in.find('\n');
  const std::string_view text = newline == std::string_view::npos ? std::string_view() : in.substr(0, newline);
  const std::string_view source = newline == std::string_view::npos ? in : in.substr(newline + 1);
  std::shared_ptr<const muse::Grammar> grammar;
  try {
    grammar = muse::Grammar::parse(source);
  } catch (const muse::Error&) {
    return 0;
  }
  static const muse::GrammarVocab vocab(
      {"a", "b", "ab", "{", "}", "\"", " ", "\n", "0", "12", "\xc3", "\xa9", "\xc3\xa9", "xyz", ""},
      {14});
  try {
    muse::GrammarMatcher m(grammar);
    std::vector<float> logits(size_t(vocab.size()), 0.0f);
    for (size_t i = 0; i < text.size(); ++i) {
      m.mask_logits(vocab, logits.data());
      const std::string_view byte = text.substr(i, 1);
      if (!m.can_accept(byte)) break;
      m.accept(byte);
    }
    (void)m.can_end();
  } catch (const muse::Error&) {
  }
  return 0;
}
