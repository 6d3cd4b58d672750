#include "train/reward.h"

#include <algorithm>
#include <numeric>

#include "util/error.h"

namespace muse {

std::vector<double> correct_length_rewards(const std::vector<int>& lengths,
                                           const std::vector<bool>& correct,
                                           double min_correct_share) {
  if (lengths.size() != correct.size())
    fail("length reward: ", lengths.size(), " lengths, ", correct.size(), " verdicts");
  std::vector<double> out(lengths.size(), 0.0);
  const auto n_correct = std::count(correct.begin(), correct.end(), true);
  if (double(n_correct) < min_correct_share * double(correct.size())) return out;
  int lo = 0, hi = -1;
  for (size_t i = 0; i < lengths.size(); ++i) {
    if (!correct[i]) continue;
    if (hi < lo) lo = hi = lengths[i];
    lo = std::min(lo, lengths[i]);
    hi = std::max(hi, lengths[i]);
  }
  if (hi <= lo) return out;  // fewer than two correct lengths: nothing to compare
  for (size_t i = 0; i < lengths.size(); ++i)
    if (correct[i]) out[i] = 0.5 - double(lengths[i] - lo) / double(hi - lo);
  return out;
}

std::vector<double> group_advantages(const std::vector<double>& rewards) {
  if (rewards.empty()) return {};
  // Exactly zero when the group agrees (not a rounding residue), so callers can skip it.
  if (std::all_of(rewards.begin(), rewards.end(), [&](double r) { return r == rewards[0]; }))
    return std::vector<double>(rewards.size(), 0.0);
  const double mean = std::accumulate(rewards.begin(), rewards.end(), 0.0) / double(rewards.size());
  std::vector<double> out;
  for (double r : rewards) out.push_back(r - mean);
  return out;
}

double length_penalty_weight(int step, int total, double w_max, double off, double ramp) {
  if (total <= 0) return 0;
  const double x = double(step) / double(total);
  if (x < off) return 0;
  if (ramp <= 0 || x >= off + ramp) return w_max;
  return w_max * (x - off) / ramp;
}

}  // namespace muse
