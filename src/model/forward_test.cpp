// The batched forward pass over the paged cache: sequences of different lengths in one pass
// (prompt chunks and decode steps mixed) give exactly the logits each gives alone, and a fork
// continues from its parent's cached prefix as if it had computed it.
#include "model/forward.h"

#include <gtest/gtest.h>

#include <cstring>

#include "synth/synth.h"
#include "testing/test_support.h"
#include "util/thread_pool.h"

namespace muse {
namespace {

class ForwardTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = testing::synth_model(Arch::kQwen3, "embd=256,layers=2,heads=4,kv_heads=2,head_dim=64,ff=512,vocab=500,ctx=256",
                                  "q4_k_m").release();
  }
  static void TearDownTestSuite() { delete model_; }
  static KvPoolConfig pool_config(KvType type = KvType::kF16) {
    KvPoolConfig k = kv_pool_config(model_->config(), type, 8, 0);
    k.budget_bytes = 64 * KvPool::block_bytes_for(k);
    return k;
  }
  static std::vector<int32_t> tokens(int n, int salt) {
    std::vector<int32_t> t;
    for (int i = 0; i < n; ++i) t.push_back((i * 37 + salt * 101 + 5) % 500);
    return t;
  }
  // Logits of the last token of `t`, computed alone in a fresh pool, one chunk.
  std::vector<float> alone(const std::vector<int32_t>& t, KvType type = KvType::kF16) {
    KvPool kv(pool_config(type));
    KvSequence seq;
    EXPECT_TRUE(seq.reserve(kv, int(t.size())));
    std::vector<BatchToken> batch;
    for (size_t i = 0; i < t.size(); ++i) batch.push_back({t[i], int32_t(i), 0, i + 1 == t.size()});
    BatchForward fwd(*model_, pool_, 64, 256);
    std::vector<float> logits(size_t(model_->config().n_vocab));
    fwd.run(batch, kv, {&seq}, logits.data());
    seq.release(kv);
    return logits;
  }
  static Model* model_;
  ThreadPool pool_{2};
};
Model* ForwardTest::model_ = nullptr;

TEST_F(ForwardTest, MixedBatchMatchesEachSequenceAlone) {
  for (KvType type : {KvType::kF16, KvType::kF32, KvType::kQ8_0}) {
    const int V = model_->config().n_vocab;
    KvPool kv(pool_config(type));
    BatchForward fwd(*model_, pool_, 64, 256);
    // Three sequences: a long prompt in two chunks, a short one, and one decoding.
    const auto a = tokens(30, 1), b = tokens(5, 2), c = tokens(12, 3);
    KvSequence sa, sb, sc;
    // Step 1: c's first 11 tokens alone (its prefill).
    ASSERT_TRUE(sc.reserve(kv, 11));
    std::vector<BatchToken> batch;
    for (int i = 0; i < 11; ++i) batch.push_back({c[size_t(i)], i, 2, false});
    fwd.run(batch, kv, {&sa, &sb, &sc}, nullptr);
    sc.advance(11);
    // Step 2: a's first 20 tokens, all of b, and c's last token (a decode step), together.
    ASSERT_TRUE(sa.reserve(kv, 20) && sb.reserve(kv, 5) && sc.reserve(kv, 1));
    batch.clear();
    for (int i = 0; i < 20; ++i) batch.push_back({a[size_t(i)], i, 0, false});
    for (int i = 0; i < 5; ++i) batch.push_back({b[size_t(i)], i, 1, i == 4});
    batch.push_back({c[11], 11, 2, true});
    std::vector<float> logits(2 * size_t(V));
    fwd.run(batch, kv, {&sa, &sb, &sc}, logits.data());
    sa.advance(20), sb.advance(5), sc.advance(1);
    EXPECT_EQ(0, std::memcmp(logits.data(), alone(b, type).data(), size_t(V) * 4)) << kv_type_name(type);
    EXPECT_EQ(0, std::memcmp(logits.data() + V, alone(c, type).data(), size_t(V) * 4)) << kv_type_name(type);
    // Step 3: the rest of a.
    ASSERT_TRUE(sa.reserve(kv, 10));
    batch.clear();
    for (int i = 20; i < 30; ++i) batch.push_back({a[size_t(i)], i, 0, i == 29});
    fwd.run(batch, kv, {&sa, &sb, &sc}, logits.data());
    EXPECT_EQ(0, std::memcmp(logits.data(), alone(a, type).data(), size_t(V) * 4)) << kv_type_name(type);
    sa.advance(10);
    for (KvSequence* s : {&sa, &sb, &sc}) s->release(kv);
    EXPECT_EQ(kv.n_free(), kv.n_blocks());
  }
}

// Attention in several token ranges (a small score budget) computes the same as in one.
TEST_F(ForwardTest, AttentionInRangesMatchesOneRange) {
  const int V = model_->config().n_vocab;
  const auto t = tokens(40, 6);
  std::vector<float> whole(size_t(V) * 40), ranged(size_t(V) * 40);
  for (size_t max_scores : {size_t(4) << 20, size_t(300)}) {
    KvPool kv(pool_config());
    KvSequence seq;
    ASSERT_TRUE(seq.reserve(kv, 40));
    std::vector<BatchToken> batch;
    for (int i = 0; i < 40; ++i) batch.push_back({t[size_t(i)], i, 0, true});
    BatchForward fwd(*model_, pool_, 64, 256, max_scores);
    fwd.run(batch, kv, {&seq}, (max_scores == 300 ? ranged : whole).data());
    seq.release(kv);
  }
  EXPECT_EQ(0, std::memcmp(whole.data(), ranged.data(), whole.size() * 4));
}

TEST_F(ForwardTest, ForksContinueFromTheSharedPrefix) {
  const int V = model_->config().n_vocab;
  KvPool kv(pool_config());
  BatchForward fwd(*model_, pool_, 64, 256);
  const auto prefix = tokens(13, 4);  // ends inside a block: the forks copy that one on write
  KvSequence parent;
  ASSERT_TRUE(parent.reserve(kv, 13));
  std::vector<BatchToken> batch;
  for (int i = 0; i < 13; ++i) batch.push_back({prefix[size_t(i)], i, 0, false});
  fwd.run(batch, kv, {&parent}, nullptr);
  parent.advance(13);
  const int used = kv.n_blocks() - kv.n_free();
  // Two forks, each with its own continuation, decoded together in one pass.
  KvSequence f1 = parent.fork(kv), f2 = parent.fork(kv);
  EXPECT_EQ(kv.n_blocks() - kv.n_free(), used);  // forking copies nothing
  ASSERT_TRUE(f1.reserve(kv, 1) && f2.reserve(kv, 1));
  batch = {{7, 13, 0, true}, {9, 13, 1, true}};
  std::vector<float> logits(2 * size_t(V));
  fwd.run(batch, kv, {&f1, &f2}, logits.data());
  auto with = [&](int32_t next) {
    auto t = prefix;
    t.push_back(next);
    return alone(t);
  };
  EXPECT_EQ(0, std::memcmp(logits.data(), with(7).data(), size_t(V) * 4));
  EXPECT_EQ(0, std::memcmp(logits.data() + V, with(9).data(), size_t(V) * 4));
  for (KvSequence* s : {&parent, &f1, &f2}) s->release(kv);
  EXPECT_EQ(kv.n_free(), kv.n_blocks());
}

}  // namespace
}  // namespace muse
