#include "quant/types.h"

#include <gtest/gtest.h>

#include "testing/test_support.h"

#include <cmath>
#include <random>
#include <vector>

#include "util/fp16.h"

namespace muse {
namespace {

using testing::random_normal;

TEST(Fp16, EveryHalfSurvivesARoundTrip) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_float(uint16_t(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_fp16(f), h) << "half 0x" << std::hex << h;
  }
}

TEST(Fp16, RoundsToNearestEven) {
  EXPECT_EQ(float_to_fp16(1.0f + 1.0f / 2048), 0x3c00);        // tie: down to even
  EXPECT_EQ(float_to_fp16(1.0f + 3.0f / 2048), 0x3c02);        // tie: up to even
  EXPECT_EQ(float_to_fp16(65520.0f), 0x7c00);                  // overflows to infinity
  EXPECT_EQ(float_to_fp16(5.9604645e-8f), 0x0001);             // smallest subnormal
  EXPECT_EQ(float_to_bf16(1.0f + 1.0f / 256), 0x3f80);         // tie to even
  EXPECT_EQ(bf16_to_float(float_to_bf16(-2.5f)), -2.5f);
}

// Quantization error of N(0,1) data, as root-mean-square. Bounds come from the step size:
// uniform rounding with step s has RMS error s/sqrt(12); e.g. Q4_0's step is about
// amax/8 ~ 0.27 for 32 normal samples, so RMS ~ 0.08.
struct RoundTripCase {
  GgmlType type;
  double max_rms;
};

class RoundTrip : public ::testing::TestWithParam<RoundTripCase> {};

TEST_P(RoundTrip, ErrorIsWithinTheStepSize) {
  const auto [type, max_rms] = GetParam();
  const int n = 4096;
  const std::vector<float> x = random_normal(n, 7);
  std::vector<uint8_t> q(row_bytes(type, n));
  std::vector<float> y(n);
  quantize_row(type, x.data(), q.data(), n);
  dequantize_row(type, q.data(), y.data(), n);
  double se = 0;
  for (int i = 0; i < n; ++i) se += (x[i] - y[i]) * (x[i] - y[i]);
  const double rms = std::sqrt(se / n);
  EXPECT_LT(rms, max_rms) << type_name(type);
  EXPECT_GT(rms, 0.0) << "quantization to " << type_name(type) << " should lose something";
}

INSTANTIATE_TEST_SUITE_P(AllTypes, RoundTrip,
                         ::testing::Values(RoundTripCase{GgmlType::F16, 1e-3},
                                           RoundTripCase{GgmlType::BF16, 5e-3},
                                           RoundTripCase{GgmlType::Q8_0, 0.01},
                                           RoundTripCase{GgmlType::Q4_0, 0.1},
                                           RoundTripCase{GgmlType::Q4_1, 0.1},
                                           RoundTripCase{GgmlType::Q5_0, 0.05},
                                           RoundTripCase{GgmlType::Q5_1, 0.05},
                                           RoundTripCase{GgmlType::Q4_K, 0.12},
                                           RoundTripCase{GgmlType::Q5_K, 0.06},
                                           RoundTripCase{GgmlType::Q6_K, 0.03}),
                         [](const auto& info) { return std::string(type_name(info.param.type)); });

// Hand-built blocks pin the bit layouts to llama.cpp's.
TEST(BlockLayout, Q4_0NibblesAreLowHalfThenHighHalf) {
  BlockQ4_0 b{};
  b.d = float_to_fp16(0.5f);
  for (int j = 0; j < 16; ++j) b.qs[j] = 0x88;  // value 0
  b.qs[0] = 0x1F;                               // element 0: 15-8=7, element 16: 1-8=-7
  float y[32];
  dequantize_row(GgmlType::Q4_0, &b, y, 32);
  EXPECT_EQ(y[0], 3.5f);
  EXPECT_EQ(y[16], -3.5f);
  EXPECT_EQ(y[1], 0.0f);
}

TEST(BlockLayout, Q5_0HighBitsComeFromQh) {
  BlockQ5_0 b{};
  b.d = float_to_fp16(1.0f);
  for (int j = 0; j < 16; ++j) b.qs[j] = 0;
  const uint32_t qh = (1u << 3) | (1u << 20);  // element 3 and element 20 get +16
  std::memcpy(b.qh, &qh, 4);
  float y[32];
  dequantize_row(GgmlType::Q5_0, &b, y, 32);
  EXPECT_EQ(y[3], 0.0f);   // 16 - 16
  EXPECT_EQ(y[20], 0.0f);
  EXPECT_EQ(y[4], -16.0f);
}

TEST(BlockLayout, KScalesUnpackWhatPackWrote) {
  // Scales 0..7 = 1, 20, 33, 63, 5, 40, 17, 62 and mins 2, 60, 0, 31, 63, 1, 48, 9.
  const uint8_t sc[8] = {1, 20, 33, 63, 5, 40, 17, 62}, mn[8] = {2, 60, 0, 31, 63, 1, 48, 9};
  uint8_t packed[12];
  for (int j = 0; j < 4; ++j) {
    packed[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
    packed[j + 4] = (mn[j] & 63) | ((mn[j + 4] >> 4) << 6);
    packed[j + 8] = (sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4);
  }
  for (int j = 0; j < 8; ++j) {
    uint8_t s, m;
    k_scale_min(j, packed, &s, &m);
    EXPECT_EQ(s, sc[j]) << j;
    EXPECT_EQ(m, mn[j]) << j;
  }
}

TEST(BlockLayout, Q6_KElementPlacement) {
  BlockQ6_K b{};
  b.d = float_to_fp16(1.0f);
  for (int g = 0; g < 16; ++g) b.scales[g] = 1;
  for (auto& v : b.ql) v = 0x00;
  for (auto& v : b.qh) v = 0xAA;  // every 2-bit field = 2 -> q = 32 -> value 0
  b.ql[0] = 0x35;                 // element 0 low 4 bits = 5, element 64 low 4 bits = 3
  float y[256];
  dequantize_row(GgmlType::Q6_K, &b, y, 256);
  EXPECT_EQ(y[0], 5.0f);
  EXPECT_EQ(y[64], 3.0f);
  EXPECT_EQ(y[1], 0.0f);
  b.qh[0] = 0xAB;  // element 0's high bits become 3: q = 48 + 5 - 32 = 21
  dequantize_row(GgmlType::Q6_K, &b, y, 256);
  EXPECT_EQ(y[0], 21.0f);
}

TEST(Types, NamesRoundTrip) {
  for (GgmlType t : {GgmlType::F32, GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::BF16, GgmlType::Q5_1})
    EXPECT_EQ(type_from_name(type_name(t)), t);
  EXPECT_EQ(type_from_name("Q4_K"), GgmlType::Q4_K);
  EXPECT_FALSE(type_from_name("q3_kz").has_value());
  EXPECT_EQ(row_bytes(GgmlType::Q4_K, 512), 288u);
}

}  // namespace
}  // namespace muse
