#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "util/error.h"

namespace muse {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// How many tokens beyond the ones needed a grammar checks one by one before it masks the whole
// vocabulary.
constexpr size_t kGrammarProbes = 64;

bool better(float a_logit, int32_t a_id, float b_logit, int32_t b_id) {
  return a_logit > b_logit || (a_logit == b_logit && a_id < b_id);
}

}  // namespace

int32_t argmax(const float* logits, int n) {
  int32_t best = -1;
  float best_logit = kNegInf;
  for (int i = 0; i < n; ++i)
    if (logits[i] > best_logit) {
      best_logit = logits[i];
      best = i;
    }
  return best;
}

void SamplingParams::validate(int n_vocab) const {
  auto require = [](bool ok, const auto&... what) {
    if (!ok) fail("sampling setting out of range: ", what...);
  };
  require(temperature >= 0 && std::isfinite(temperature), "temperature must be >= 0");
  require(top_k >= 0, "top_k must be >= 0");
  require(top_p > 0 && top_p <= 1, "top_p must be in (0, 1]");
  require(min_p >= 0 && min_p <= 1, "min_p must be in [0, 1]");
  require(typical_p > 0 && typical_p <= 1, "typical_p must be in (0, 1]");
  require(repeat_penalty > 0 && std::isfinite(repeat_penalty), "repeat_penalty must be > 0");
  require(std::isfinite(presence_penalty), "presence_penalty must be finite");
  require(std::isfinite(frequency_penalty), "frequency_penalty must be finite");
  require(repeat_last_n >= -1, "repeat_last_n must be >= -1");
  for (const auto& [id, bias] : logit_bias) {
    require(id >= 0, "logit_bias token ", id, " is negative");
    require(n_vocab <= 0 || id < n_vocab, "logit_bias token ", id, " is outside the vocabulary of ", n_vocab);
    require(!std::isnan(bias) && bias != std::numeric_limits<float>::infinity(),
            "logit_bias for token ", id, " must be a number or -infinity");
  }
}

Sampler::Sampler(const SamplingParams& params) : p_(params), rng_(params.seed) { p_.validate(); }

void Sampler::set_grammar(std::shared_ptr<const Grammar> grammar,
                          std::shared_ptr<const GrammarVocab> vocab) {
  if (!grammar || !vocab) fail("set_grammar needs a grammar and a vocabulary");
  vocab_ = std::move(vocab);
  matcher_ = std::make_unique<GrammarMatcher>(std::move(grammar));
}

void Sampler::clear_grammar() {
  matcher_.reset();
  vocab_.reset();
}

void Sampler::accept(int32_t token, bool apply_grammar) {
  if (matcher_ && apply_grammar) matcher_->accept_token(*vocab_, token);
  history_.push_back(token);
}

void Sampler::reset() {
  history_.clear();
  if (matcher_) matcher_->reset();
  rng_.seed(p_.seed);
}

double Sampler::uniform01() { return double(rng_() >> 11) * 0x1.0p-53; }

void Sampler::adjust_logits(float* logits, int n_vocab) {
  apply_penalties(logits, n_vocab);
  for (const auto& [id, bias] : p_.logit_bias) {
    if (id >= n_vocab) fail("logit_bias token ", id, " is outside the vocabulary of ", n_vocab);
    logits[id] += bias;
  }
}

bool Sampler::penalties_apply() const {
  const bool active =
      p_.repeat_penalty != 1 || p_.presence_penalty != 0 || p_.frequency_penalty != 0;
  return active && p_.repeat_last_n != 0 && !history_.empty();
}

bool Sampler::adjusts_logits() const { return penalties_apply() || !p_.logit_bias.empty(); }

void Sampler::apply_penalties(float* logits, int n_vocab) {
  if (!penalties_apply()) return;
  const size_t window =
      p_.repeat_last_n < 0 ? history_.size() : std::min(history_.size(), size_t(p_.repeat_last_n));
  counts_.clear();
  for (size_t i = history_.size() - window; i < history_.size(); ++i) ++counts_[history_[i]];
  for (const auto& [id, count] : counts_) {
    if (id < 0 || id >= n_vocab) continue;
    float& l = logits[id];
    l = l > 0 ? l / p_.repeat_penalty : l * p_.repeat_penalty;
    l -= float(count) * p_.frequency_penalty + p_.presence_penalty;
  }
}

// Keeps in cand_ only what the grammar allows. Checking the best candidates one by one is exact
// when only the best `needed` allowed ones matter (greedy, or top-k before any other filter) and
// usually finds them quickly; otherwise, or when too few of the best are allowed, the whole
// vocabulary is masked. Returns whether cand_ holds the best allowed ones, sorted.
bool Sampler::apply_grammar(float* logits, int n_vocab, size_t needed) {
  auto by_logit = [](const Candidate& a, const Candidate& b) {
    return better(a.logit, a.id, b.logit, b.id);
  };
  if (needed > 0) {
    const size_t probes = std::min(cand_.size(), needed + kGrammarProbes);
    std::partial_sort(cand_.begin(), cand_.begin() + probes, cand_.end(), by_logit);
    std::vector<Candidate> allowed;
    for (size_t i = 0; i < probes && allowed.size() < needed; ++i) {
      if (matcher_->can_accept_token(*vocab_, cand_[i].id)) allowed.push_back(cand_[i]);
    }
    if (allowed.size() == needed || probes == cand_.size()) {
      cand_.swap(allowed);
      return true;
    }
  }
  matcher_->mask_logits(*vocab_, logits);
  cand_.clear();
  for (int i = 0; i < n_vocab; ++i) {
    if (logits[i] > kNegInf) cand_.push_back({i, logits[i]});
  }
  return false;
}

int32_t Sampler::sample(const float* logits, int n_vocab) {
  if (n_vocab <= 0) fail("sampling needs at least one logit");
  if (matcher_ && vocab_->size() != n_vocab)
    fail("grammar vocabulary has ", vocab_->size(), " tokens but the model ", n_vocab);
  const bool greedy = p_.temperature <= 0;
  // The best token, without building the candidate list; straight from the model's logits
  // when nothing adjusts them.
  auto best_token = [&](const float* l) {
    const int32_t best = argmax(l, n_vocab);
    if (best < 0) fail("no token can be sampled: logit_bias or the grammar excludes them all");
    return best;
  };
  if (greedy && !matcher_ && !adjusts_logits()) return best_token(logits);
  work_.assign(logits, logits + n_vocab);
  float* l = work_.data();
  adjust_logits(l, n_vocab);
  if (greedy && !matcher_) return best_token(l);
  cand_.clear();
  for (int i = 0; i < n_vocab; ++i) {
    if (l[i] > kNegInf) cand_.push_back({i, l[i]});  // NaN and banned tokens drop out here
  }
  bool sorted = false;
  if (matcher_ && !cand_.empty()) {
    sorted = apply_grammar(l, n_vocab, greedy ? 1 : size_t(p_.top_k));
  }
  if (cand_.empty()) fail("no token can be sampled: logit_bias or the grammar excludes them all");
  auto by_logit = [](const Candidate& a, const Candidate& b) {
    return better(a.logit, a.id, b.logit, b.id);
  };
  if (greedy)
    return sorted ? cand_[0].id : std::min_element(cand_.begin(), cand_.end(), by_logit)->id;

  // Sorting a whole vocabulary (150k entries) costs far more than the forward pass's share of a
  // token in a big batch: sort only what the filters need.
  bool top_p_done = false;
  if (!sorted) {
    if (p_.top_k > 0 && size_t(p_.top_k) < cand_.size()) {
      std::partial_sort(cand_.begin(), cand_.begin() + p_.top_k, cand_.end(), by_logit);
      cand_.resize(size_t(p_.top_k));
      sorted = true;
    } else if (p_.top_p < 1 && p_.typical_p >= 1) {
      // The nucleus is usually within the best few hundred: sort those, and all only when the
      // mass they hold falls short.
      const float best = std::max_element(cand_.begin(), cand_.end(), by_logit)->logit;
      double total = 0;
      for (const Candidate& c : cand_) total += std::exp(double(c.logit) - double(best));
      const size_t head = std::min<size_t>(cand_.size(), 512);
      std::partial_sort(cand_.begin(), cand_.begin() + long(head), cand_.end(), by_logit);
      double cum = 0;
      for (size_t i = 0; i < head; ++i) {
        cum += std::exp(double(cand_[i].logit) - double(best)) / total;
        if (cum >= p_.top_p) {
          cand_.resize(i + 1);
          top_p_done = true;
          break;
        }
      }
      if (!top_p_done) std::sort(cand_.begin() + long(head), cand_.end(), by_logit);
      sorted = true;
    } else if (p_.typical_p < 1 || p_.top_p < 1) {
      std::sort(cand_.begin(), cand_.end(), by_logit);
      sorted = true;
    } else {
      // No truncation but min-p: only the best must come first.
      std::iter_swap(cand_.begin(), std::min_element(cand_.begin(), cand_.end(), by_logit));
    }
  }
  // Probabilities at temperature 1 over the current candidates (sorted, best first).
  auto softmax = [&] {
    prob_.resize(cand_.size());
    double total = 0;
    for (size_t i = 0; i < cand_.size(); ++i) {
      total += prob_[i] = std::exp(double(cand_[i].logit) - double(cand_[0].logit));
    }
    for (double& p : prob_) p /= total;
  };

  if (p_.typical_p < 1) {
    // Keep the tokens whose surprise is closest to the distribution's entropy, up to typical_p
    // of the mass.
    softmax();
    double entropy = 0;
    for (double p : prob_) {
      if (p > 0) entropy -= p * std::log(p);
    }
    std::vector<size_t> order(cand_.size());
    std::vector<double> score(cand_.size());
    for (size_t i = 0; i < cand_.size(); ++i) {
      order[i] = i;
      score[i] = prob_[i] > 0 ? std::fabs(-std::log(prob_[i]) - entropy)
                              : std::numeric_limits<double>::infinity();
    }
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return score[a] < score[b]; });
    size_t keep = order.size();
    double cum = 0;
    for (size_t i = 0; i < order.size(); ++i) {
      cum += prob_[order[i]];
      if (cum > p_.typical_p) {
        keep = i + 1;
        break;
      }
    }
    order.resize(keep);
    std::sort(order.begin(), order.end());  // candidates were sorted by logit: keep that order
    std::vector<Candidate> kept;
    for (size_t i : order) kept.push_back(cand_[i]);
    cand_.swap(kept);
  }
  if (p_.top_p < 1 && !top_p_done) {
    softmax();
    double cum = 0;
    for (size_t i = 0; i < cand_.size(); ++i) {
      cum += prob_[i];
      if (cum >= p_.top_p) {
        cand_.resize(i + 1);
        break;
      }
    }
  }
  if (p_.min_p > 0) {
    const float min_logit = cand_[0].logit + std::log(p_.min_p);  // (the best is first)
    if (sorted) {
      size_t keep = 1;
      while (keep < cand_.size() && cand_[keep].logit >= min_logit) ++keep;
      cand_.resize(keep);
    } else {
      std::erase_if(cand_, [&](const Candidate& c) { return c.logit < min_logit; });
    }
  }

  // (cand_[0] is the best candidate whether or not the rest are sorted.)
  prob_.resize(cand_.size());
  double total = 0;
  for (size_t i = 0; i < cand_.size(); ++i) {
    total += prob_[i] =
        std::exp((double(cand_[i].logit) - double(cand_[0].logit)) / p_.temperature);
  }
  const double r = uniform01() * total;
  double cum = 0;
  for (size_t i = 0; i < cand_.size(); ++i) {
    cum += prob_[i];
    if (r < cum) return cand_[i].id;
  }
  return cand_.back().id;
}

}  // namespace muse
