// The paged KV cache: storage per type, reference counts, forks with copy-on-write, the memory
// budget, and the radix prefix cache with LRU eviction.
#include "kv/kv_pool.h"

#include <gtest/gtest.h>

#include <cmath>

#include "kv/prefix_cache.h"
#include "testing/test_support.h"
#include "util/error.h"

namespace muse {
namespace {

KvPoolConfig small_config(KvType type = KvType::kF16, int blocks = 8) {
  KvPoolConfig c;
  c.n_layer = 2;
  c.kv_dim = 64;
  c.v_dim = 64;
  c.n_heads = 2;  // stored head by head: reads must put both halves of a row back in place
  c.block_tokens = 4;
  c.type = type;
  const size_t row = type == KvType::kF32 ? 4 * 64 : type == KvType::kF16 ? 2 * 64 : 2 * 34;
  c.budget_bytes = size_t(blocks) * 2 * 2 * 4 * row;  // layers x (k, v) x tokens x row
  return c;
}

// Writes token t's rows (a pattern unique to (t, layer)) into the sequence's slot for it.
void write_token(KvPool& pool, const KvSequence& seq, int pos, int t) {
  for (int layer = 0; layer < pool.config().n_layer; ++layer) {
    const auto k = testing::random_normal(64, uint32_t(t * 10 + layer));
    const auto v = testing::random_normal(64, uint32_t(t * 10 + layer + 5000));
    pool.write(seq.block_of(pos, pool), pos % pool.block_tokens(), layer, k.data(), v.data());
  }
}

float key_at(const KvPool& pool, const KvSequence& seq, int pos, int layer, int i) {
  std::vector<float> row(64);
  pool.read_key(seq.block_of(pos, pool), pos % pool.block_tokens(), layer, row.data());
  return row[size_t(i)];
}

void append(KvPool& pool, KvSequence& seq, const std::vector<int>& tokens) {
  ASSERT_TRUE(seq.reserve(pool, int(tokens.size())));
  for (size_t i = 0; i < tokens.size(); ++i) write_token(pool, seq, seq.length() + int(i), tokens[i]);
  seq.advance(int(tokens.size()));
}

// Rows come back as stored, to the precision of the type: F32 exactly, F16 to half a unit in
// the last place (2^-11 relative), Q8_0 to half a quantization step (amax/127 per 32 values)
// plus the rounding of that step to fp16.
TEST(KvPool, StoresRowsInEachType) {
  for (KvType type : {KvType::kF32, KvType::kF16, KvType::kQ8_0}) {
    KvPool pool(small_config(type));
    const int32_t b = pool.allocate();
    const auto k = testing::random_normal(64, 1), v = testing::random_normal(64, 2);
    pool.write(b, 3, 1, k.data(), v.data());
    std::vector<float> k2(64), v2(64);
    pool.read_key(b, 3, 1, k2.data());
    pool.read_value(b, 3, 1, v2.data());
    for (int i = 0; i < 64; ++i) {
      float tol = 0;
      if (type == KvType::kF16) tol = std::fabs(k[size_t(i)]) * 0x1p-11f;
      if (type == KvType::kQ8_0) {
        float amax = 0;
        for (int j = i / 32 * 32; j < i / 32 * 32 + 32; ++j) amax = std::max(amax, std::fabs(k[size_t(j)]));
        // Half a step, plus the scale's fp16 rounding (2^-11 relative) times |q| <= 127.
        tol = amax / 127 * (0.5f + 127 * 0x1p-11f);
      }
      EXPECT_NEAR(k2[size_t(i)], k[size_t(i)], tol) << kv_type_name(type) << " " << i;
      if (type == KvType::kF32) {
        EXPECT_EQ(v2[size_t(i)], v[size_t(i)]);
      }
    }
  }
  EXPECT_THROW(kv_type_from_name("q4_0"), Error);
}

TEST(KvPool, BudgetDecidesTheBlockCountAndAllocationRunsOut) {
  KvPool pool(small_config(KvType::kF16, 5));
  EXPECT_EQ(pool.n_blocks(), 5);
  std::vector<int32_t> got;
  for (int32_t b; (b = pool.allocate()) >= 0;) got.push_back(b);
  EXPECT_EQ(got.size(), 5u);
  EXPECT_EQ(pool.bytes_in_use(), 5 * pool.block_bytes());
  pool.release(got[2]);
  EXPECT_EQ(pool.n_free(), 1);
  EXPECT_EQ(pool.allocate(), got[2]);
  EXPECT_THROW(pool.release(-1), Error);
  KvPoolConfig tiny = small_config();
  tiny.budget_bytes = 100;
  EXPECT_THROW(KvPool{tiny}, Error);
}

TEST(KvPool, ForkSharesBlocksAndCopiesOnWrite) {
  KvPool pool(small_config(KvType::kF32, 8));
  KvSequence parent;
  append(pool, parent, {1, 2, 3, 4, 5, 6});  // blocks: [1 2 3 4] [5 6 . .]
  ASSERT_EQ(parent.blocks().size(), 2u);
  const int free_before = pool.n_free();
  KvSequence child = parent.fork(pool);
  EXPECT_EQ(pool.n_free(), free_before);  // nothing copied
  EXPECT_EQ(child.blocks(), parent.blocks());
  EXPECT_EQ(pool.ref_count(parent.blocks()[0]), 2);

  // The child writes into the shared, half-full second block: it gets a private copy that
  // keeps tokens 5 and 6; the parent's block is untouched.
  append(pool, child, {70, 80});
  EXPECT_EQ(child.blocks()[0], parent.blocks()[0]);
  EXPECT_NE(child.blocks()[1], parent.blocks()[1]);
  EXPECT_EQ(pool.ref_count(parent.blocks()[1]), 1);
  for (int layer = 0; layer < 2; ++layer)
    for (int pos = 0; pos < 6; ++pos)
      EXPECT_EQ(key_at(pool, child, pos, layer, 7), key_at(pool, parent, pos, layer, 7));
  const float parent_slot6 = key_at(pool, parent, 5, 0, 0);
  append(pool, parent, {90});
  EXPECT_EQ(key_at(pool, parent, 5, 0, 0), parent_slot6);
  EXPECT_NE(key_at(pool, parent, 6, 0, 3), key_at(pool, child, 6, 0, 3));  // 90 vs 70

  child.release(pool);
  parent.release(pool);
  EXPECT_EQ(pool.n_free(), pool.n_blocks());
}

TEST(KvPool, FailedReserveChangesNothingAndTruncateFrees) {
  KvPool pool(small_config(KvType::kF16, 3));
  KvSequence s;
  append(pool, s, {1, 2, 3, 4, 5});
  EXPECT_FALSE(s.reserve(pool, 8));  // would need 2 more blocks, 1 is free
  EXPECT_EQ(s.blocks().size(), 2u);
  EXPECT_EQ(pool.n_free(), 1);
  s.truncate(pool, 3);
  EXPECT_EQ(s.blocks().size(), 1u);
  EXPECT_EQ(pool.n_free(), 2);
  EXPECT_THROW(s.truncate(pool, 4), Error);
  s.release(pool);
  EXPECT_EQ(pool.n_free(), 3);
}

TEST(PrefixCache, ReusesWholeBlocksOfASharedPrefix) {
  KvPool pool(small_config(KvType::kF32, 16));
  PrefixCache cache(pool);
  const std::vector<int32_t> a = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  KvSequence sa;
  append(pool, sa, std::vector<int>(a.begin(), a.end()));
  cache.insert(a, sa.blocks());
  EXPECT_EQ(cache.cached_blocks(), 2);  // the full blocks only
  sa.release(pool);
  EXPECT_EQ(pool.n_free(), 16 - 2);  // the tree keeps them

  // A request sharing 9 tokens gets the 2 full blocks and computes from token 8 on.
  const std::vector<int32_t> b = {1, 2, 3, 4, 5, 6, 7, 8, 9, 42, 43};
  std::vector<int32_t> blocks = cache.match(b);
  ASSERT_EQ(blocks.size(), 2u);
  EXPECT_EQ(pool.ref_count(blocks[0]), 2);
  KvSequence sb;
  sb.adopt(blocks, 8);
  append(pool, sb, {9, 42, 43});
  EXPECT_EQ(key_at(pool, sb, 3, 1, 5), [&] {
    KvSequence ref;
    append(pool, ref, {1, 2, 3, 4});
    const float x = key_at(pool, ref, 3, 1, 5);
    ref.release(pool);
    return x;
  }());
  EXPECT_EQ(cache.match({9, 9, 9, 9}).size(), 0u);
  EXPECT_EQ(cache.evictable_blocks(), 0);  // sb still uses both cached blocks
  EXPECT_EQ(cache.evict(5), 0);
  sb.release(pool);
  EXPECT_EQ(cache.evictable_blocks(), 2);
}

TEST(PrefixCache, EvictsLeastRecentlyUsedLeavesFirst) {
  KvPool pool(small_config(KvType::kF16, 16));
  PrefixCache cache(pool);
  auto cache_tokens = [&](const std::vector<int32_t>& t) {
    KvSequence s;
    append(pool, s, std::vector<int>(t.begin(), t.end()));
    cache.insert(t, s.blocks());
    s.release(pool);
  };
  cache_tokens({1, 1, 1, 1, 2, 2, 2, 2});  // root -> A -> B
  cache_tokens({1, 1, 1, 1, 3, 3, 3, 3});  // root -> A -> C
  cache_tokens({4, 4, 4, 4});              // root -> D
  EXPECT_EQ(cache.cached_blocks(), 4);
  for (int32_t b : cache.match({1, 1, 1, 1, 2, 2, 2, 2})) pool.release(b);  // B (and A) used last
  const int free_before = pool.n_free();
  EXPECT_EQ(cache.evict(1), 1);  // C: the oldest leaf
  EXPECT_EQ(pool.n_free(), free_before + 1);
  std::vector<int32_t> got = cache.match({1, 1, 1, 1, 3, 3, 3, 3});
  EXPECT_EQ(got.size(), 1u);  // A is still there, C is gone
  for (int32_t b : got) pool.release(b);
  EXPECT_EQ(cache.evict(10), 3);  // then D, B, and A once it is a leaf
  EXPECT_EQ(cache.cached_blocks(), 0);
  EXPECT_EQ(pool.n_free(), pool.n_blocks());
}

}  // namespace
}  // namespace muse
