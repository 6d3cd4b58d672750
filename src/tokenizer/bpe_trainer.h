// Learns a byte-level BPE vocabulary (GPT-2 style, as GGUF's "gpt2" tokenizer model stores it)
// from text, for the models Muse writes itself: random test models and the ones it trains.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace muse {

// GPT-2's reversible map from bytes to printable characters, as UTF-8 strings.
std::vector<std::string> byte_symbols();

// A pre-token (already split) as byte symbols, with how often it occurs.
struct BpeWord {
  std::vector<std::string> symbols;
  int64_t count = 1;
};

// Merges "a b" in rank order: each round merges the most frequent adjacent pair (ties: the
// smallest pair in byte order, so the result is the same everywhere) until `max_merges` are
// learned or no pair occurs `min_count` times. `words` ends up segmented by those merges.
std::vector<std::string> learn_merges(std::vector<BpeWord>& words, int max_merges,
                                      int64_t min_count = 2);

struct SpecialToken {
  std::string text;
  int32_t type =
      3;  // GGUF token types: 3 control (turn markers), 4 user-defined (tags the model writes)
};

struct BpeVocab {
  std::vector<std::string> tokens;  // the 256 byte symbols, the merges' results, then the specials
  std::vector<int32_t> types;
  std::vector<std::string> merges;
  int32_t id(const std::string& token) const;  // throws muse::Error when absent
};

// A vocabulary learned from `texts`, pre-split with the named pre-tokenizer (see
// pre_tokenizer_patterns); specials are never split or merged.
BpeVocab train_bpe(const std::vector<std::string>& texts, const std::string& pre_tokenizer,
                   int max_merges, const std::vector<SpecialToken>& specials);

}  // namespace muse
