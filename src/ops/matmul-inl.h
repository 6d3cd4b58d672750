// SIMD matmul kernels, compiled once per instruction set: the including file defines
// MUSE_SIMD_NS and is built with that set's compiler flags. With AVX-512 VNNI the integer dot
// products use vpdpbusd/vpdpwssd; with AVX2 they use vpmaddubsw + vpmaddwd.
//
// Every kernel computes a tile of one weight row against up to kTile tokens at a time, so the
// weight block is unpacked once and reused from registers for each token.
#include <immintrin.h>

#include <cstring>

#include "ops/matmul.h"

namespace muse::MUSE_SIMD_NS {
namespace {

#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define MUSE_VNNI 1
#endif

constexpr int kTile = 4;

// Sum over groups of four (u8 x s8) products into int32 lanes.
inline __m256i dot_u8s8(__m256i acc, __m256i u, __m256i s) {
#ifdef MUSE_VNNI
  return _mm256_dpbusd_epi32(acc, u, s);
#else
  const __m256i p = _mm256_maddubs_epi16(u, s);  // safe: callers keep u * |s| pairs < 2^15
  return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
#endif
}

// acc += pairwise sums of int16 products.
inline __m256i dot_i16(__m256i acc, __m256i a, __m256i b) {
#ifdef MUSE_VNNI
  return _mm256_dpwssd_epi32(acc, a, b);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float half(uint16_t h) { return _cvtsh_ss(h); }

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// 16 bytes of packed nibbles -> 32 bytes: low nibbles first, then high nibbles.
inline __m256i unpack_nibbles16(const uint8_t* qs) {
  const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(x, 4), x);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// 32 bits -> 32 bytes holding 0x10 where the bit is set (the fifth bit of Q5 values).
inline __m256i fifth_bits(const uint8_t* qh) {
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
#if defined(__AVX512BW__) && defined(__AVX512VL__)
  return _mm256_maskz_mov_epi8(__mmask32(bits), _mm256_set1_epi8(0x10));
#else
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(int(bits)),
      _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit),
                          _mm256_set1_epi8(0x10));
#endif
}

// ---- legacy 32-element blocks ----
// A weight block as unsigned bytes u with value = scale * u + offset, so that
// dot(block, a) = scale * da * dot(u, aq) + offset * (da * sum(aq)).
struct Unpacked {
  __m256i u;
  float scale, offset;
};

inline Unpacked unpack(const BlockQ4_0& b) {
  const float d = half(b.d);
  return {unpack_nibbles16(b.qs), d, -8 * d};
}
inline Unpacked unpack(const BlockQ4_1& b) {
  return {unpack_nibbles16(b.qs), half(b.d), half(b.m)};
}
inline Unpacked unpack(const BlockQ5_0& b) {
  const float d = half(b.d);
  return {_mm256_or_si256(unpack_nibbles16(b.qs), fifth_bits(b.qh)), d, -16 * d};
}
inline Unpacked unpack(const BlockQ5_1& b) {
  return {_mm256_or_si256(unpack_nibbles16(b.qs), fifth_bits(b.qh)), half(b.d), half(b.m)};
}

template <typename Block, int NT>
void gemm_legacy_tile(const GemmTask& g, int t0) {
  const QuantizedActs& a = *g.a;
  const int nb = g.K / QK;
  const int8_t* aq[NT];
  const float *ad[NT], *asa[NT];
  for (int t = 0; t < NT; ++t) {
    aq[t] = a.q_row(t0 + t);
    ad[t] = a.d_row(t0 + t);
    asa[t] = a.sa_row(t0 + t);
  }
  for (int64_t r = g.r0; r < g.r1; ++r) {
    const Block* w = reinterpret_cast<const Block*>(g.w + r * g.w_row_bytes);
    __m256 acc[NT];
    float offsets[NT] = {};
    for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
    for (int b = 0; b < nb; ++b) {
      const Unpacked u = unpack(w[b]);
      const __m256 scale = _mm256_set1_ps(u.scale);
      for (int t = 0; t < NT; ++t) {
        const __m256i p = dot_u8s8(_mm256_setzero_si256(), u.u, load256(aq[t] + b * QK));
        const __m256 s = _mm256_mul_ps(scale, _mm256_broadcast_ss(ad[t] + b));
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), s, acc[t]);
        offsets[t] += u.offset * asa[t][b];
      }
    }
    for (int t = 0; t < NT; ++t) g.y[(t0 + t) * g.ldy + r] = hsum(acc[t]) + offsets[t];
  }
}

// Q8_0: signed weights. VNNI: bias them to unsigned (w + 128) and take 128 * sum(a) back out.
// AVX2: move the sign onto the activation (|w| * sign(a, w)) so vpmaddubsw cannot saturate.
template <int NT>
void gemm_q8_0_tile(const GemmTask& g, int t0) {
  const QuantizedActs& a = *g.a;
  const int nb = g.K / QK;
  const int8_t* aq[NT];
  const float* ad[NT];
  [[maybe_unused]] const float* asa[NT];
  for (int t = 0; t < NT; ++t) {
    aq[t] = a.q_row(t0 + t);
    ad[t] = a.d_row(t0 + t);
    asa[t] = a.sa_row(t0 + t);
  }
  for (int64_t r = g.r0; r < g.r1; ++r) {
    const BlockQ8_0* w = reinterpret_cast<const BlockQ8_0*>(g.w + r * g.w_row_bytes);
    __m256 acc[NT];
    float offsets[NT] = {};
    for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
    for (int b = 0; b < nb; ++b) {
      const float d = half(w[b].d);
      const __m256 scale = _mm256_set1_ps(d);
      const __m256i q = load256(w[b].qs);
#ifdef MUSE_VNNI
      const __m256i u = _mm256_xor_si256(q, _mm256_set1_epi8(char(0x80)));
#else
      const __m256i u = _mm256_sign_epi8(q, q);
#endif
      for (int t = 0; t < NT; ++t) {
        const __m256i x = load256(aq[t] + b * QK);
#ifdef MUSE_VNNI
        const __m256i p = dot_u8s8(_mm256_setzero_si256(), u, x);
        offsets[t] -= 128 * d * asa[t][b];
#else
        const __m256i p = dot_u8s8(_mm256_setzero_si256(), u, _mm256_sign_epi8(x, q));
#endif
        const __m256 s = _mm256_mul_ps(scale, _mm256_broadcast_ss(ad[t] + b));
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), s, acc[t]);
      }
    }
    for (int t = 0; t < NT; ++t) g.y[(t0 + t) * g.ldy + r] = hsum(acc[t]) + offsets[t];
  }
}

// ---- k-quants: 256-element super-blocks, activations quantized per 256 ----
inline __m256i scale_pair(int lo, int hi) {  // int16 lanes: 8 x lo, then 8 x hi
  return _mm256_set_m128i(_mm_set1_epi16(int16_t(hi)), _mm_set1_epi16(int16_t(lo)));
}

// Q4_K and Q5_K: value = d * sc[j] * q - dmin * m[j] for sub-block j of 32.
template <bool kFiveBit, int NT>
void gemm_q45k_tile(const GemmTask& g, int t0) {
  const QuantizedActs& a = *g.a;
  const int nsb = g.K / QK_K;
  const int8_t* aq[NT];
  const float* ad[NT];
  const int16_t* bs[NT];
  for (int t = 0; t < NT; ++t) {
    aq[t] = a.q_row(t0 + t);
    ad[t] = a.d_row(t0 + t);
    bs[t] = a.bsum_row(t0 + t);
  }
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  for (int64_t r = g.r0; r < g.r1; ++r) {
    const uint8_t* row = g.w + r * g.w_row_bytes;
    __m256 acc[NT], mins[NT];
    for (int t = 0; t < NT; ++t) acc[t] = mins[t] = _mm256_setzero_ps();
    for (int i = 0; i < nsb; ++i) {
      const uint8_t* scales;
      const uint8_t* qs;
      const uint8_t* qh = nullptr;
      uint16_t dh, dminh;
      if constexpr (kFiveBit) {
        const BlockQ5_K* b = reinterpret_cast<const BlockQ5_K*>(row) + i;
        scales = b->scales, qs = b->qs, qh = b->qh, dh = b->d, dminh = b->dmin;
      } else {
        const BlockQ4_K* b = reinterpret_cast<const BlockQ4_K*>(row) + i;
        scales = b->scales, qs = b->qs, dh = b->d, dminh = b->dmin;
      }
      uint8_t sc[8], mn[8];
      for (int j = 0; j < 8; ++j) k_scale_min(j, scales, &sc[j], &mn[j]);
      // Each min applies to two sums of 16 activations.
      alignas(32) int16_t mn16[16];
      for (int j = 0; j < 16; ++j) mn16[j] = mn[j / 2];
      const __m256i mins16 = _mm256_load_si256(reinterpret_cast<const __m256i*>(mn16));
      __m256i qhv = _mm256_setzero_si256();
      if constexpr (kFiveBit) qhv = load256(qh);
      __m256i isum[NT];
      for (int t = 0; t < NT; ++t) isum[t] = _mm256_setzero_si256();
      for (int c = 0; c < 4; ++c) {
        const __m256i x = load256(qs + 32 * c);
        __m256i lo = _mm256_and_si256(x, low4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low4);
        if constexpr (kFiveBit) {
          const __m256i one = _mm256_set1_epi8(1);
          lo = _mm256_or_si256(lo, _mm256_slli_epi16(
                                       _mm256_and_si256(_mm256_srli_epi16(qhv, 2 * c), one), 4));
          hi = _mm256_or_si256(hi, _mm256_slli_epi16(
                                       _mm256_and_si256(_mm256_srli_epi16(qhv, 2 * c + 1), one), 4));
        }
        const __m256i s_lo = _mm256_set1_epi16(sc[2 * c]);
        const __m256i s_hi = _mm256_set1_epi16(sc[2 * c + 1]);
        for (int t = 0; t < NT; ++t) {
          const int8_t* p = aq[t] + i * QK_K + 64 * c;
          isum[t] = dot_i16(isum[t], _mm256_maddubs_epi16(lo, load256(p)), s_lo);
          isum[t] = dot_i16(isum[t], _mm256_maddubs_epi16(hi, load256(p + 32)), s_hi);
        }
      }
      const float d = half(dh), dmin = half(dminh);
      for (int t = 0; t < NT; ++t) {
        const __m256 da = _mm256_broadcast_ss(ad[t] + i);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(_mm256_set1_ps(d), da), acc[t]);
        const __m256i m = _mm256_madd_epi16(load256(bs[t] + 16 * i), mins16);
        mins[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(m), _mm256_mul_ps(_mm256_set1_ps(dmin), da), mins[t]);
      }
    }
    for (int t = 0; t < NT; ++t) g.y[(t0 + t) * g.ldy + r] = hsum(acc[t]) - hsum(mins[t]);
  }
}

// Q6_K: value = d * sc[g] * (q - 32) for groups g of 16; q has 6 bits.
template <int NT>
void gemm_q6k_tile(const GemmTask& g, int t0) {
  const QuantizedActs& a = *g.a;
  const int nsb = g.K / QK_K;
  const int8_t* aq[NT];
  const float* ad[NT];
  const int16_t* bs[NT];
  for (int t = 0; t < NT; ++t) {
    aq[t] = a.q_row(t0 + t);
    ad[t] = a.d_row(t0 + t);
    bs[t] = a.bsum_row(t0 + t);
  }
  const __m256i low4 = _mm256_set1_epi8(0x0F), low2 = _mm256_set1_epi8(0x03);
  for (int64_t r = g.r0; r < g.r1; ++r) {
    const BlockQ6_K* blocks = reinterpret_cast<const BlockQ6_K*>(g.w + r * g.w_row_bytes);
    __m256 acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
    for (int i = 0; i < nsb; ++i) {
      const BlockQ6_K& b = blocks[i];
      const __m256i sc16 =
          _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)));
      __m256i isum[NT];
      for (int t = 0; t < NT; ++t) {
        // The -32 offset, through the activation sums: -32 * sum_g sc[g] * bsum[g].
        const __m256i off = _mm256_madd_epi16(load256(bs[t] + 16 * i), sc16);
        isum[t] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 5));
      }
      for (int n = 0; n < 2; ++n) {
        const __m256i qh = load256(b.qh + 32 * n);
        const __m256i ql0 = load256(b.ql + 64 * n), ql1 = load256(b.ql + 64 * n + 32);
        __m256i q[4];
        q[0] = _mm256_or_si256(_mm256_and_si256(ql0, low4),
                               _mm256_slli_epi16(_mm256_and_si256(qh, low2), 4));
        q[1] = _mm256_or_si256(_mm256_and_si256(ql1, low4),
                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), low2), 4));
        q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), low2), 4));
        q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), low2), 4));
        for (int k = 0; k < 4; ++k) {
          const __m256i s = scale_pair(b.scales[8 * n + 2 * k], b.scales[8 * n + 2 * k + 1]);
          for (int t = 0; t < NT; ++t) {
            const __m256i x = load256(aq[t] + i * QK_K + 128 * n + 32 * k);
            isum[t] = dot_i16(isum[t], _mm256_maddubs_epi16(q[k], x), s);
          }
        }
      }
      const float d = half(b.d);
      for (int t = 0; t < NT; ++t) {
        const __m256 scale = _mm256_mul_ps(_mm256_set1_ps(d), _mm256_broadcast_ss(ad[t] + i));
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), scale, acc[t]);
      }
    }
    for (int t = 0; t < NT; ++t) g.y[(t0 + t) * g.ldy + r] = hsum(acc[t]);
  }
}

// ---- float weights (F32, F16, BF16) against float activations ----
#ifdef __AVX512F__
using FVec = __m512;
constexpr int kLanes = 16;
inline FVec fzero() { return _mm512_setzero_ps(); }
inline FVec fload(const float* p) { return _mm512_loadu_ps(p); }
inline FVec ffma(FVec a, FVec b, FVec c) { return _mm512_fmadd_ps(a, b, c); }
inline float fsum(FVec v) { return _mm512_reduce_add_ps(v); }
inline FVec load_weights(const float* p) { return _mm512_loadu_ps(p); }
inline FVec load_weights_f16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline FVec load_weights_bf16(const uint16_t* p) {
  const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
#else
using FVec = __m256;
constexpr int kLanes = 8;
inline FVec fzero() { return _mm256_setzero_ps(); }
inline FVec fload(const float* p) { return _mm256_loadu_ps(p); }
inline FVec ffma(FVec a, FVec b, FVec c) { return _mm256_fmadd_ps(a, b, c); }
inline float fsum(FVec v) { return hsum(v); }
inline FVec load_weights(const float* p) { return _mm256_loadu_ps(p); }
inline FVec load_weights_f16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline FVec load_weights_bf16(const uint16_t* p) {
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
#endif

template <GgmlType kType>
inline FVec load_w(const uint8_t* row, int k) {
  if constexpr (kType == GgmlType::F32) return load_weights(reinterpret_cast<const float*>(row) + k);
  else if constexpr (kType == GgmlType::F16) return load_weights_f16(reinterpret_cast<const uint16_t*>(row) + k);
  else return load_weights_bf16(reinterpret_cast<const uint16_t*>(row) + k);
}
template <GgmlType kType>
inline float scalar_w(const uint8_t* row, int k) {
  if constexpr (kType == GgmlType::F32) return reinterpret_cast<const float*>(row)[k];
  else if constexpr (kType == GgmlType::F16) return half(reinterpret_cast<const uint16_t*>(row)[k]);
  else {
    const uint32_t u = uint32_t(reinterpret_cast<const uint16_t*>(row)[k]) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
}

template <GgmlType kType, int NT>
void gemm_float_tile(const GemmTask& g, int t0) {
  const QuantizedActs& a = *g.a;
  const float* x[NT];
  for (int t = 0; t < NT; ++t) x[t] = a.x_row(t0 + t);
  const int kv = g.K / kLanes * kLanes;
  for (int64_t r = g.r0; r < g.r1; ++r) {
    const uint8_t* row = g.w + r * g.w_row_bytes;
    FVec acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = fzero();
    for (int k = 0; k < kv; k += kLanes) {
      const FVec w = load_w<kType>(row, k);
      for (int t = 0; t < NT; ++t) acc[t] = ffma(w, fload(x[t] + k), acc[t]);
    }
    for (int t = 0; t < NT; ++t) {
      float s = fsum(acc[t]);
      for (int k = kv; k < g.K; ++k) s += scalar_w<kType>(row, k) * x[t][k];
      g.y[(t0 + t) * g.ldy + r] = s;
    }
  }
}

// Walks the task's tokens in tiles of kTile, the last tile narrower.
template <template <int> class Tile>
void run_tiles(const GemmTask& g) {
  int t = g.t0;
  for (; t + kTile <= g.t1; t += kTile) Tile<kTile>::run(g, t);
  switch (g.t1 - t) {
    case 3: Tile<3>::run(g, t); break;
    case 2: Tile<2>::run(g, t); break;
    case 1: Tile<1>::run(g, t); break;
    default: break;
  }
}

template <typename Block> struct LegacyTile {
  template <int NT> struct T { static void run(const GemmTask& g, int t0) { gemm_legacy_tile<Block, NT>(g, t0); } };
};
template <int NT> struct Q8Tile { static void run(const GemmTask& g, int t0) { gemm_q8_0_tile<NT>(g, t0); } };
template <int NT> struct Q4KTile { static void run(const GemmTask& g, int t0) { gemm_q45k_tile<false, NT>(g, t0); } };
template <int NT> struct Q5KTile { static void run(const GemmTask& g, int t0) { gemm_q45k_tile<true, NT>(g, t0); } };
template <int NT> struct Q6KTile { static void run(const GemmTask& g, int t0) { gemm_q6k_tile<NT>(g, t0); } };
template <GgmlType kType> struct FloatTile {
  template <int NT> struct T { static void run(const GemmTask& g, int t0) { gemm_float_tile<kType, NT>(g, t0); } };
};

float dot_f16(const float* x, const uint16_t* y, int n) {
  __m256 acc = _mm256_setzero_ps();
  int i = 0;
  for (; i + 8 <= n; i += 8)
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + i),
                          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(y + i))), acc);
  float s = hsum(acc);
  for (; i < n; ++i) s += x[i] * half(y[i]);
  return s;
}

void axpy_f16(float a, const uint16_t* x, float* y, int n) {
  const __m256 va = _mm256_set1_ps(a);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, v, _mm256_loadu_ps(y + i)));
  }
  for (; i < n; ++i) y[i] += a * half(x[i]);
}

KernelSet make(const char* name) {
  KernelSet k{};
  k.name = name;
  k.gemm[int(GgmlType::F32)] = run_tiles<FloatTile<GgmlType::F32>::T>;
  k.gemm[int(GgmlType::F16)] = run_tiles<FloatTile<GgmlType::F16>::T>;
  k.gemm[int(GgmlType::BF16)] = run_tiles<FloatTile<GgmlType::BF16>::T>;
  k.gemm[int(GgmlType::Q4_0)] = run_tiles<LegacyTile<BlockQ4_0>::T>;
  k.gemm[int(GgmlType::Q4_1)] = run_tiles<LegacyTile<BlockQ4_1>::T>;
  k.gemm[int(GgmlType::Q5_0)] = run_tiles<LegacyTile<BlockQ5_0>::T>;
  k.gemm[int(GgmlType::Q5_1)] = run_tiles<LegacyTile<BlockQ5_1>::T>;
  k.gemm[int(GgmlType::Q8_0)] = run_tiles<Q8Tile>;
  k.gemm[int(GgmlType::Q4_K)] = run_tiles<Q4KTile>;
  k.gemm[int(GgmlType::Q5_K)] = run_tiles<Q5KTile>;
  k.gemm[int(GgmlType::Q6_K)] = run_tiles<Q6KTile>;
  k.dot_f16 = dot_f16;
  k.axpy_f16 = axpy_f16;
  return k;
}

}  // namespace
}  // namespace muse::MUSE_SIMD_NS
