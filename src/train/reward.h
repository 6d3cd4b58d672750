// GRPO's rewards: correctness plus a length reward among the correct samples, advantages
// relative to the group, and the penalty's warm-up schedule.
#pragma once
#include <vector>

namespace muse {

// The length reward for one group, among its correct samples only: for a correct sample
// λ_i = 0.5 - (len_i - min) / (max - min), min and max over the correct samples (0 when they are
// all as long); a wrong sample gets 0. Kimi k1.5's long2short also gives wrong samples
// min(0, λ) with min and max over the whole group; that pushes the wrong samples shorter, and
// for a model that is rarely right they are most of the group: a nano model (10% right when
// sampled) learned to guess, mean reasoning 537 -> 35 tokens and held-out accuracy
// 18.5% -> 13%. Here only correct answers compete on length (as in Arora and Zanette's
// efficient-reasoning reward), so the pressure to shorten grows with accuracy. A group with
// fewer than `min_correct_share` of its samples correct gets no length reward at all (GRPO-λ):
// where the model is mostly wrong, its right answers should teach correctness, not brevity.
std::vector<double> correct_length_rewards(const std::vector<int>& lengths,
                                           const std::vector<bool>& correct,
                                           double min_correct_share = 0);

// A_i = R_i - mean(R): no division by the group's standard deviation, which would blow a small
// length term up to full size once every sample in a group is correct (Dr. GRPO).
std::vector<double> group_advantages(const std::vector<double>& rewards);

// The length penalty's weight at `step` of `total`: 0 for the first `off` fraction (learn from
// correctness alone), then rising linearly to `w_max` over the `ramp` fraction, then constant.
double length_penalty_weight(int step, int total, double w_max, double off = 0.3,
                             double ramp = 0.2);

}  // namespace muse
