// The trainer's pieces: rewards (exact formulas), the BPE trainer and the exported vocabulary,
// the GGUF round trip, and (with libtorch) that Muse computes the trained network's logits.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>

#include "model/model.h"
#include "model/session.h"
#include "runtime/scheduler.h"
#include "tokenizer/tokenizer.h"
#include "train/gguf_export.h"
#include "train/recipe.h"
#include "train/reward.h"
#include "train/rollout.h"
#include "train/sft_data.h"
#include "train/trainer.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace muse {
namespace {

TEST(TrainReward, LengthRewardRanksOnlyTheCorrectSamples) {
  const auto r = correct_length_rewards({10, 20, 30, 5, 40}, {true, true, true, false, false});
  ASSERT_EQ(r.size(), 5u);
  EXPECT_DOUBLE_EQ(r[0], 0.5);   // shortest correct
  EXPECT_DOUBLE_EQ(r[1], 0.0);   // middle correct
  EXPECT_DOUBLE_EQ(r[2], -0.5);  // longest correct
  EXPECT_DOUBLE_EQ(r[3], 0.0);   // wrong, however short: never rewarded
  EXPECT_DOUBLE_EQ(r[4], 0.0);   // wrong and long: not pushed shorter either
  // Fewer than two distinct correct lengths: no length signal.
  EXPECT_EQ(correct_length_rewards({7, 3, 90}, {true, false, false}),
            (std::vector<double>{0, 0, 0}));
  EXPECT_EQ(correct_length_rewards({7, 7}, {true, true}), (std::vector<double>{0, 0}));
  EXPECT_EQ(correct_length_rewards({5, 15, 30}, {false, false, false}),
            (std::vector<double>{0, 0, 0}));
  // Below the minimum share of correct samples, no length reward; at it, the ranking.
  EXPECT_EQ(correct_length_rewards({10, 20, 30, 5}, {true, true, false, false}, 0.75),
            (std::vector<double>{0, 0, 0, 0}));
  EXPECT_EQ(correct_length_rewards({10, 20, 30, 5}, {true, true, false, false}, 0.5),
            (std::vector<double>{0.5, -0.5, 0, 0}));
}

TEST(TrainReward, AdvantagesAreCenteredWithoutScaling) {
  const auto a = group_advantages({1.0, 1.1, 1.2, 0.0});
  EXPECT_NEAR(std::accumulate(a.begin(), a.end(), 0.0), 0.0, 1e-12);
  EXPECT_NEAR(a[2] - a[1], 0.1, 1e-12);  // differences kept as they are (no std division)
  EXPECT_EQ(group_advantages({0.7, 0.7, 0.7}), (std::vector<double>{0, 0, 0}));
}

TEST(TrainReward, LengthPenaltyWarmsUp) {
  EXPECT_EQ(length_penalty_weight(0, 100, 0.5), 0.0);
  EXPECT_EQ(length_penalty_weight(29, 100, 0.5), 0.0);
  EXPECT_NEAR(length_penalty_weight(40, 100, 0.5), 0.25, 1e-12);
  EXPECT_EQ(length_penalty_weight(50, 100, 0.5), 0.5);
  EXPECT_EQ(length_penalty_weight(99, 100, 0.5), 0.5);
}

BpeVocab small_vocab() {
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) texts.push_back(joined_text(sft_example(SftMix{}, 5, uint64_t(i))));
  return train_bpe(texts, "qwen2", 200, muse_special_tokens());
}

TEST(TrainBpe, LearnedVocabularyRoundTripsAndKeepsTagsWhole) {
  const BpeVocab v = small_vocab();
  EXPECT_GT(v.merges.size(), 150u);
  const auto tok = vocab_tokenizer(v);
  Tokenizer::EncodeOptions o;
  o.add_special = false;
  for (int i = 300; i < 340; ++i) {
    const std::string text = joined_text(sft_example(SftMix{}, 5, uint64_t(i)));
    EXPECT_EQ(tok->decode(tok->encode(text, o)), text);
  }
  for (const SpecialToken& s : muse_special_tokens()) {
    const auto ids = tok->encode(s.text, o);
    ASSERT_EQ(ids.size(), 1u) << s.text;
    EXPECT_EQ(tok->text(ids[0]), s.text);
  }
  // Digits stay single (the qwen2 pre-tokenizer), so numbers are spelled digit by digit.
  for (int32_t id : tok->encode(" 1234", o)) EXPECT_LE(tok->text(id).size(), 2u);
}

std::vector<NamedTensor> random_tensors(const NetShape& shape, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> n(0.0f, 0.1f);
  std::vector<NamedTensor> t = net_tensor_layout(shape);
  for (NamedTensor& x : t) {
    int64_t size = 1;
    for (int64_t d : x.dims) size *= d;
    x.data.resize(size_t(size));
    for (float& v : x.data) v = x.dims.size() == 1 ? 1.0f + n(rng) : n(rng);
  }
  return t;
}

NetShape test_shape(int n_vocab) {
  NetShape s;
  s.n_vocab = n_vocab;
  s.n_embd = 64;
  s.n_layer = 2;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.head_dim = 16;
  s.n_ff = 96;
  s.n_ctx = 512;
  return s;
}

TEST(TrainExport, GgufRoundTripsShapeVocabularyAndWeights) {
  const BpeVocab v = small_vocab();
  const NetShape shape = test_shape(int(v.tokens.size()));
  const auto tensors = random_tensors(shape, 3);
  ExportOptions eo;
  eo.matrix_type = GgmlType::F32;
  const std::string bytes = net_to_gguf(shape, tensors, v, eo).to_bytes();
  const auto file =
      GgufFile::from_memory(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  const NetShape back = net_shape_from_gguf(*file);
  EXPECT_EQ(back.n_embd, shape.n_embd);
  EXPECT_EQ(back.n_head_kv, shape.n_head_kv);
  EXPECT_EQ(back.n_vocab, shape.n_vocab);
  EXPECT_EQ(vocab_from_gguf(*file).merges, v.merges);
  const auto loaded = net_tensors_from_gguf(*file);
  ASSERT_EQ(loaded.size(), tensors.size());
  for (size_t i = 0; i < loaded.size(); ++i)
    EXPECT_EQ(loaded[i].data, tensors[i].data) << loaded[i].name;
  // A wrong tensor list is refused with a message, not written.
  auto missing = tensors;
  missing.pop_back();
  EXPECT_THROW(net_to_gguf(shape, missing, v, eo), Error);
}

// The network the trainer optimizes and the one Muse runs from the exported file are the same
// function: teacher-forced logits agree. F32 export: both sides compute in float32 with
// different summation orders over rows of 64..96 products, so 1e-3 absolute on logits of
// magnitude ~1 is ample; F16 rounds every weight (relative 2^-11), so 2e-2.
TEST(TrainExport, MuseComputesTheTrainedNetworksLogits) {
  if (!trainer_available()) GTEST_SKIP() << "built without libtorch";
  const BpeVocab v = small_vocab();
  const NetShape shape = test_shape(int(v.tokens.size()));
  Trainer trainer(shape, 11, 2);
  const auto tensors = random_tensors(shape, 4);
  trainer.load_tensors(tensors);
  const auto tok = vocab_tokenizer(v);
  // Longer than one block of queries (the trainer's attention runs in blocks of 128).
  std::string text;
  for (int i = 1000; i < 1006; ++i) text += joined_text(sft_example(SftMix{}, 5, uint64_t(i)));
  std::vector<int32_t> ids = tok->encode(text, {.add_special = false, .parse_special = true});
  ASSERT_GT(ids.size(), 300u);
  ids.resize(300);
  const std::vector<float> expected = trainer.logits(ids);
  for (GgmlType type : {GgmlType::F32, GgmlType::F16}) {
    ExportOptions eo;
    eo.matrix_type = type;
    InMemoryModel m(shape, tensors, v, eo);
    ThreadPool pool(2);
    SessionParams sp;
    sp.n_ctx = shape.n_ctx;
    sp.kv_type = KvType::kF32;
    Session session(m.model(), pool, sp);
    std::vector<float> got(ids.size() * size_t(shape.n_vocab));
    session.forward(ids.data(), int(ids.size()), got.data(), true);
    double max_diff = 0;
    for (size_t i = 0; i < got.size(); ++i)
      max_diff = std::max(max_diff, double(std::fabs(got[i] - expected[i])));
    EXPECT_LT(max_diff, type == GgmlType::F32 ? 1e-3 : 2e-2) << type_name(type);
  }
}

TokenizedExample example_from(const Tokenizer& tok, const TrainingText& text) {
  TokenizedExample e = tokenize_example(tok, text);
  e.ids.resize(std::min<size_t>(e.ids.size(), 120));
  e.weight.resize(e.ids.size());
  return e;
}

// The optimizer and the loss are wired right: four sequences are memorized.
TEST(TrainSft, OverfitsFourSequences) {
  if (!trainer_available()) GTEST_SKIP() << "built without libtorch";
  const BpeVocab v = small_vocab();
  const auto tok = vocab_tokenizer(v);
  std::vector<TokenizedExample> batch;
  for (int i = 0; i < 4; ++i)
    batch.push_back(example_from(*tok, sft_example(SftMix{}, 9, uint64_t(i))));
  OptimizerSettings o;
  o.weight_decay = 0;
  Trainer trainer(test_shape(int(v.tokens.size())), 1, 2, o);
  const double first = trainer.evaluate(batch, 4096);
  double loss = first;
  for (int step = 0; step < 300 && loss > 0.05; ++step)
    loss = trainer.sft_step(batch, 3e-3, 4096).loss;
  EXPECT_GT(first, 3.0);
  EXPECT_LT(trainer.evaluate(batch, 4096), 0.05);
}

// Decision words split into pieces of their own tokenize as in the whole sequence, so weighting
// them trains exactly the tokens the model meets.
TEST(TrainSft, WeightedPiecesTokenizeLikeTheWholeSequence) {
  const BpeVocab v = small_vocab();
  const auto tok = vocab_tokenizer(v);
  SftMix mix;
  mix.decision_weight = 5;
  int weighted = 0;
  for (uint64_t i = 0; i < 40; ++i) {
    const TrainingText text = sft_example(mix, 4, i);
    const TokenizedExample e = tokenize_example(*tok, text);
    EXPECT_EQ(e.ids, tok->encode(joined_text(text), {.add_special = false, .parse_special = true}));
    ASSERT_EQ(e.weight.size(), e.ids.size());
    for (float w : e.weight) weighted += w == 5.f;
  }
  EXPECT_GT(weighted, 100);
}

// The reported SFT loss is the plain mean over target tokens whatever the weights, and a weight
// above 1 makes its tokens learn faster.
TEST(TrainSft, WeightsSteerWhatIsLearnedNotTheReportedLoss) {
  if (!trainer_available()) GTEST_SKIP() << "built without libtorch";
  const BpeVocab v = small_vocab();
  const auto tok = vocab_tokenizer(v);
  std::vector<TokenizedExample> plain, emphasis, only_emphasised;
  for (int i = 0; i < 4; ++i) plain.push_back(example_from(*tok, sft_example(SftMix{}, 9, i)));
  emphasis = only_emphasised = plain;
  for (TokenizedExample& e : emphasis)
    for (size_t t = 0; t < e.ids.size(); ++t)
      if (e.weight[t] > 0 && t % 7 == 0) e.weight[t] = 8;
  for (size_t i = 0; i < plain.size(); ++i)
    for (size_t t = 0; t < plain[i].ids.size(); ++t)
      only_emphasised[i].weight[t] = emphasis[i].weight[t] == 8 ? 1.f : 0.f;
  Trainer a(test_shape(int(v.tokens.size())), 1, 2), b(test_shape(int(v.tokens.size())), 1, 2);
  const double before = a.evaluate(plain, 4096);
  EXPECT_NEAR(b.sft_step(emphasis, 1e-3, 4096).loss, before, 1e-4);
  a.sft_step(plain, 1e-3, 4096);
  for (int step = 0; step < 15; ++step) {
    a.sft_step(plain, 1e-3, 4096);
    b.sft_step(emphasis, 1e-3, 4096);
  }
  // The emphasised tokens' loss ends lower (0.26 lower here; 0.05 leaves room for the
  // order of float sums in torch's threads).
  const double emphasised = b.evaluate(only_emphasised, 4096);
  const double unemphasised = a.evaluate(only_emphasised, 4096);
  EXPECT_LT(emphasised, unemphasised - 0.05);
  EXPECT_GT(only_emphasised[0].targets(), 5);
}

// One GRPO step raises the log-probability of a sample with positive advantage and lowers one
// with negative advantage; the old log-probabilities from the engine are the trainer's own.
TEST(TrainGrpo, StepMovesLogprobsTheWayOfTheAdvantage) {
  if (!trainer_available()) GTEST_SKIP() << "built without libtorch";
  const BpeVocab v = small_vocab();
  const NetShape shape = test_shape(int(v.tokens.size()));
  Trainer trainer(shape, 2, 2);
  const auto tok = vocab_tokenizer(v);
  ExportOptions f32_export;
  f32_export.matrix_type = GgmlType::F32;
  InMemoryModel engine(shape, trainer.tensors(), v, f32_export);
  ThreadPool pool(2);
  SchedulerConfig sc;
  sc.kv_type = KvType::kF32;
  sc.max_context = shape.n_ctx;
  Scheduler scheduler(engine.model(), engine.tokenizer(), pool, sc);
  const auto prompt = tok->encode(chat_prompt_text("Compute 2 + 3."),
                                  {.add_special = false, .parse_special = true});
  RolloutSettings rs;
  rs.group_size = 2;
  rs.max_tokens = 12;
  rs.seed = 5;
  const auto groups = sample_groups(scheduler, engine.tokenizer(), {prompt}, rs);
  // Same seed, same samples.
  const auto again = sample_groups(scheduler, engine.tokenizer(), {prompt}, rs);
  ASSERT_EQ(groups[0][0].completion, again[0][0].completion);
  // The sampler's log-probabilities are the network's (F32 weights and KV: float rounding only).
  auto lp_of = [&](const std::vector<int32_t>& completion) {
    std::vector<int32_t> ids = prompt;
    ids.insert(ids.end(), completion.begin(), completion.end());
    const auto logits = trainer.logits(ids);
    double sum = 0;
    for (size_t j = 0; j < completion.size(); ++j) {
      const float* row = &logits[(prompt.size() + j - 1) * size_t(shape.n_vocab)];
      double mx = row[0], z = 0;
      for (int k = 0; k < shape.n_vocab; ++k) mx = std::max(mx, double(row[k]));
      for (int k = 0; k < shape.n_vocab; ++k) z += std::exp(double(row[k]) - mx);
      sum += double(row[completion[j]]) - mx - std::log(z);
    }
    return sum;
  };
  for (const Rollout& r : groups[0]) {
    double engine_sum = 0;
    for (float x : r.logprobs) engine_sum += x;
    EXPECT_NEAR(engine_sum, lp_of(r.completion), 1e-3 * double(r.completion.size()));
  }
  std::vector<PolicySample> samples;
  for (int i = 0; i < 2; ++i) {
    PolicySample ps;
    ps.prompt = prompt;
    ps.completion = groups[0][size_t(i)].completion;
    ps.old_logprobs = groups[0][size_t(i)].logprobs;
    ps.advantage = i == 0 ? 1.0f : -1.0f;
    samples.push_back(ps);
  }
  ASSERT_NE(samples[0].completion, samples[1].completion);
  const double up_before = lp_of(samples[0].completion), down_before = lp_of(samples[1].completion);
  GrpoStepSettings gs;
  gs.lr = 1e-3;
  gs.normalizer = 2.0 * rs.max_tokens;
  const GrpoStepStats st = trainer.grpo_step(samples, gs);
  EXPECT_NEAR(st.mean_ratio, 1.0, 1e-3);  // on-policy: the first step's ratio is 1
  EXPECT_GT(lp_of(samples[0].completion), up_before);
  EXPECT_LT(lp_of(samples[1].completion), down_before);
}

TEST(TrainGrpo, KlTermPullsThePolicyBackToItsReference) {
  if (!trainer_available()) GTEST_SKIP() << "built without libtorch";
  const BpeVocab v = small_vocab();
  const NetShape shape = test_shape(int(v.tokens.size()));
  const auto tok = vocab_tokenizer(v);
  const Tokenizer::EncodeOptions eo{.add_special = false, .parse_special = true};
  PolicySample sample;
  sample.prompt = tok->encode(chat_prompt_text("Compute 4 * 6."), eo);
  sample.completion = tok->encode("<think>\n4 * 6 = 24.\n</think>\n\nAnswer: 24", eo);
  sample.old_logprobs.assign(sample.completion.size(), 0.f);
  sample.advantage = 0;  // no reward signal: the KL term alone acts
  // The reference: seed 3's weights; the policy: seed 4's (after one step at the reference,
  // whose gradient is zero).
  Trainer trainer(shape, 3, 2);
  GrpoStepSettings gs;
  gs.lr = 1e-3;
  gs.normalizer = double(sample.completion.size());
  gs.kl_coef = 1;
  EXPECT_THROW(trainer.grpo_step({sample}, gs), Error);  // no reference yet
  trainer.set_reference();
  EXPECT_NEAR(trainer.grpo_step({sample}, gs).kl, 0.0, 1e-6);  // the policy is its reference
  trainer.load_tensors(Trainer(shape, 4, 2).tensors());
  std::vector<double> kl;
  for (int i = 0; i < 8; ++i) kl.push_back(trainer.grpo_step({sample}, gs).kl);
  EXPECT_GT(kl[0], 1e-2);
  // The term acts on the sampled tokens' log-probabilities (over many samples of the policy's
  // own, that is its KL; on one fixed text, the rest of each distribution may drift). Adam's
  // steps are lr-sized whatever the gradient, so the last ones may overshoot a little; the
  // estimate must still fall at first and end well below where it started.
  EXPECT_LT(kl[1], kl[0]);
  EXPECT_LT(kl.back(), 0.5 * kl[0]);
  gs.kl_coef = 0;
  EXPECT_EQ(trainer.grpo_step({sample}, gs).kl, 0.0);  // not computed without the term
}

}  // namespace
}  // namespace muse
