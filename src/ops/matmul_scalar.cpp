// Portable fallback: dequantize a weight row, then a plain float dot product with the
// (de-quantized) activations. Slow, obviously correct, used where no SIMD level is available.
#include <vector>

#include "ops/matmul.h"
#include "util/fp16.h"

namespace muse::kernels_scalar {
namespace {

void gemm_any(const GemmTask& g, GgmlType type) {
  const QuantizedActs& a = *g.a;
  const int K = g.K;
  thread_local std::vector<float> w, x;
  w.resize(K);
  x.resize(K);
  for (int t = g.t0; t < g.t1; ++t) {
    if (a.format == ActFormat::kF32) {
      std::copy(a.x_row(t), a.x_row(t) + K, x.begin());
    } else {
      const int unit = a.format == ActFormat::kQ8Block32 ? QK : QK_K;
      const int8_t* q = a.q_row(t);
      const float* d = a.d_row(t);
      for (int k = 0; k < K; ++k) x[k] = d[k / unit] * q[k];
    }
    for (int64_t r = g.r0; r < g.r1; ++r) {
      dequantize_row(type, g.w + r * g.w_row_bytes, w.data(), K);
      float sum = 0;
      for (int k = 0; k < K; ++k) sum += w[k] * x[k];
      g.y[t * g.ldy + r] = sum;
    }
  }
}

template <GgmlType kType>
void gemm(const GemmTask& g) {
  gemm_any(g, kType);
}

float dot_f16(const float* x, const uint16_t* y, int n) {
  float s = 0;
  for (int i = 0; i < n; ++i) s += x[i] * fp16_to_float(y[i]);
  return s;
}
void axpy_f16(float a, const uint16_t* x, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] += a * fp16_to_float(x[i]);
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
  k.dot_f16 = dot_f16;
  k.axpy_f16 = axpy_f16;
  return k;
}

}  // namespace

const KernelSet kSet = make();

}  // namespace muse::kernels_scalar
