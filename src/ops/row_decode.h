// A quantized weight row in the terms of the canonical arithmetic (see matmul.h): unsigned
// values plus per-block parameters. The scalar kernels compute from it directly, and the
// batched kernels interleave it across rows.
#pragma once
#include <cstdint>
#include <vector>

#include "quant/types.h"

namespace muse {

enum class QuantFamily {
  kZeroPoint,  // Q4_0, Q5_0, Q8_0: value = d * (u - zero), per 32
  kAffine,     // Q4_1, Q5_1: value = d * u + m, per 32
  kKAffine,    // Q4_K, Q5_K: value = d * sc_j * u - dmin * mn_j, sub-blocks of 32 in 256
  kKSymmetric, // Q6_K: value = d * sc_g * (u - 32), groups of 16 in 256
  kFloat,      // F32, F16, BF16
};
constexpr QuantFamily quant_family_of(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q8_0: return QuantFamily::kZeroPoint;
    case GgmlType::Q4_1: case GgmlType::Q5_1: return QuantFamily::kAffine;
    case GgmlType::Q4_K: case GgmlType::Q5_K: return QuantFamily::kKAffine;
    case GgmlType::Q6_K: return QuantFamily::kKSymmetric;
    default: return QuantFamily::kFloat;
  }
}
inline QuantFamily quant_family(GgmlType type) { return quant_family_of(type); }
int zero_point(GgmlType type);  // Q4_0: 8, Q5_0: 16, Q8_0: 128, Q6_K: 32, else 0

struct DecodedRow {
  std::vector<uint8_t> u;        // K values
  std::vector<float> d, m;       // per block of 32 (legacy) or per 256 (k-quants: d, dmin)
  std::vector<int32_t> sc, mn;   // k-quants: per sub-block of 32 (Q4_K, Q5_K) or 16 (Q6_K)
};
void decode_row(GgmlType type, const uint8_t* row, int K, DecodedRow& out);

}  // namespace muse
