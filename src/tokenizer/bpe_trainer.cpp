#include "tokenizer/bpe_trainer.h"

#include <map>
#include <set>
#include <unordered_map>

#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "util/error.h"

namespace muse {

std::vector<std::string> byte_symbols() {
  std::vector<std::string> sym(256);
  auto utf8 = [](unsigned cp) {
    std::string s;
    if (cp < 0x80)
      s += char(cp);
    else {
      s += char(0xc0 | (cp >> 6));
      s += char(0x80 | (cp & 0x3f));
    }
    return s;
  };
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable =
        (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    sym[b] = utf8(printable ? unsigned(b) : unsigned(256 + extra++));
  }
  return sym;
}

std::vector<std::string> learn_merges(std::vector<BpeWord>& words, int max_merges,
                                      int64_t min_count) {
  std::vector<std::string> merges;
  while (int(merges.size()) < max_merges) {
    std::map<std::pair<std::string, std::string>, int64_t> counts;
    for (const BpeWord& w : words)
      for (size_t i = 0; i + 1 < w.symbols.size(); ++i)
        counts[{w.symbols[i], w.symbols[i + 1]}] += w.count;
    auto best = counts.end();
    for (auto it = counts.begin(); it != counts.end(); ++it)
      if (it->second >= min_count && (best == counts.end() || it->second > best->second)) best = it;
    if (best == counts.end()) break;
    const auto [a, b] = best->first;
    const std::string ab = a + b;
    for (BpeWord& w : words) {
      std::vector<std::string> out;
      out.reserve(w.symbols.size());
      for (size_t i = 0; i < w.symbols.size(); ++i) {
        if (i + 1 < w.symbols.size() && w.symbols[i] == a && w.symbols[i + 1] == b) {
          out.push_back(ab);
          ++i;
        } else {
          out.push_back(w.symbols[i]);
        }
      }
      w.symbols = std::move(out);
    }
    merges.push_back(a + " " + b);
  }
  return merges;
}

int32_t BpeVocab::id(const std::string& token) const {
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] == token) return int32_t(i);
  fail("token \"", token, "\" is not in the vocabulary");
}

BpeVocab train_bpe(const std::vector<std::string>& texts, const std::string& pre_tokenizer,
                   int max_merges, const std::vector<SpecialToken>& specials) {
  const RegexSplitter splitter(pre_tokenizer_patterns(pre_tokenizer));
  const std::vector<std::string> sym = byte_symbols();
  // Pre-tokens with their counts; the text between specials only (specials stay whole).
  std::unordered_map<std::string, int64_t> pieces;
  for (const std::string& text : texts) {
    size_t at = 0;
    while (at < text.size()) {
      size_t next = text.size(), len = 0;
      for (const SpecialToken& s : specials) {
        const size_t f = text.find(s.text, at);
        if (f < next) next = f, len = s.text.size();
      }
      for (std::string_view p : splitter.split(std::string_view(text).substr(at, next - at)))
        ++pieces[std::string(p)];
      at = next + len;
    }
  }
  std::vector<BpeWord> words;
  words.reserve(pieces.size());
  for (const auto& [piece, count] : pieces) {
    BpeWord w;
    for (unsigned char c : piece) w.symbols.push_back(sym[c]);
    w.count = count;
    words.push_back(std::move(w));
  }
  // (learn_merges breaks ties by pair, so the hash map's order does not matter.)
  BpeVocab v;
  v.tokens = sym;
  v.merges = learn_merges(words, max_merges);
  std::set<std::string> seen(sym.begin(), sym.end());
  for (const std::string& m : v.merges) {
    const size_t space = m.find(' ');
    std::string merged = m.substr(0, space) + m.substr(space + 1);
    if (seen.insert(merged).second) v.tokens.push_back(std::move(merged));
  }
  v.types.assign(v.tokens.size(), 1);
  for (const SpecialToken& s : specials) {
    if (seen.count(s.text)) fail("special token \"", s.text, "\" is also a learned token");
    v.tokens.push_back(s.text);
    v.types.push_back(s.type);
  }
  return v;
}

}  // namespace muse
