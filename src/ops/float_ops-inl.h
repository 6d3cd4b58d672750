// SIMD float kernels of the forward pass besides the matmuls (included by matmul-inl.h inside
// its instruction-set namespace): attention (a query's scores for a block of key rows,
// softmax, the probability-weighted sum of value rows) and SwiGLU.
//
// Attention results depend only on the query and its own rows: a key row's dot product is
// summed lane by lane and then reduced in a fixed tree, so the same query gets the same scores
// however many rows (or other queries) share the call.

#include <algorithm>
#include <cmath>
#include <cstring>

namespace muse::MUSE_SIMD_NS {
namespace {

#ifdef __AVX512F__
constexpr int kAttnLanes = 16;
using AVec = __m512;
inline AVec aload(const float* p) { return _mm512_loadu_ps(p); }
inline AVec aload_n(const float* p, int n) { return _mm512_maskz_loadu_ps(__mmask16((1u << n) - 1), p); }
// F16 values (an F16 KV cache's rows), converted as they are loaded: exact, so a query's results
// are the same as over the rows converted to float first.
inline AVec aload(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline AVec aload_n(const uint16_t* p, int n) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(__mmask16((1u << n) - 1), p));
}
inline void astore_n(float* p, AVec v, int n) { _mm512_mask_storeu_ps(p, __mmask16((1u << n) - 1), v); }
inline AVec azero() { return _mm512_setzero_ps(); }
inline AVec aset1(float x) { return _mm512_set1_ps(x); }
inline AVec afma(AVec a, AVec b, AVec c) { return _mm512_fmadd_ps(a, b, c); }
inline AVec aadd(AVec a, AVec b) { return _mm512_add_ps(a, b); }
inline AVec asub(AVec a, AVec b) { return _mm512_sub_ps(a, b); }
inline void astore(float* p, AVec v) { _mm512_storeu_ps(p, v); }
inline AVec amul(AVec a, AVec b) { return _mm512_mul_ps(a, b); }
inline AVec amax(AVec a, AVec b) { return _mm512_max_ps(a, b); }
inline AVec amin(AVec a, AVec b) { return _mm512_min_ps(a, b); }
inline AVec adiv(AVec a, AVec b) { return _mm512_div_ps(a, b); }
// Lanes of `if_neg` where x < 0, else `otherwise`.
inline AVec ablend_negative(AVec x, AVec otherwise, AVec if_neg) {
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ), otherwise, if_neg);
}

// v[r] (16 vectors of 16 partial sums) -> one vector whose lane r is the sum of v[r]'s lanes.
// Per row: lanes i and i + 8 first, then i and i + 4, then the last four as (0 + 2) + (1 + 3).
inline AVec sum_lanes_of_rows(const AVec (&v)[kAttnLanes]) {
  AVec x[8], y[4];
  for (int i = 0; i < 8; ++i)  // [row 2i: 8 lanes | row 2i+1: 8 lanes]
    x[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                         _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
  for (int i = 0; i < 4; ++i)  // 128-bit lane k: 4 partial sums of row 4i + k
    y[i] = _mm512_add_ps(_mm512_shuffle_f32x4(x[2 * i], x[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(x[2 * i], x[2 * i + 1], 0xDD));
  const AVec z0 = _mm512_add_ps(_mm512_unpacklo_ps(y[0], y[1]), _mm512_unpackhi_ps(y[0], y[1]));
  const AVec z1 = _mm512_add_ps(_mm512_unpacklo_ps(y[2], y[3]), _mm512_unpackhi_ps(y[2], y[3]));
  // Lane 4k + j now holds row 4j + k.
  const AVec f = _mm512_add_ps(_mm512_shuffle_ps(z0, z1, 0x44), _mm512_shuffle_ps(z0, z1, 0xEE));
  const __m512i to_rows = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
  return _mm512_permutexvar_ps(to_rows, f);
}
#else
constexpr int kAttnLanes = 8;
using AVec = __m256;
inline __m256i lane_mask(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline AVec aload(const float* p) { return _mm256_loadu_ps(p); }
inline AVec aload_n(const float* p, int n) { return _mm256_maskload_ps(p, lane_mask(n)); }
inline AVec aload(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline AVec aload_n(const uint16_t* p, int n) {
  alignas(16) uint16_t part[8] = {};
  std::memcpy(part, p, size_t(n) * 2);
  return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(part)));
}
inline void astore_n(float* p, AVec v, int n) { _mm256_maskstore_ps(p, lane_mask(n), v); }
inline AVec azero() { return _mm256_setzero_ps(); }
inline AVec aset1(float x) { return _mm256_set1_ps(x); }
inline AVec afma(AVec a, AVec b, AVec c) { return _mm256_fmadd_ps(a, b, c); }
inline AVec aadd(AVec a, AVec b) { return _mm256_add_ps(a, b); }
inline AVec asub(AVec a, AVec b) { return _mm256_sub_ps(a, b); }
inline void astore(float* p, AVec v) { _mm256_storeu_ps(p, v); }
inline AVec amul(AVec a, AVec b) { return _mm256_mul_ps(a, b); }
inline AVec amax(AVec a, AVec b) { return _mm256_max_ps(a, b); }
inline AVec amin(AVec a, AVec b) { return _mm256_min_ps(a, b); }
inline AVec adiv(AVec a, AVec b) { return _mm256_div_ps(a, b); }
inline AVec ablend_negative(AVec x, AVec otherwise, AVec if_neg) {
  return _mm256_blendv_ps(otherwise, if_neg, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ));
}

// Per row: ((0 + 1) + (2 + 3)) + ((4 + 5) + (6 + 7)).
inline AVec sum_lanes_of_rows(const AVec (&v)[kAttnLanes]) {
  const AVec lo = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
  const AVec hi = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(lo, hi, 0x20), _mm256_permute2f128_ps(lo, hi, 0x31));
}
#endif

inline float hmax256(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

#ifdef __AVX512F__
inline AVec aload_n_or(const float* p, int n, float fill) {
  return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), __mmask16((1u << n) - 1), p);
}
// (Halves through extractf32x8: GCC 12's cast intrinsic trips -Wuninitialized.)
inline float ahsum(AVec v) { return hsum(_mm256_add_ps(_mm512_extractf32x8_ps(v, 0), _mm512_extractf32x8_ps(v, 1))); }
inline float ahmax(AVec v) { return hmax256(_mm256_max_ps(_mm512_extractf32x8_ps(v, 0), _mm512_extractf32x8_ps(v, 1))); }
inline AVec around(AVec v) { return _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline AVec ascale_pow2(AVec v, AVec n) { return _mm512_scalef_ps(v, n); }  // v * 2^n
inline AVec round_to_f16(AVec v) { return _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT)); }
inline void astore_f16_n(uint16_t* p, AVec v, int n) {
  _mm256_mask_storeu_epi16(p, __mmask16((1u << n) - 1),
                           _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}
#else
inline AVec aload_n_or(const float* p, int n, float fill) {
  return _mm256_blendv_ps(_mm256_set1_ps(fill), aload_n(p, n), _mm256_castsi256_ps(lane_mask(n)));
}
inline float ahsum(AVec v) { return hsum(v); }
inline float ahmax(AVec v) { return hmax256(v); }
inline AVec around(AVec v) { return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline AVec ascale_pow2(AVec v, AVec n) {  // n in [-126, 127]
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(v, _mm256_castsi256_ps(bits));
}
inline AVec round_to_f16(AVec v) { return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT)); }
inline void astore_f16_n(uint16_t* p, AVec v, int n) {
  alignas(16) uint16_t h[8];
  _mm_store_si128(reinterpret_cast<__m128i*>(h), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  std::memcpy(p, h, sizeof(uint16_t) * size_t(n));
}
#endif

// e^x for x <= 0 (scores minus their maximum), within 2 ulp: x = n ln2 + r with |r| <= ln2/2,
// e^r from Cephes' degree-6 polynomial, then scaled by 2^n. Below -87 the result is ~1e-38,
// which no softmax sum can notice, so x is clamped there and 2^n stays a normal number.
inline AVec aexp_nonpositive(AVec x) {
  x = amax(x, aset1(-87.0f));
  const AVec n = around(amul(x, aset1(1.44269504088896341f)));
  AVec r = afma(n, aset1(-0.693359375f), x);
  r = afma(n, aset1(2.12194440e-4f), r);
  AVec p = aset1(1.9875691500e-4f);
  p = afma(p, r, aset1(1.3981999507e-3f));
  p = afma(p, r, aset1(8.3334519073e-3f));
  p = afma(p, r, aset1(4.1665795894e-2f));
  p = afma(p, r, aset1(1.6666665459e-1f));
  p = afma(p, r, aset1(5.0000001201e-1f));
  const AVec e = aadd(afma(amul(p, r), r, r), aset1(1.0f));
  return ascale_pow2(e, n);
}

// Keys stored by dimension (KernelSet::dot_keys): G queries against one tile of up to
// kAttnLanes keys of a block, key t in lane t, so a score needs no sum across lanes and a
// tile's scores are one store. Each score is four interleaved partial sums (dimension i into
// sum i mod 4, one FMA each) added as (p0 + p1) + (p2 + p3): the arithmetic of the scalar
// kernel, lane by lane, whatever the tile or the other queries.
template <int G, bool kFull, typename Row>
void dot_keys_tile(const float* const* q, const Row* tile, int block, int dim, int n, float scale,
                   float* const* s, int at) {
  auto load = [&](int i) {
    return kFull ? aload(tile + size_t(i) * block) : aload_n(tile + size_t(i) * block, n);
  };
  AVec acc[G][4];
  for (int g = 0; g < G; ++g)
    for (int k = 0; k < 4; ++k) acc[g][k] = azero();
  int i = 0;
  for (; i + 4 <= dim; i += 4)
    for (int k = 0; k < 4; ++k) {
      const AVec key = load(i + k);
      for (int g = 0; g < G; ++g) acc[g][k] = afma(aset1(q[g][i + k]), key, acc[g][k]);
    }
  for (int k = 0; i < dim; ++i, ++k) {
    const AVec key = load(i);
    for (int g = 0; g < G; ++g) acc[g][k] = afma(aset1(q[g][i]), key, acc[g][k]);
  }
  for (int g = 0; g < G; ++g) {
    const AVec sum =
        amul(aadd(aadd(acc[g][0], acc[g][1]), aadd(acc[g][2], acc[g][3])), aset1(scale));
    if (kFull)
      astore(s[g] + at, sum);
    else
      astore_n(s[g] + at, sum, n);
  }
}

template <bool kFull, typename Row>
void dot_keys_tile_all(const float* const* q, float* const* s, int n_q, const Row* tile, int block,
                       int dim, int n, float scale, int at) {
  int j = 0;
  for (; j + 4 <= n_q; j += 4)
    dot_keys_tile<4, kFull>(q + j, tile, block, dim, n, scale, s + j, at);
  for (; j + 2 <= n_q; j += 2)
    dot_keys_tile<2, kFull>(q + j, tile, block, dim, n, scale, s + j, at);
  if (j < n_q) dot_keys_tile<1, kFull>(q + j, tile, block, dim, n, scale, s + j, at);
}

// Tile by tile, every query per tile while the tile is in L1.
template <typename Row>
void dot_keys(const float* const* q, float* const* s, int n_q, const KvSpan<Row>& keys,
              float scale) {
  for (int b0 = 0, b = 0; b0 < keys.rows; b0 += keys.block, ++b) {
    const int in_block = std::min(keys.block, keys.rows - b0);
    for (int t0 = 0; t0 < in_block; t0 += kAttnLanes) {
      const int n = std::min(kAttnLanes, in_block - t0);
      const Row* tile = keys.blocks[b] + t0;
      if (n == kAttnLanes)
        dot_keys_tile_all<true>(q, s, n_q, tile, keys.block, keys.dim, n, scale, b0 + t0);
      else
        dot_keys_tile_all<false>(q, s, n_q, tile, keys.block, keys.dim, n, scale, b0 + t0);
    }
  }
}

// fn(r, row r from value col on) for the span's rows in order.
template <typename Row, typename Fn>
inline void for_each_row(const KvSpan<Row>& v, int col, Fn&& fn) {
  for (int b0 = 0, b = 0; b0 < v.rows; b0 += v.block, ++b) {
    const Row* row = v.blocks[b] + col;
    const int end = std::min(v.rows, b0 + v.block);
    for (int r = b0; r < end; ++r, row += v.dim) fn(r, row);
  }
}

// Q queries' panels of NV vectors from value col on: per row, Q broadcasts and NV row loads
// feed Q NV FMAs.
template <int Q, int NV, typename Row>
void weighted_panels(const float* const* p, const KvSpan<Row>& v, float* const* out, int col) {
  AVec acc[Q][NV];
  for (int q = 0; q < Q; ++q)
    for (int j = 0; j < NV; ++j) acc[q][j] = aload(out[q] + col + j * kAttnLanes);
  for_each_row(v, col, [&](int r, const Row* row) {
    AVec w[Q];
    for (int q = 0; q < Q; ++q) w[q] = aset1(p[q][r]);
    for (int j = 0; j < NV; ++j) {
      const AVec x = aload(row + j * kAttnLanes);
      for (int q = 0; q < Q; ++q) acc[q][j] = afma(w[q], x, acc[q][j]);
    }
  });
  for (int q = 0; q < Q; ++q)
    for (int j = 0; j < NV; ++j) astore(out[q] + col + j * kAttnLanes, acc[q][j]);
}

// Q queries' out[q][i] += sum over r of p[q][r] * row r [i] for i in [from, dim): panels of NV
// vectors, the rest in panels of half as many and so on, then the lanes left. Every element
// gets one FMA per row in row order, whatever its panel.
template <int Q, int NV, typename Row>
void weighted_from(const float* const* p, const KvSpan<Row>& v, float* const* out, int i) {
  for (; i + NV * kAttnLanes <= v.dim; i += NV * kAttnLanes) weighted_panels<Q, NV>(p, v, out, i);
  if constexpr (NV > 1) {
    weighted_from<Q, NV / 2>(p, v, out, i);
  } else if (const int tail = v.dim - i) {
    for (int q = 0; q < Q; ++q) {
      AVec acc = aload_n(out[q] + i, tail);
      for_each_row(v, i, [&](int r, const Row* row) {
        acc = afma(aset1(p[q][r]), aload_n(row, tail), acc);
      });
      astore_n(out[q] + i, acc, tail);
    }
  }
}

// Four queries at a time, then two, then one: each row vector loaded once for all of them.
template <typename Row>
void weighted_rows(const float* const* p, float* const* out, int n_q, const KvSpan<Row>& v) {
  constexpr int kPanel =
      kAttnLanes == 16 ? 8 : 4;  // two queries' accumulators fill half the registers
  int j = 0;
  for (; j + 4 <= n_q; j += 4) weighted_from<4, kPanel / 2>(p + j, v, out + j, 0);
  for (; j + 2 <= n_q; j += 2) weighted_from<2, kPanel>(p + j, v, out + j, 0);
  if (j < n_q) weighted_from<1, 8>(p + j, v, out + j, 0);
}

// x *= silu(gate) = gate * sigmoid(gate), with sigmoid from e = exp(-|gate|) (never
// overflows): 1 / (1 + e) for gate >= 0, e / (1 + e) below.
void swiglu(const float* gate, float* x, int n) {
  for (int i = 0; i < n; i += kAttnLanes) {
    const int k = std::min(kAttnLanes, n - i);
    const AVec g = aload_n(gate + i, k);
    const AVec neg_abs = amin(g, asub(azero(), g));
    const AVec e = aexp_nonpositive(neg_abs);
    const AVec one_plus = aadd(aset1(1.0f), e);
    const AVec sig = ablend_negative(g, adiv(aset1(1.0f), one_plus), adiv(e, one_plus));
    astore_n(x + i, amul(aload_n(x + i, k), amul(g, sig)), k);
  }
}

// out = x rounded to F16 (nearest even), and x rounded to F16 precision in place.
void to_f16(const float* x, uint16_t* out, int n) {
  for (int i = 0; i < n; i += kAttnLanes) {
    const int k = std::min(kAttnLanes, n - i);
    astore_f16_n(out + i, aload_n(x + i, k), k);
  }
}
void round_f16(float* x, int n) {
  for (int i = 0; i < n; i += kAttnLanes) {
    const int k = std::min(kAttnLanes, n - i);
    astore_n(x + i, round_to_f16(aload_n(x + i, k)), k);
  }
}

// x = softmax(x) over n values; with round_f16 the probabilities are then rounded to F16
// precision (the attention weights of an F16 cache, as llama.cpp takes them).
void softmax(float* x, int n, bool round_f16) {
  const int full = n / kAttnLanes * kAttnLanes, tail = n - full;
  AVec m = aset1(-INFINITY);
  for (int i = 0; i < full; i += kAttnLanes) m = amax(m, aload(x + i));
  if (tail) m = amax(m, aload_n_or(x + full, tail, -INFINITY));
  const AVec mx = aset1(ahmax(m));
  AVec sum = azero();
  for (int i = 0; i < full; i += kAttnLanes) {
    const AVec e = aexp_nonpositive(asub(aload(x + i), mx));
    astore(x + i, e);
    sum = aadd(sum, e);
  }
  if (tail) {
    const AVec e = aexp_nonpositive(asub(aload_n_or(x + full, tail, -INFINITY), mx));
    astore_n(x + full, e, tail);
    sum = aadd(sum, aload_n(x + full, tail));  // the padding lanes add nothing
  }
  const AVec inv = aset1(1.0f / ahsum(sum));
  for (int i = 0; i < n; i += kAttnLanes) {
    const int k = std::min(kAttnLanes, n - i);
    AVec p = amul(aload_n(x + i, k), inv);
    if (round_f16) p = round_to_f16(p);
    astore_n(x + i, p, k);
  }
}

}  // namespace
}  // namespace muse::MUSE_SIMD_NS
