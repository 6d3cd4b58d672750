// GRPO's rewards: correctness minus a length penalty (Kimi k1.5's long2short), advantages
// relative to the group, and the penalty's warm-up schedule.
#pragma once
#include <vector>

namespace muse {

// Kimi k1.5's length reward for one group: λ_i = 0.5 - (len_i - min) / (max - min) (0 when all
// lengths are equal); a correct sample gets λ_i, a wrong one min(0, λ_i), so shortness never
// rewards a wrong answer. Unlike Kimi's formula, a group with no correct sample gets no length
// reward at all: with nothing correct to compare, only "shorter" would be rewarded, and a model
// that is rarely right learns to stop thinking (the first nano run's thinking fell to nothing
// within ten steps of the penalty starting).
std::vector<double> kimi_length_rewards(const std::vector<int>& lengths,
                                        const std::vector<bool>& correct);

// A_i = R_i - mean(R): no division by the group's standard deviation, which would blow a small
// length term up to full size once every sample in a group is correct (Dr. GRPO).
std::vector<double> group_advantages(const std::vector<double>& rewards);

// The length penalty's weight at `step` of `total`: 0 for the first `off` fraction (learn from
// correctness alone), then rising linearly to `w_max` over the `ramp` fraction, then constant.
double length_penalty_weight(int step, int total, double w_max, double off = 0.3,
                             double ramp = 0.2);

}  // namespace muse
