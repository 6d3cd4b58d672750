// Portable fallback, and the plainest statement of the canonical arithmetic (matmul.h): every
// SIMD kernel must produce bit-identical results for quantized weights.
#include <cmath>
#include <vector>

#include "ops/matmul.h"
#include "ops/ops.h"
#include "ops/row_decode.h"
#include "util/fp16.h"

namespace muse::kernels_scalar {
namespace {

int32_t dot_u8(const uint8_t* u, const int8_t* a, int n) {
  int32_t s = 0;
  for (int j = 0; j < n; ++j) s += int32_t(u[j]) * a[j];
  return s;
}

float canonical_dot(GgmlType type, const DecodedRow& w, const QuantizedActs& a, int t, int K) {
  const int8_t* q = a.q_row(t);
  const float* da = a.d_row(t);
  float acc = 0;
  switch (quant_family(type)) {
    case QuantFamily::kZeroPoint: {
      const int zero = zero_point(type);
      float chains[4] = {};
      for (int b = 0; b < K / QK; ++b) {
        const int32_t s = dot_u8(&w.u[QK * b], q + QK * b, QK) - zero * a.sum32_row(t)[b];
        chains[b % 4] = std::fma(float(s), w.d[b] * da[b], chains[b % 4]);
      }
      return (chains[0] + chains[1]) + (chains[2] + chains[3]);
    }
    case QuantFamily::kAffine: {
      float chains[4] = {};
      for (int b = 0; b < K / QK; ++b) {
        chains[b % 4] = std::fma(float(dot_u8(&w.u[QK * b], q + QK * b, QK)), w.d[b] * da[b], chains[b % 4]);
        chains[b % 4] = std::fma(w.m[b], a.sa_row(t)[b], chains[b % 4]);
      }
      return (chains[0] + chains[1]) + (chains[2] + chains[3]);
    }
    case QuantFamily::kKAffine:
      for (int i = 0; i < K / QK_K; ++i) {
        int32_t isum = 0, msum = 0;
        for (int j = 0; j < 8; ++j) {
          isum += w.sc[8 * i + j] * dot_u8(&w.u[QK_K * i + 32 * j], q + QK_K * i + 32 * j, 32);
          msum += w.mn[8 * i + j] * a.sum32_row(t)[8 * i + j];
        }
        acc = std::fma(float(isum), w.d[i] * da[i], acc);
        acc = std::fma(float(msum), -(w.m[i] * da[i]), acc);
      }
      return acc;
    case QuantFamily::kKSymmetric:
      for (int i = 0; i < K / QK_K; ++i) {
        int32_t isum = 0;
        for (int g = 0; g < 16; ++g)
          isum += w.sc[16 * i + g] *
                  (dot_u8(&w.u[QK_K * i + 16 * g], q + QK_K * i + 16 * g, 16) - 32 * a.sum16_row(t)[16 * i + g]);
        acc = std::fma(float(isum), w.d[i] * da[i], acc);
      }
      return acc;
    default: return 0;
  }
}

void gemm_quantized(const GemmTask& g, GgmlType type) {
  thread_local DecodedRow w;
  for (int64_t r = g.r0; r < g.r1; ++r) {
    decode_row(type, g.w + r * g.w_row_bytes, g.K, w);
    for (int t = g.t0; t < g.t1; ++t) g.y[t * g.ldy + r] = canonical_dot(type, w, *g.a, t, g.K);
  }
}

void gemm_float(const GemmTask& g, GgmlType type) {
  thread_local std::vector<float> w;
  w.resize(g.K);
  for (int64_t r = g.r0; r < g.r1; ++r) {
    dequantize_row(type, g.w + r * g.w_row_bytes, w.data(), g.K);
    for (int t = g.t0; t < g.t1; ++t) {
      const float* x = g.a->x_row(t);
      float sum = 0;
      for (int k = 0; k < g.K; ++k) sum += w[k] * x[k];
      g.y[t * g.ldy + r] = sum;
    }
  }
}

template <GgmlType kType>
void gemm(const GemmTask& g) {
  if constexpr (kType == GgmlType::F32 || kType == GgmlType::F16 || kType == GgmlType::BF16) gemm_float(g, kType);
  else gemm_quantized(g, kType);
}

void f16_to_f32(const uint16_t* x, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] = fp16_to_float(x[i]);
}
void dot_rows(const float* q, const float* rows, int n_rows, int dim, float scale, float* s) {
  for (int r = 0; r < n_rows; ++r) {
    float d = 0;
    for (int i = 0; i < dim; ++i) d += q[i] * rows[size_t(r) * dim + i];
    s[r] = d * scale;
  }
}
void weighted_rows(const float* p, const float* rows, int n_rows, int dim, float* out) {
  for (int i = 0; i < dim; ++i)
    for (int r = 0; r < n_rows; ++r) out[i] = std::fma(p[r], rows[size_t(r) * dim + i], out[i]);
}

void softmax_rounded(float* x, int n, bool round_f16) {
  softmax(x, n);
  if (round_f16)
    for (int i = 0; i < n; ++i) x[i] = round_to_fp16(x[i]);
}

KernelSet make() {
  KernelSet k{};
  k.name = "scalar";
  k.gemm[int(GgmlType::F32)] = gemm<GgmlType::F32>;
  k.gemm[int(GgmlType::F16)] = gemm<GgmlType::F16>;
  k.gemm[int(GgmlType::BF16)] = gemm<GgmlType::BF16>;
  k.gemm[int(GgmlType::Q4_0)] = gemm<GgmlType::Q4_0>;
  k.gemm[int(GgmlType::Q4_1)] = gemm<GgmlType::Q4_1>;
  k.gemm[int(GgmlType::Q5_0)] = gemm<GgmlType::Q5_0>;
  k.gemm[int(GgmlType::Q5_1)] = gemm<GgmlType::Q5_1>;
  k.gemm[int(GgmlType::Q8_0)] = gemm<GgmlType::Q8_0>;
  k.gemm[int(GgmlType::Q4_K)] = gemm<GgmlType::Q4_K>;
  k.gemm[int(GgmlType::Q5_K)] = gemm<GgmlType::Q5_K>;
  k.gemm[int(GgmlType::Q6_K)] = gemm<GgmlType::Q6_K>;
  k.f16_to_f32 = f16_to_f32;
  k.dot_rows = dot_rows;
  k.weighted_rows = weighted_rows;
  k.softmax = softmax_rounded;
  return k;
}

}  // namespace

const KernelSet kSet = make();

}  // namespace muse::kernels_scalar
