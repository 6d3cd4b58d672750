// Speculative decoding: a cheap guess of the next few tokens, which the target model checks in
// one forward pass over [last token, guesses...] (its weights read once for all of them).
// Every emitted token is still sampled from the target's own logits, in order, so the output is
// exactly plain decoding's (the same tokens for greedy, the same draws for a seeded sampler);
// the guesses only decide how many tokens one pass yields. The Generator does the checking
// (runtime/generate.h); a Drafter only guesses.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "model/session.h"

namespace muse {

class Model;
class ThreadPool;

class Drafter {
 public:
  virtual ~Drafter() = default;
  // Up to max_tokens guesses of what follows `history` (the sequence so far); may be fewer or
  // none.
  virtual std::vector<int32_t> propose(const std::vector<int32_t>& history, int max_tokens) = 0;
};

// Prompt lookup: the tokens that followed the latest earlier occurrence of the history's last n
// tokens, trying n from max_ngram down to min_ngram (a single token is too weak a cue to pay
// for a longer pass). Free, and right whenever the output repeats its input (code edits,
// quoting, extraction) or itself.
class PromptLookupDrafter : public Drafter {
 public:
  explicit PromptLookupDrafter(int min_ngram = 2, int max_ngram = 4);
  std::vector<int32_t> propose(const std::vector<int32_t>& history, int max_tokens) override;

 private:
  int min_ngram_, max_ngram_;
};

// A smaller model of the same vocabulary, decoding greedily on a session of its own; the
// prefix it already holds is reused from one proposal to the next.
class DraftModelDrafter : public Drafter {
 public:
  // Fails unless `draft` has the target's vocabulary size.
  DraftModelDrafter(const Model& draft, const Model& target, ThreadPool& pool, int n_ctx);
  std::vector<int32_t> propose(const std::vector<int32_t>& history, int max_tokens) override;

 private:
  Session session_;
  std::vector<int32_t> cached_;  // the tokens the draft session holds
  std::vector<float> logits_;
};

}  // namespace muse
