// Portable fallback, and the plainest statement of the canonical arithmetic (matmul.h): every
// SIMD kernel must produce bit-identical results for quantized weights.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/matmul.h"
#include "ops/ops.h"
#include "ops/row_decode.h"
#include "util/fp16.h"

namespace muse::kernels_scalar {

// Like llama.cpp's Q8_0/Q8_1 activations: scale amax/127 stored as fp16, round to nearest.
void quantize_block32_row(const float* x, int K, int8_t* q, float* d, float* sa, int32_t* sum32) {
  for (int b = 0; b < K / QK; ++b, x += QK, q += QK) {
    float amax = 0;
    for (int j = 0; j < QK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float scale = amax / 127, inv = amax ? 127.0f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < QK; ++j) {
      q[j] = int8_t(std::nearbyint(x[j] * inv));
      sum += q[j];
    }
    finish_block32(b, scale, sum, d, sa, sum32);
  }
}

// Like llama.cpp's Q8_K: the signed extreme maps to -127, float scale, sums per 16.
void quantize_block256_row(const float* x, int K, int8_t* q, float* d, int16_t* sum16, float* sa,
                           int32_t* sum32) {
  for (int b = 0; b < K / QK_K; ++b, x += QK_K, q += QK_K) {
    float amax = 0, max = 0;
    for (int j = 0; j < QK_K; ++j)
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    if (amax == 0) {
      zero_block256(b, q, d, sum16, sa, sum32);
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < QK_K; ++j) q[j] = int8_t(std::min(127, int(std::nearbyint(iscale * x[j]))));
    for (int g = 0; g < 16; ++g) {
      int s = 0;
      for (int j = 0; j < 16; ++j) s += q[16 * g + j];
      sum16[16 * b + g] = int16_t(s);
    }
    finish_block256(b, 1.0f / iscale, d, sum16, sa, sum32);
  }
}

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
  if constexpr (is_float_type(kType)) {
    gemm_float(g, kType);
  } else {
    gemm_quantized(g, kType);
  }
}

inline float value(float x) { return x; }
inline float value(uint16_t x) { return fp16_to_float(x); }

template <typename Row>
void dot_keys(const float* const* q, float* const* s, int n_q, const KvSpan<Row>& keys,
              float scale) {
  for (int j = 0; j < n_q; ++j)
    for (int t = 0; t < keys.rows; ++t) {
      const Row* key = keys.blocks[t / keys.block] + t % keys.block;
      float p[4] = {};
      for (int i = 0; i < keys.dim; ++i)
        p[i % 4] = std::fma(q[j][i], value(key[size_t(i) * keys.block]), p[i % 4]);
      s[j][t] = ((p[0] + p[1]) + (p[2] + p[3])) * scale;
    }
}
template <typename Row>
void weighted_rows(const float* const* p, float* const* out, int n_q, const KvSpan<Row>& v) {
  for (int j = 0; j < n_q; ++j)
    for (int i = 0; i < v.dim; ++i)
      for (int r = 0; r < v.rows; ++r)
        out[j][i] = std::fma(p[j][r], value(v.blocks[r / v.block][size_t(r % v.block) * v.dim + i]),
                             out[j][i]);
}

void to_f16(const float* x, uint16_t* out, int n) {
  for (int i = 0; i < n; ++i) out[i] = float_to_fp16(x[i]);
}
void round_f16(float* x, int n) {
  for (int i = 0; i < n; ++i) x[i] = round_to_fp16(x[i]);
}

void softmax_rounded(float* x, int n, bool round_f16_after) {
  softmax(x, n);
  if (round_f16_after) round_f16(x, n);
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
  k.dot_keys = dot_keys<float>;
  k.dot_keys_f16 = dot_keys<uint16_t>;
  k.weighted_rows = weighted_rows<float>;
  k.weighted_rows_f16 = weighted_rows<uint16_t>;
  k.softmax = softmax_rounded;
  k.swiglu = muse::swiglu;
  k.to_f16 = to_f16;
  k.round_f16 = round_f16;
  k.quantize_block32 = quantize_block32_row;
  k.quantize_block256 = quantize_block256_row;
  return k;
}

}  // namespace

const KernelSet kSet = make();

}  // namespace muse::kernels_scalar
