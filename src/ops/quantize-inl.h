// SIMD activation quantization (included by matmul-inl.h inside its instruction-set
// namespace, after float_ops-inl.h). Bit-identical to kernels_scalar's quantizers: the same
// float products, rounded to nearest even by the vector conversion as nearbyint does.
#include "util/fp16.h"

namespace muse::MUSE_SIMD_NS {
namespace {

#ifdef __AVX512F__
inline __m512 abs16(__m512 v) { return _mm512_andnot_ps(_mm512_set1_ps(-0.0f), v); }
inline float max16(__m512 v) {
  return hmax256(_mm256_max_ps(_mm512_extractf32x8_ps(v, 0), _mm512_extractf32x8_ps(v, 1)));
}
// Rounds x * scale to the nearest integer and stores the 16 bytes; returns the integers.
inline __m512i round_store16(__m512 x, float scale, int8_t* q) {
  const __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(x, _mm512_set1_ps(scale)));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm512_cvtepi32_epi8(v));
  return v;
}

void quantize_block32(const float* x, int K, int8_t* q, float* d, float* sa, int32_t* sum32) {
  for (int b = 0; b < K / QK; ++b, x += QK, q += QK) {
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float amax = max16(_mm512_max_ps(abs16(v0), abs16(v1)));
    const float scale = amax / 127, inv = amax ? 127.0f / amax : 0.0f;
    const __m512i s = _mm512_add_epi32(round_store16(v0, inv, q), round_store16(v1, inv, q + 16));
    const int sum = _mm512_reduce_add_epi32(s);
    d[b] = fp16_to_float(float_to_fp16(scale));
    sa[b] = d[b] * float(sum);
    sum32[b] = sum;
  }
}

void quantize_block256(const float* x, int K, int8_t* q, float* d, int16_t* sum16, float* sa,
                       int32_t* sum32) {
  for (int b = 0; b < K / QK_K; ++b, x += QK_K, q += QK_K) {
    __m512 v[16], m = _mm512_setzero_ps();
    for (int k = 0; k < 16; ++k) {
      v[k] = _mm512_loadu_ps(x + 16 * k);
      m = _mm512_max_ps(m, abs16(v[k]));
    }
    const float amax = max16(m);
    if (amax == 0) {
      std::fill(q, q + QK_K, 0);
      std::fill(sum16 + 16 * b, sum16 + 16 * b + 16, 0);
      finish_block256(b, 0.0f, d, sum16, sa, sum32);
      continue;
    }
    float max = 0;  // the first value of largest magnitude, sign included
    for (int k = 0; k < 16; ++k)
      if (const __mmask16 at = _mm512_cmpeq_ps_mask(abs16(v[k]), _mm512_set1_ps(amax))) {
        max = x[16 * k + __builtin_ctz(at)];
        break;
      }
    const float iscale = -127.0f / max;
    AVec sums[16];  // exact small integers, so the float lane tree sums them exactly
    for (int k = 0; k < 16; ++k) {
      const __m512i r = _mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v[k], _mm512_set1_ps(iscale))), _mm512_set1_epi32(127));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16 * k), _mm512_cvtepi32_epi8(r));
      sums[k] = _mm512_cvtepi32_ps(r);
    }
    const __m512i group = _mm512_cvtps_epi32(sum_lanes_of_rows(sums));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(sum16 + 16 * b), _mm512_cvtepi32_epi16(group));
    finish_block256(b, 1.0f / iscale, d, sum16, sa, sum32);
  }
}
#endif

}  // namespace
}  // namespace muse::MUSE_SIMD_NS
