#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

namespace muse {

int32_t argmax(const float* logits, int n) {
  return int32_t(std::max_element(logits, logits + n) - logits);
}

Sampler::Sampler(const SamplingParams& params) : p_(params), rng_(params.seed) {}

int32_t Sampler::sample(const float* logits, int n_vocab) {
  if (p_.temperature <= 0) return argmax(logits, n_vocab);
  cand_.resize(n_vocab);
  for (int i = 0; i < n_vocab; ++i) cand_[i] = {i, logits[i]};
  auto by_logit = [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  size_t n = cand_.size();
  if (p_.top_k > 0 && size_t(p_.top_k) < n) {
    std::partial_sort(cand_.begin(), cand_.begin() + p_.top_k, cand_.end(), by_logit);
    n = p_.top_k;
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  // Probabilities at temperature 1 for the nucleus and min-p cuts, as llama.cpp applies them.
  const float mx = cand_[0].logit;
  std::vector<double> prob(n);
  double total = 0;
  for (size_t i = 0; i < n; ++i) total += prob[i] = std::exp(double(cand_[i].logit - mx));
  if (p_.top_p < 1) {
    double cum = 0;
    for (size_t i = 0; i < n; ++i) {
      cum += prob[i] / total;
      if (cum >= p_.top_p) {
        n = i + 1;
        break;
      }
    }
  }
  if (p_.min_p > 0) {
    size_t keep = 1;
    while (keep < n && prob[keep] >= p_.min_p * prob[0]) ++keep;
    n = keep;
  }
  std::vector<double> w(n);
  for (size_t i = 0; i < n; ++i) w[i] = std::exp(double(cand_[i].logit - mx) / p_.temperature);
  std::discrete_distribution<size_t> dist(w.begin(), w.end());
  return cand_[dist(rng_)].id;
}

}  // namespace muse
