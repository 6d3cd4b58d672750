// Chooses the next token from logits: greedy, or temperature sampling after top-k, top-p and
// min-p filtering (in llama.cpp's order), reproducible for a given seed.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace muse {

struct SamplingParams {
  float temperature = 0.8f;  // 0: greedy
  int top_k = 40;            // 0: off
  float top_p = 0.95f;       // 1: off
  float min_p = 0.05f;       // 0: off
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  int32_t sample(const float* logits, int n_vocab);

 private:
  struct Candidate {
    int32_t id;
    float logit;
  };
  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<Candidate> cand_;
};

int32_t argmax(const float* logits, int n);

}  // namespace muse
