// SIMD activation quantization (included by matmul-inl.h inside its instruction-set
// namespace, after float_ops-inl.h). Bit-identical to kernels_scalar's quantizers: the same
// float products, rounded to nearest even by the vector conversion as nearbyint does.

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
    finish_block32(b, scale, sum, d, sa, sum32);
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
      zero_block256(b, q, d, sum16, sa, sum32);
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
#else
inline __m256 abs8(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }
// Rounds 16 values times scale to the nearest integers, at most 127 (Q8_K's cap; for Q8_0
// |x * scale| <= 127 already), stores them as bytes in order and returns their sum.
inline int round_store16(const float* x, __m256 scale, int8_t* q) {
  const __m256i top = _mm256_set1_epi32(127);
  const __m256i r0 =
      _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), scale)), top);
  const __m256i r1 =
      _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8), scale)), top);
  const __m256i w = _mm256_packs_epi32(r0, r1);  // [r0 0-3, r1 0-3 | r0 4-7, r1 4-7]
  const __m128i lo = _mm256_castsi256_si128(w), hi = _mm256_extracti128_si256(w, 1);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q),
                   _mm_packs_epi16(_mm_unpacklo_epi64(lo, hi), _mm_unpackhi_epi64(lo, hi)));
  return hsum_epi32(_mm256_add_epi32(r0, r1));
}

void quantize_block32(const float* x, int K, int8_t* q, float* d, float* sa, int32_t* sum32) {
  for (int b = 0; b < K / QK; ++b, x += QK, q += QK) {
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < 4; ++k) m = _mm256_max_ps(m, abs8(_mm256_loadu_ps(x + 8 * k)));
    const float amax = hmax256(m);
    const float scale = amax / 127, inv = amax ? 127.0f / amax : 0.0f;
    const int sum = round_store16(x, _mm256_set1_ps(inv), q) +
                    round_store16(x + 16, _mm256_set1_ps(inv), q + 16);
    finish_block32(b, scale, sum, d, sa, sum32);
  }
}

void quantize_block256(const float* x, int K, int8_t* q, float* d, int16_t* sum16, float* sa,
                       int32_t* sum32) {
  for (int b = 0; b < K / QK_K; ++b, x += QK_K, q += QK_K) {
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < 32; ++k) m = _mm256_max_ps(m, abs8(_mm256_loadu_ps(x + 8 * k)));
    const float amax = hmax256(m);
    if (amax == 0) {
      zero_block256(b, q, d, sum16, sa, sum32);
      continue;
    }
    float max = 0;  // the first value of largest magnitude, sign included
    for (int k = 0; k < 32; ++k)
      if (const int at = _mm256_movemask_ps(
              _mm256_cmp_ps(abs8(_mm256_loadu_ps(x + 8 * k)), _mm256_set1_ps(amax), _CMP_EQ_OQ))) {
        max = x[8 * k + __builtin_ctz(unsigned(at))];
        break;
      }
    const float iscale = -127.0f / max;
    for (int g = 0; g < 16; ++g)
      sum16[16 * b + g] = int16_t(round_store16(x + 16 * g, _mm256_set1_ps(iscale), q + 16 * g));
    finish_block256(b, 1.0f / iscale, d, sum16, sa, sum32);
  }
}
#endif

}  // namespace
}  // namespace muse::MUSE_SIMD_NS
