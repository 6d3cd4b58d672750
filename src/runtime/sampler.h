// Chooses the next token from logits, in llama.cpp's default order: repetition penalties, logit
// bias, grammar constraint, then top-k, typical, top-p and min-p filtering and temperature before
// the draw. Temperature 0 is greedy. Draws are reproducible for a given seed.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <unordered_map>
#include <vector>

#include "runtime/grammar.h"

namespace muse {

struct SamplingParams {
  float temperature = 0.8f;  // 0: greedy
  int top_k = 40;            // 0: off
  float top_p = 0.95f;       // 1: off
  float min_p = 0.05f;       // 0: off
  float typical_p = 1.0f;    // 1: off (locally typical sampling)
  // llama.cpp-style: a token seen in the window has its logit divided by this when positive,
  // multiplied when negative. 1: off.
  float repeat_penalty = 1.0f;
  // OpenAI-style: subtracted once from the logit of every token seen in the window.
  float presence_penalty = 0.0f;
  // OpenAI-style: subtracted once per occurrence in the window.
  float frequency_penalty = 0.0f;
  // How many of the latest accepted tokens the three penalties look at; -1: all of them.
  int repeat_last_n = 64;
  // Added to a token's logit before filtering; -infinity bans the token.
  std::map<int32_t, float> logit_bias;
  uint64_t seed = 0;

  // Throws muse::Error when a setting is out of range.
  void validate(int n_vocab = 0) const;  // with n_vocab: logit_bias ids must be below it
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // Restricts sampling to what the grammar allows next; end-of-generation tokens only where the
  // grammar can end. accept() advances the grammar.
  void set_grammar(std::shared_ptr<const Grammar> grammar,
                   std::shared_ptr<const GrammarVocab> vocab);
  void clear_grammar();
  const GrammarMatcher* grammar() const { return matcher_.get(); }

  // The next token; does not change the sampler's state except for the random draw. Throws
  // muse::Error when bias and grammar leave no token.
  int32_t sample(const float* logits, int n_vocab);
  // The first steps of sample(): repetition penalties and logit bias, in place.
  void adjust_logits(float* logits, int n_vocab);
  // Records a token: penalty history and, with apply_grammar, the grammar state. Prompt tokens
  // that the penalties should see go in with apply_grammar = false.
  void accept(int32_t token, bool apply_grammar = true);
  // Forgets the history, restarts the grammar and reseeds, so a run repeats exactly.
  void reset();

  const std::vector<int32_t>& history() const { return history_; }
  const SamplingParams& params() const { return p_; }

 private:
  struct Candidate {
    int32_t id;
    float logit;
  };
  void apply_penalties(float* logits, int n_vocab);
  bool penalties_apply() const;
  bool adjusts_logits() const;  // whether adjust_logits changes anything
  bool apply_grammar(float* logits, int n_vocab, size_t needed);
  double uniform01();

  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<int32_t> history_;
  std::shared_ptr<const GrammarVocab> vocab_;
  std::unique_ptr<GrammarMatcher> matcher_;
  std::vector<float> work_;
  std::vector<Candidate> cand_;
  std::vector<double> prob_;
  std::unordered_map<int32_t, int> counts_;
};

// The first index of the largest logit above -inf (NaN never counts); -1 when there is none.
int32_t argmax(const float* logits, int n);

}  // namespace muse
