#include "ops/matmul.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "ops/packed_weights.h"
#include "testing/test_support.h"
#include "util/fp16.h"
#include "util/thread_pool.h"

namespace muse {
namespace {

using testing::random_normal;

std::vector<SimdLevel> available_levels() {
  std::vector<SimdLevel> levels = {SimdLevel::kScalar};
  const CpuFeatures& f = cpu_features();
  if (f.avx2 && f.fma && f.f16c) levels.push_back(SimdLevel::kAvx2);
  if (f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni) levels.push_back(SimdLevel::kAvx512);
  return levels;
}

struct Case {
  GgmlType type;
  int K;
};

// Every kernel against a float64 reference built from the scalar dequantizers:
// sum_k w[k] * a[k], with w the dequantized weights and a the dequantized activations
// (the kernels compute exactly this in integer and float32 arithmetic). The bound is
// relative to sum_k |w[k] a[k]|: float32 accumulation of K products errs by at most about
// K * 2^-24 of it in the worst case (4.6e-5 for K = 768) and by about sqrt(K) * 2^-24
// (1.7e-6) typically; 2e-5 sits between the two.
class Kernels : public ::testing::TestWithParam<Case> {};

TEST_P(Kernels, MatchFloat64ReferenceOnRandomData) {
  const auto [type, K] = GetParam();
  const int rows = 37;
  const std::vector<float> wf = random_normal(size_t(rows) * K, 1);
  std::vector<uint8_t> w(row_bytes(type, K) * rows);
  for (int r = 0; r < rows; ++r)
    quantize_row(type, wf.data() + size_t(r) * K, w.data() + r * row_bytes(type, K), K);
  std::vector<float> wd(size_t(rows) * K);
  for (int r = 0; r < rows; ++r)
    dequantize_row(type, w.data() + r * row_bytes(type, K), &wd[size_t(r) * K], K);

  // Every tile width (and both reduction paths) of the kernels.
  for (int T : {1, 2, 4, 5, 7, 9, 19, 27}) {
    const std::vector<float> x = random_normal(size_t(T) * K, 100 + T);
    QuantizedActs acts;
    quantize_acts(x.data(), K, T, K, act_format(type), acts);
    // Dequantized activations: what the integer kernels actually multiply.
    std::vector<double> xd(size_t(T) * K);
    for (int t = 0; t < T; ++t)
      for (int k = 0; k < K; ++k) {
        if (acts.format == ActFormat::kF32)
          xd[size_t(t) * K + k] = x[size_t(t) * K + k];
        else {
          const int unit = acts.format == ActFormat::kQ8Block32 ? QK : QK_K;
          xd[size_t(t) * K + k] = double(acts.d_row(t)[k / unit]) * acts.q_row(t)[k];
        }
      }
    // Each kernel set's per-row kernel over all rows, its batched kernel (if any) over whole
    // groups of kRowGroup rows, and its packed kernel (if any) over the packed groups; the
    // rows after the last whole group through the per-row kernel.
    std::vector<uint8_t> packed;
    if (packable(type, K)) {
      packed.resize(packed_bytes(type, rows, K));
      pack_groups(type, w.data(), K, 0, rows / kRowGroup, packed.data());
    }
    enum Variant { kRows, kBatched, kPacked };
    std::vector<std::pair<std::string, std::vector<float>>> results;
    for (SimdLevel level : available_levels()) {
      const KernelSet& ks = kernels_for(level);
      for (Variant variant : {kRows, kBatched, kPacked}) {
        const GemmKernel group_kernel = variant == kBatched  ? ks.gemm_rows[int(type)]
                                        : variant == kPacked ? (packed.empty() ? nullptr : ks.gemm_packed[int(type)])
                                                             : nullptr;
        if (variant != kRows && !group_kernel) continue;
        std::vector<float> y(size_t(T) * rows, -1e30f);
        GemmTask g;
        g.w = w.data();
        g.w_row_bytes = row_bytes(type, K);
        g.K = K;
        g.a = &acts;
        g.t0 = 0;
        g.t1 = T;
        g.y = y.data();
        g.ldy = rows;
        if (variant == kBatched) {
          for (int r0 = 0; r0 + kRowGroup <= rows; r0 += kRowGroup) {
            g.r0 = r0;
            g.r1 = r0 + kRowGroup;
            group_kernel(g);
          }
        } else if (variant == kPacked) {
          GemmTask p = g;
          p.w = packed.data();
          p.r0 = 0;
          p.r1 = rows / kRowGroup * kRowGroup;
          group_kernel(p);
        }
        g.r0 = variant == kRows ? 0 : rows / kRowGroup * kRowGroup;
        g.r1 = rows;
        ks.gemm[int(type)](g);
        results.emplace_back(std::string(ks.name) + (variant == kBatched ? " batched" : variant == kPacked ? " packed" : ""), y);
      }
    }
    for (const auto& [name, y] : results) {
      for (int t = 0; t < T; ++t)
        for (int r = 0; r < rows; ++r) {
          double ref = 0, mag = 0;
          for (int k = 0; k < K; ++k) {
            const double p = double(wd[size_t(r) * K + k]) * xd[size_t(t) * K + k];
            ref += p;
            mag += std::fabs(p);
          }
          ASSERT_NEAR(y[size_t(t) * rows + r], ref, 2e-5 * mag + 1e-6)
              << type_name(type) << " K=" << K << " T=" << T << " row " << r << " token " << t
              << " kernels " << name;
        }
      // Quantized weights: every kernel follows the canonical arithmetic (matmul.h) exactly.
      if (act_format(type) != ActFormat::kF32) {
        ASSERT_EQ(y, results.front().second) << type_name(type) << " K=" << K << " T=" << T << ": "
                                             << name << " differs from " << results.front().first;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllTypes, Kernels,
    ::testing::Values(Case{GgmlType::F32, 100}, Case{GgmlType::F32, 576}, Case{GgmlType::F16, 100},
                      Case{GgmlType::F16, 576}, Case{GgmlType::BF16, 48}, Case{GgmlType::BF16, 576},
                      Case{GgmlType::Q4_0, 32}, Case{GgmlType::Q4_0, 576}, Case{GgmlType::Q4_1, 96},
                      Case{GgmlType::Q5_0, 576}, Case{GgmlType::Q5_1, 96}, Case{GgmlType::Q8_0, 32},
                      Case{GgmlType::Q8_0, 576}, Case{GgmlType::Q4_K, 256},
                      Case{GgmlType::Q4_K, 768}, Case{GgmlType::Q5_K, 256},
                      Case{GgmlType::Q5_K, 768}, Case{GgmlType::Q6_K, 256},
                      Case{GgmlType::Q6_K, 768}),
    [](const auto& info) {
      return std::string(type_name(info.param.type)) + "_K" + std::to_string(info.param.K);
    });

// A token's result for a row is the same bit for bit whatever other tokens and rows share the
// call (a sequence decoded in a batch must match it decoded alone): each kernel over 27 tokens
// and all rows against one token at a time over 5 rows at a time (so no 16-row block forms),
// and each packed kernel likewise over whole groups; float weights (K not a multiple of the
// vector width included) and one of each quantized kind.
TEST(Kernels, TokenResultsDoNotDependOnTheBatch) {
  const int rows = 48;
  for (const auto& [type, K] : {std::pair{GgmlType::F32, 100},
                                {GgmlType::F16, 259},
                                {GgmlType::BF16, 64},
                                {GgmlType::Q8_0, 96},
                                {GgmlType::Q4_K, 256}}) {
    const std::vector<float> wf = random_normal(size_t(rows) * K, 5);
    const size_t rb = row_bytes(type, K);
    std::vector<uint8_t> w(rb * rows), packed;
    for (int r = 0; r < rows; ++r) quantize_row(type, &wf[size_t(r) * K], &w[r * rb], K);
    if (packable(type, K)) {
      packed.resize(packed_bytes(type, rows, K));
      pack_groups(type, w.data(), K, 0, rows / kRowGroup, packed.data());
    }
    const int T = 27;
    const std::vector<float> x = random_normal(size_t(T) * K, 6);
    QuantizedActs acts;
    quantize_acts(x.data(), K, T, K, act_format(type), acts);
    for (SimdLevel level : available_levels()) {
      const KernelSet& ks = kernels_for(level);
      for (const bool use_packed : {false, true}) {
        const GemmKernel kernel = use_packed
                                      ? (packed.empty() ? nullptr : ks.gemm_packed[int(type)])
                                      : ks.gemm[int(type)];
        if (!kernel) continue;
        std::vector<float> together(size_t(T) * rows), alone(size_t(T) * rows);
        GemmTask g;
        g.w = use_packed ? packed.data() : w.data();
        g.w_row_bytes = rb;
        g.K = K;
        g.a = &acts;
        g.ldy = rows;
        g.r0 = 0;
        g.r1 = rows;
        g.t0 = 0;
        g.t1 = T;
        g.y = together.data();
        kernel(g);
        g.y = alone.data();
        const int row_step = use_packed ? kRowGroup : 5;
        for (int t = 0; t < T; ++t)
          for (int r = 0; r < rows; r += row_step) {
            g.t0 = t;
            g.t1 = t + 1;
            g.r0 = r;
            g.r1 = std::min(rows, r + row_step);
            kernel(g);
          }
        EXPECT_EQ(together, alone)
            << type_name(type) << " " << ks.name << (use_packed ? " packed" : "");
      }
    }
  }
}

// Activation quantization: each value is within half a step of its original (the stored
// scale is rounded to fp16 for the 32-blocks, which moves the grid by at most 2^-11 of it).
TEST(ActivationQuantization, ValuesWithinHalfAStep) {
  const int K = 512, T = 3;
  const std::vector<float> x = random_normal(size_t(T) * K, 5);
  for (ActFormat fmt : {ActFormat::kQ8Block32, ActFormat::kQ8Block256}) {
    QuantizedActs a;
    quantize_acts(x.data(), K, T, K, fmt, a);
    const int unit = fmt == ActFormat::kQ8Block32 ? QK : QK_K;
    for (int t = 0; t < T; ++t)
      for (int k = 0; k < K; ++k) {
        const float d = a.d_row(t)[k / unit];
        ASSERT_NEAR(a.q_row(t)[k] * d, x[size_t(t) * K + k],
                    0.5f * std::fabs(d) * (1 + 128.0f / 2048) + 1e-7f);
      }
    if (fmt == ActFormat::kQ8Block256)
      for (int t = 0; t < T; ++t)
        for (int g = 0; g < K / 16; ++g) {
          int s = 0;
          for (int j = 0; j < 16; ++j) s += a.q_row(t)[16 * g + j];
          ASSERT_EQ(a.sum16_row(t)[g], s);
        }
  }
}

// Every kernel set quantizes activations to the same bytes as the scalar reference: random
// rows, plus blocks that are all zero, whose extreme value occurs with both signs (the first
// one sets the scale), and whose products land exactly halfway between integers.
TEST(ActivationQuantization, KernelSetsMatchScalarBitForBit) {
  const int K = 1024, T = 3;
  std::vector<float> x = random_normal(size_t(T) * K, 42);
  std::fill(x.begin() + 256, x.begin() + 512, 0.0f);
  x[600] = -9.5f;
  x[700] = 9.5f;
  for (int j = 0; j < 32; ++j) x[size_t(K) + 32 + j] = 127.0f * float(j - 16) / 32 + 0.5f;
  x[size_t(K) + 32] = -127.0f;
  const KernelSet& scalar = kernels_for(SimdLevel::kScalar);
  for (SimdLevel level : available_levels()) {
    const KernelSet& k = kernels_for(level);
    for (int t = 0; t < T; ++t) {
      const float* row = x.data() + size_t(t) * K;
      std::vector<int8_t> q1(K), q2(K);
      std::vector<float> d1(K / QK), d2(K / QK), sa1(K / QK), sa2(K / QK);
      std::vector<int32_t> s1(K / QK), s2(K / QK);
      std::vector<int16_t> g1(K / 16), g2(K / 16);
      scalar.quantize_block32(row, K, q1.data(), d1.data(), sa1.data(), s1.data());
      k.quantize_block32(row, K, q2.data(), d2.data(), sa2.data(), s2.data());
      EXPECT_TRUE(q1 == q2 && d1 == d2 && sa1 == sa2 && s1 == s2) << k.name << " block32 row " << t;
      scalar.quantize_block256(row, K, q1.data(), d1.data(), g1.data(), sa1.data(), s1.data());
      k.quantize_block256(row, K, q2.data(), d2.data(), g2.data(), sa2.data(), s2.data());
      d1.resize(K / QK_K);
      d2.resize(K / QK_K);
      EXPECT_TRUE(q1 == q2 && d1 == d2 && g1 == g2 && sa1 == sa2 && s1 == s2) << k.name << " block256 row " << t;
    }
  }
}

TEST(Matmul, ThreadCountDoesNotChangeResults) {
  const int K = 768, rows = 301, T = 7;
  const std::vector<float> wf = random_normal(size_t(rows) * K, 3),
                           x = random_normal(size_t(T) * K, 4);
  std::vector<uint8_t> w(row_bytes(GgmlType::Q4_K, K) * rows);
  for (int r = 0; r < rows; ++r)
    quantize_row(GgmlType::Q4_K, &wf[size_t(r) * K], &w[r * row_bytes(GgmlType::Q4_K, K)], K);
  const Matrix m{GgmlType::Q4_K, w.data(), rows, K};
  std::vector<float> y1(size_t(T) * rows), y2(size_t(T) * rows);
  QuantizedActs scratch;
  ThreadPool one(1), two(2);
  matmul(m, x.data(), K, T, y1.data(), rows, one, scratch);
  matmul(m, x.data(), K, T, y2.data(), rows, two, scratch);
  EXPECT_EQ(y1, y2);
}

// Blocks of `block` rows of dim values, placed in memory in reverse order (so the kernels must
// follow the block table): by dimension within a block for keys, as rows for values.
template <typename Row>
struct BlockTable {
  std::vector<Row> storage;
  std::vector<const Row*> blocks;
  BlockTable(const std::vector<Row>& rows, int n_rows, int dim, int block, bool by_dimension) {
    const int n_blocks = (n_rows + block - 1) / block;
    storage.resize(size_t(n_blocks) * block * dim);
    for (int b = 0; b < n_blocks; ++b)
      blocks.push_back(storage.data() + size_t(n_blocks - 1 - b) * block * dim);
    for (int t = 0; t < n_rows; ++t)
      for (int i = 0; i < dim; ++i) {
        Row* base = storage.data() + (blocks[size_t(t / block)] - storage.data());
        base[by_dimension ? size_t(i) * block + t % block : size_t(t % block) * dim + i] =
            rows[size_t(t) * dim + i];
      }
  }
  KvSpan<Row> span(int n_rows, int dim, int block, int first = 0) const {
    return {blocks.data() + first, block, n_rows, dim};
  }
};

// The attention kernels against float64: a dot product's error is that of float32 summation
// (1e-6 of the sum of magnitudes covers 77 terms); weighted rows are one FMA per row and
// element. 21 rows cover a full group of vector lanes and a partial one, in blocks of 8 (whole
// AVX2 tiles, part of an AVX-512 one), 16 and 21 (one block of any size). A query's results
// are the same alone, with other queries, split into calls at a block, and in blocks of any
// size; scores are the same in every kernel set (their arithmetic is specified lane by lane).
// The F16 kernels convert exactly, so over F16 rows they must give bit for bit what the float
// kernels give over the converted rows.
TEST(AttentionKernels, DotsAndWeightedRowsMatchFloat64) {
  for (int n : {32, 77, 128}) {  // small and usual head sizes (unrolled kernels), and any length
    const int rows = 21, n_q = 5;
    const std::vector<float> qs = random_normal(size_t(n) * n_q, 9), yf = random_normal(size_t(n) * rows, 10),
                             ps = random_normal(size_t(rows) * n_q, 11);
    std::vector<uint16_t> y(yf.size());
    for (size_t i = 0; i < y.size(); ++i) y[i] = float_to_fp16(yf[i]);
    std::vector<float> yc(y.size());
    for (size_t i = 0; i < y.size(); ++i) yc[i] = fp16_to_float(y[i]);
    std::vector<const float*> q_at(n_q), p_at(n_q);
    for (int j = 0; j < n_q; ++j) {
      q_at[j] = qs.data() + size_t(j) * n;
      p_at[j] = ps.data() + size_t(j) * rows;
    }
    std::vector<float> first_scores;     // the first kernel set's, for block 8
    std::vector<float> whole_block_out;  // weighted rows in one block of 21, per kernel set
    for (int block : {21, 8, 16}) {
      const BlockTable<float> keys(yc, rows, n, block, true), values(yc, rows, n, block, false);
      const BlockTable<uint16_t> keys16(y, rows, n, block, true),
          values16(y, rows, n, block, false);
      const std::vector<SimdLevel> levels = available_levels();
      for (size_t set = 0; set < levels.size(); ++set) {
        const KernelSet& k = kernels_for(levels[set]);
        std::vector<float> s(size_t(rows) * n_q), s16(s.size()), alone(s.size()),
            by_block(s.size());
        std::vector<float*> s_at(n_q), s16_at(n_q), by_block_at(n_q);
        for (int j = 0; j < n_q; ++j) {
          s_at[j] = s.data() + size_t(j) * rows;
          s16_at[j] = s16.data() + size_t(j) * rows;
          by_block_at[j] = by_block.data() + size_t(j) * rows;
          float* alone_at = alone.data() + size_t(j) * rows;
          k.dot_keys(&q_at[j], &alone_at, 1, keys.span(rows, n, block), 0.5f);
        }
        k.dot_keys(q_at.data(), s_at.data(), n_q, keys.span(rows, n, block), 0.5f);
        k.dot_keys_f16(q_at.data(), s16_at.data(), n_q, keys16.span(rows, n, block), 0.5f);
        for (int b = 0; b * block < rows; ++b) {
          std::vector<float*> at(n_q);
          for (int j = 0; j < n_q; ++j) at[j] = by_block_at[j] + b * block;
          k.dot_keys(q_at.data(), at.data(), n_q,
                     keys.span(std::min(block, rows - b * block), n, block, b), 0.5f);
        }
        EXPECT_EQ(s16, s) << k.name;
        EXPECT_EQ(alone, s) << k.name;
        EXPECT_EQ(by_block, s) << k.name;
        if (first_scores.empty()) first_scores = s;
        EXPECT_EQ(s, first_scores) << k.name << " against the first kernel set, block " << block;
        for (int j = 0; j < n_q; ++j)
          for (int r = 0; r < rows; ++r) {
            double ref = 0, mag = 0;
            for (int i = 0; i < n; ++i) {
              ref += double(q_at[j][i]) * yc[size_t(r) * n + i];
              mag += std::fabs(double(q_at[j][i]) * yc[size_t(r) * n + i]);
            }
            EXPECT_NEAR(s_at[j][r], 0.5 * ref, 1e-6 * mag) << k.name;
          }

        std::vector<float> whole(qs), split(qs), one(qs), whole16(qs);
        std::vector<float*> whole_at(n_q), split_at(n_q), whole16_at(n_q);
        for (int j = 0; j < n_q; ++j) {
          whole_at[j] = whole.data() + size_t(j) * n;
          split_at[j] = split.data() + size_t(j) * n;
          whole16_at[j] = whole16.data() + size_t(j) * n;
        }
        k.weighted_rows(p_at.data(), whole_at.data(), n_q, values.span(rows, n, block));
        k.weighted_rows_f16(p_at.data(), whole16_at.data(), n_q, values16.span(rows, n, block));
        EXPECT_EQ(whole16, whole) << k.name;
        if (block == 21) whole_block_out.insert(whole_block_out.end(), whole.begin(), whole.end());
        EXPECT_TRUE(std::equal(whole.begin(), whole.end(),
                               whole_block_out.begin() + std::ptrdiff_t(set * whole.size())))
            << k.name << ": blocks of " << block << " against one block";
        if (block < rows) {  // the first block in one call, the rest in another
          k.weighted_rows(p_at.data(), split_at.data(), n_q, values.span(block, n, block));
          std::vector<const float*> p_rest(n_q);
          for (int j = 0; j < n_q; ++j) p_rest[j] = p_at[j] + block;
          k.weighted_rows(p_rest.data(), split_at.data(), n_q,
                          values.span(rows - block, n, block, 1));
          EXPECT_EQ(split, whole) << k.name;
        }
        for (int j = 0; j < n_q; ++j) {
          float* out = one.data() + size_t(j) * n;
          k.weighted_rows(&p_at[j], &out, 1, values.span(rows, n, block));
          for (int i = 0; i < n; ++i) {
            double ref = qs[size_t(j) * n + i], mag = std::fabs(ref);
            for (int r = 0; r < rows; ++r) {
              ref += double(p_at[j][r]) * yc[size_t(r) * n + i];
              mag += std::fabs(double(p_at[j][r]) * yc[size_t(r) * n + i]);
            }
            EXPECT_NEAR(whole_at[j][i], ref, 1e-6 * mag) << k.name;
            EXPECT_EQ(whole_at[j][i], out[i]) << k.name << " query " << j;
          }
        }
      }
    }
  }
}

// F16 conversion against util/fp16.h's round-to-nearest-even, bit for bit, on values from F16
// subnormals to overflow (both signs, ties included: every 2^-11 step of 1.0 plus a half step),
// infinities and NaN (any NaN), for every length remainder.
TEST(AttentionKernels, F16ConversionMatchesScalarRounding) {
  std::vector<float> x;
  for (float v : random_normal(600, 41)) x.push_back(v * std::exp2(float(int(x.size() % 48) - 28)));
  for (int i = 0; i < 40; ++i) x.push_back(1.0f + (float(i) + 0.5f) * 0x1p-10f);
  for (float v : {0.0f, -0.0f, 65504.0f, 65520.0f, 1e6f, -1e6f, 0x1p-24f, 0x1p-25f, 0x1.8p-25f,
                  std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                  std::numeric_limits<float>::quiet_NaN()})
    x.push_back(v);
  for (SimdLevel level : available_levels()) {
    const KernelSet& k = kernels_for(level);
    for (int n : {int(x.size()), 13, 7, 1}) {
      std::vector<uint16_t> h(size_t(n), 0xffff);
      std::vector<float> r(x.begin(), x.begin() + n);
      k.to_f16(x.data(), h.data(), n);
      k.round_f16(r.data(), n);
      for (int i = 0; i < n; ++i) {
        if (std::isnan(x[size_t(i)])) {
          EXPECT_TRUE(std::isnan(fp16_to_float(h[size_t(i)])) && std::isnan(r[size_t(i)]))
              << k.name;
          continue;
        }
        EXPECT_EQ(h[size_t(i)], float_to_fp16(x[size_t(i)])) << k.name << " " << x[size_t(i)];
        EXPECT_EQ(float_to_bits(r[size_t(i)]), float_to_bits(round_to_fp16(x[size_t(i)])))
            << k.name << " " << x[size_t(i)];
      }
    }
  }
}

// SwiGLU against float64 on values spread over +-40 (both sigmoid branches, saturation):
// the vector exp is within 2 ulp and the sigmoid adds a division and a product, so 1e-6
// relative plus 1e-30 absolute holds.
TEST(AttentionKernels, SwigluMatchesFloat64) {
  const int n = 1000;
  std::vector<float> gate = random_normal(n, 31), x0 = random_normal(n, 32);
  for (float& g : gate) g *= 15;
  for (SimdLevel level : available_levels()) {
    const KernelSet& k = kernels_for(level);
    std::vector<float> x(x0);
    k.swiglu(gate.data(), x.data(), n);
    for (int i = 0; i < n; ++i) {
      const double g = gate[size_t(i)], ref = double(x0[size_t(i)]) * g / (1 + std::exp(-g));
      EXPECT_NEAR(x[size_t(i)], ref, 1e-6 * std::fabs(ref) + 1e-30) << k.name << " gate " << g;
    }
  }
}

// Softmax against float64 over lengths around the vector width, with scores spread over +-30
// so that some probabilities are tiny: the vector exp is within 2 ulp and the sum adds a few
// more, so 1e-6 relative plus 1e-12 absolute holds. With F16 rounding, every probability is an
// F16 value within half an F16 ulp (2^-11 relative) of the float result.
TEST(AttentionKernels, SoftmaxMatchesFloat64) {
  for (int n : {1, 7, 16, 17, 33, 577}) {
    std::vector<float> x = random_normal(size_t(n), 20 + n);
    for (float& v : x) v *= 10;
    double mx = -1e300, sum = 0;
    for (float v : x) mx = std::max(mx, double(v));
    for (float v : x) sum += std::exp(double(v) - mx);
    for (SimdLevel level : available_levels()) {
      const KernelSet& k = kernels_for(level);
      std::vector<float> p(x), p16(x);
      k.softmax(p.data(), n, false);
      k.softmax(p16.data(), n, true);
      for (int i = 0; i < n; ++i) {
        const double ref = std::exp(double(x[size_t(i)]) - mx) / sum;
        EXPECT_NEAR(p[size_t(i)], ref, 1e-6 * ref + 1e-12) << k.name << " n=" << n << " i=" << i;
        EXPECT_EQ(p16[size_t(i)], round_to_fp16(p16[size_t(i)])) << k.name;
        EXPECT_NEAR(p16[size_t(i)], ref, ref / 2048 + 1e-7) << k.name;
      }
    }
  }
}

}  // namespace
}  // namespace muse
