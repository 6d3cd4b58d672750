#include "runtime/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "util/error.h"

namespace muse {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

SamplingParams plain(float temperature, uint64_t seed = 1) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = 1;
  p.min_p = 0;
  p.seed = seed;
  return p;
}

// Draw frequencies of each token over many samples.
std::vector<double> frequencies(const SamplingParams& p, const std::vector<float>& logits,
                                int draws = 40000) {
  Sampler s(p);
  std::vector<double> f(logits.size(), 0);
  for (int i = 0; i < draws; ++i) f[s.sample(logits.data(), int(logits.size()))] += 1.0 / draws;
  return f;
}

// Logits whose softmax is exactly probs.
std::vector<float> from_probs(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(float(std::log(p)));
  return l;
}

// With 40000 draws the standard error of a frequency is at most 0.0025; 0.012 is ~5 sigma.
void expect_frequencies(const std::vector<double>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 0.012) << "token " << i;
}

TEST(SamplerTest, GreedyPicksTheLargestLogitAndTheLowestIdOnTies) {
  Sampler s(plain(0));
  const std::vector<float> logits = {0.5f, 3.0f, -1.0f, 3.0f};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(s.sample(logits.data(), 4), 1);
  EXPECT_EQ(argmax(logits.data(), 4), 1);
  // NaN and -inf are never the best; with nothing else there is no token.
  const float nan = std::numeric_limits<float>::quiet_NaN(),
              inf = std::numeric_limits<float>::infinity();
  const std::vector<float> odd = {nan, -inf, -7.0f, nan};
  EXPECT_EQ(s.sample(odd.data(), 4), 2);
  EXPECT_EQ(argmax(odd.data(), 4), 2);
  const std::vector<float> none = {nan, -inf};
  EXPECT_EQ(argmax(none.data(), 2), -1);
  EXPECT_THROW(s.sample(none.data(), 2), Error);
}

TEST(SamplerTest, TemperatureOneFollowsTheSoftmax) {
  expect_frequencies(frequencies(plain(1), from_probs({0.5, 0.3, 0.2})), {0.5, 0.3, 0.2});
}

TEST(SamplerTest, TemperatureSharpensOrFlattens) {
  // p^(1/T), renormalized: T = 2 gives sqrt(p).
  const double a = std::sqrt(0.5), b = std::sqrt(0.3), c = std::sqrt(0.2), z = a + b + c;
  expect_frequencies(frequencies(plain(2), from_probs({0.5, 0.3, 0.2})), {a / z, b / z, c / z});
  // T = 0.5 gives p^2.
  const double z2 = 0.25 + 0.09 + 0.04;
  expect_frequencies(frequencies(plain(0.5f), from_probs({0.5, 0.3, 0.2})),
                     {0.25 / z2, 0.09 / z2, 0.04 / z2});
}

TEST(SamplerTest, TopKKeepsTheBestK) {
  SamplingParams p = plain(1);
  p.top_k = 2;
  expect_frequencies(frequencies(p, from_probs({0.2, 0.5, 0.3})), {0, 0.625, 0.375});
  p.top_k = 1;
  expect_frequencies(frequencies(p, from_probs({0.2, 0.5, 0.3}), 2000), {0, 1, 0});
}

TEST(SamplerTest, TopPKeepsTheSmallestNucleus) {
  SamplingParams p = plain(1);
  p.top_p = 0.7f;  // 0.5, then 0.8 >= 0.7: two tokens
  expect_frequencies(frequencies(p, from_probs({0.5, 0.3, 0.2})), {0.625, 0.375, 0});
  p.top_p = 0.45f;  // 0.5 alone covers it
  expect_frequencies(frequencies(p, from_probs({0.5, 0.3, 0.2}), 2000), {1, 0, 0});
}

// On a large vocabulary the nucleus is found from the best 512 when they hold it, and from a
// full sort when they do not; min-p without other filters needs no sort at all. Either way the
// frequencies are the filtered softmax's.
TEST(SamplerTest, LargeVocabulariesFilterTheSameWay) {
  // Three likely tokens far apart in id, 3997 unlikely ones.
  std::vector<double> probs(4000, 0.1 / 3997);
  probs[3999] = 0.5, probs[17] = 0.3, probs[2500] = 0.1;
  SamplingParams p = plain(1);
  p.top_p = 0.85f;  // 0.5 + 0.3 + 0.1 = 0.9: the three (renormalized)
  std::vector<double> want(4000, 0);
  want[3999] = 0.5 / 0.9, want[17] = 0.3 / 0.9, want[2500] = 0.1 / 0.9;
  expect_frequencies(frequencies(p, from_probs(probs)), want);
  // A nucleus wider than 512 tokens: flat logits, top-p 0.5 keeps half of them.
  const std::vector<double> flat(2000, 1.0 / 2000);
  const std::vector<double> f = frequencies(p = plain(1), from_probs(flat), 20000);
  p.top_p = 0.5f;
  const std::vector<double> g = frequencies(p, from_probs(flat), 20000);
  int used_all = 0, used_half = 0;
  for (size_t i = 0; i < 2000; ++i) {
    used_all += f[i] > 0;
    used_half += g[i] > 0;
  }
  EXPECT_GT(used_all, 1900);
  EXPECT_GT(used_half, 900);  // (ties in a flat distribution: which half depends on the order)
  EXPECT_LE(used_half, 1000);
  // min-p alone: the tokens within the factor of the best, in their softmax proportions.
  p = plain(1);
  p.min_p = 0.5f;  // keep p >= 0.25
  std::vector<double> want2(4000, 0);
  want2[3999] = 0.5 / 0.8, want2[17] = 0.3 / 0.8;
  expect_frequencies(frequencies(p, from_probs(probs)), want2);
}

TEST(SamplerTest, MinPDropsTokensFarBelowTheBest) {
  SamplingParams p = plain(1);
  p.min_p = 0.5f;  // keep p >= 0.25
  expect_frequencies(frequencies(p, from_probs({0.5, 0.3, 0.2})), {0.625, 0.375, 0});
  p.min_p = 0.7f;  // keep p >= 0.35
  expect_frequencies(frequencies(p, from_probs({0.5, 0.3, 0.2}), 2000), {1, 0, 0});
}

TEST(SamplerTest, TypicalKeepsTokensNearTheEntropy) {
  // H = 1.0297 nats; surprises 0.693, 1.204, 1.609 are 0.337, 0.174, 0.580 away from H, so the
  // order is token 1, token 0, token 2.
  SamplingParams p = plain(1);
  p.typical_p = 0.25f;  // 0.3 > 0.25: token 1 alone
  expect_frequencies(frequencies(p, from_probs({0.5, 0.3, 0.2}), 2000), {0, 1, 0});
  p.typical_p = 0.7f;  // 0.3, 0.8 > 0.7: tokens 1 and 0
  expect_frequencies(frequencies(p, from_probs({0.5, 0.3, 0.2})), {0.625, 0.375, 0});
  p.typical_p = 0.9f;  // all three
  expect_frequencies(frequencies(p, from_probs({0.5, 0.3, 0.2})), {0.5, 0.3, 0.2});
}

TEST(SamplerTest, FiltersApplyInLlamaCppOrder) {
  // top-k 3 of 4, then top-p over those 3 (renormalized: 0.4/0.9, 0.3/0.9, 0.2/0.9): 0.444 +
  // 0.333 = 0.778 >= 0.7 keeps two; temperature applies last.
  SamplingParams p = plain(1);
  p.top_k = 3;
  p.top_p = 0.7f;
  expect_frequencies(frequencies(p, from_probs({0.4, 0.3, 0.2, 0.1})), {4.0 / 7, 3.0 / 7, 0, 0});
  p.temperature = 2;
  const double a = std::sqrt(0.4), b = std::sqrt(0.3);
  expect_frequencies(frequencies(p, from_probs({0.4, 0.3, 0.2, 0.1})),
                     {a / (a + b), b / (a + b), 0, 0});
}

TEST(SamplerTest, PenaltiesFollowLlamaCppAndOpenAi) {
  SamplingParams p = plain(0);
  p.repeat_penalty = 2;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  Sampler s(p);
  for (int32_t t : {0, 0, 1, 3}) s.accept(t);
  std::vector<float> l = {2, -1, 1, 0.5f, 7};
  s.adjust_logits(l.data(), 5);
  // token 0 seen twice: 2 / 2 - (2 * 0.25 + 0.5); token 1 once and negative: -1 * 2 - 0.75;
  // token 3 once: 0.5 / 2 - 0.75; tokens 2 and 4 untouched.
  EXPECT_EQ(l, (std::vector<float>{0, -2.75f, 1, -0.5f, 7}));

  p.repeat_last_n = 2;  // only the last two tokens (1 and 3) count
  Sampler windowed(p);
  for (int32_t t : {0, 0, 1, 3}) windowed.accept(t);
  l = {2, -1, 1, 0.5f, 7};
  windowed.adjust_logits(l.data(), 5);
  EXPECT_EQ(l, (std::vector<float>{2, -2.75f, 1, -0.5f, 7}));

  p.repeat_last_n = 0;  // off
  Sampler off(p);
  off.accept(0);
  l = {2, -1, 1, 0.5f, 7};
  off.adjust_logits(l.data(), 5);
  EXPECT_EQ(l, (std::vector<float>{2, -1, 1, 0.5f, 7}));

  // Greedy decoding sees the penalized logits.
  SamplingParams g = plain(0);
  g.frequency_penalty = 1;
  Sampler greedy(g);
  const std::vector<float> logits = {3, 2.5f, 0};
  EXPECT_EQ(greedy.sample(logits.data(), 3), 0);
  greedy.accept(0);
  EXPECT_EQ(greedy.sample(logits.data(), 3), 1);
  greedy.reset();
  EXPECT_EQ(greedy.sample(logits.data(), 3), 0);
}

TEST(SamplerTest, LogitBiasAddsAndBans) {
  SamplingParams p = plain(0);
  p.logit_bias = {{1, 5.0f}, {0, -kInf}};
  Sampler s(p);
  const std::vector<float> logits = {10, 6, 1};
  EXPECT_EQ(s.sample(logits.data(), 3), 1);
  std::vector<float> l = logits;
  s.adjust_logits(l.data(), 3);
  EXPECT_EQ(l[1], 11);
  EXPECT_EQ(l[0], -kInf);

  SamplingParams q = plain(1);
  q.logit_bias = {{0, -kInf}};
  expect_frequencies(frequencies(q, from_probs({0.6, 0.3, 0.1})), {0, 0.75, 0.25});

  SamplingParams all = plain(1);
  all.logit_bias = {{0, -kInf}, {1, -kInf}};
  Sampler none(all);
  const std::vector<float> two = {1, 2};
  EXPECT_THROW(none.sample(two.data(), 2), Error);
  SamplingParams outside = plain(1);
  outside.logit_bias = {{5, 1.0f}};
  Sampler bad(outside);
  EXPECT_THROW(bad.sample(two.data(), 2), Error);
}

TEST(SamplerTest, SameSeedSameTokens) {
  SamplingParams p;  // the defaults: top-k 40, top-p 0.95, min-p 0.05, temperature 0.8
  p.seed = 42;
  std::vector<float> logits(1000);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = float(std::sin(double(i) * 0.37) * 3);
  auto run = [&](Sampler& s) {
    std::vector<int32_t> out;
    for (int i = 0; i < 300; ++i) out.push_back(s.sample(logits.data(), int(logits.size())));
    return out;
  };
  Sampler a(p), b(p);
  const std::vector<int32_t> first = run(a);
  EXPECT_EQ(first, run(b));
  a.reset();
  EXPECT_EQ(first, run(a));
  p.seed = 43;
  Sampler c(p);
  EXPECT_NE(first, run(c));
}

TEST(SamplerTest, SettingsOutOfRangeAreErrors) {
  auto bad = [](auto change) {
    SamplingParams p;
    change(p);
    EXPECT_THROW(Sampler{p}, Error);
  };
  bad([](SamplingParams& p) { p.temperature = -1; });
  bad([](SamplingParams& p) { p.top_k = -1; });
  bad([](SamplingParams& p) { p.top_p = 0; });
  bad([](SamplingParams& p) { p.min_p = 1.5f; });
  bad([](SamplingParams& p) { p.typical_p = 0; });
  bad([](SamplingParams& p) { p.repeat_penalty = 0; });
  bad([](SamplingParams& p) { p.repeat_last_n = -2; });
  bad([](SamplingParams& p) { p.presence_penalty = NAN; });
  bad([](SamplingParams& p) { p.logit_bias = {{3, kInf}}; });
  bad([](SamplingParams& p) { p.logit_bias = {{-1, 1.0f}}; });
}

}  // namespace
}  // namespace muse
