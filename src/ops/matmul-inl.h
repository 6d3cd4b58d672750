// SIMD matmul kernels, compiled once per instruction set: the including file defines
// MUSE_SIMD_NS and is built with that set's compiler flags. With AVX-512 VNNI the integer dot
// products use vpdpbusd/vpdpwssd; with AVX2 they use vpmaddubsw + vpmaddwd.
//
// Every kernel computes a tile of one weight row against up to kTile tokens at a time, so the
// weight block is unpacked once and reused from registers for each token.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "ops/packed_weights.h"
#include "ops/row_decode.h"

#include "ops/matmul.h"

namespace muse::MUSE_SIMD_NS {
namespace {

#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define MUSE_VNNI 1
#endif

// Tokens per register tile: AVX-512 has 32 vector registers, AVX2 16.
#ifdef __AVX512F__
constexpr int kTile = 8;
#else
constexpr int kTile = 4;
#endif

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

// Weights stream from memory, and the hardware prefetchers alone kept a decode step at well
// under half the machine's bandwidth (measured: 8 GB/s for 8 tokens on one core, where the
// packed Q4_K kernel consumes 15): a kernel about to use `bytes` at p asks for the same
// amount four times as far ahead (at least 8 KB: a few hundred nanoseconds of work), line by
// line. Prefetches past the end are harmless. The K-quant tiles (37 and 53 lines) ask in
// parts as their work goes (prefetch_stream_part): all of a tile's lines at once filled the
// queue of outstanding misses, and perf put 15% of Q6_K's time on the prefetch loop itself.
// The lines go to L2, not L1: prefetches into L1 hold its few miss buffers until the line
// arrives, and at 4-8 tokens perf still put 10% of Q4_K's samples on a prefetch waiting for
// one (kernels_bench.cpp, one thread, streamed: Q4_K 120-131 -> 134-146 GMAC/s at 4-8 tokens,
// Q6_K 89-104 -> 108-110; eight sequences of Qwen3-0.6B 230 -> 254 tok/s, medians of five
// alternated runs). The loads then find the lines in L2 and L1's own prefetcher takes over.
// Part `part` of `parts` of those lines.
inline void prefetch_stream_part(const uint8_t* p, size_t bytes, int part, int parts) {
  const uint8_t* ahead = p + std::max<size_t>(4 * bytes, 8192);
  const size_t lines = (bytes + 63) / 64, l0 = lines * part / parts, l1 = lines * (part + 1) / parts;
  for (size_t l = l0; l < l1; ++l) _mm_prefetch(reinterpret_cast<const char*>(ahead + 64 * l), _MM_HINT_T1);
}
inline void prefetch_stream(const uint8_t* p, size_t bytes) { prefetch_stream_part(p, bytes, 0, 1); }

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

// Row pointers of NT consecutive tokens' quantized activations.
template <int NT>
struct TokenTile {
  const int8_t* q[NT];
  const float* d[NT];
  const float* sa[NT];
  const int32_t* sum32[NT];
  const int16_t* sum16[NT];
  TokenTile(const QuantizedActs& a, int t0) {
    for (int t = 0; t < NT; ++t) {
      q[t] = a.q_row(t0 + t);
      d[t] = a.d_row(t0 + t);
      sa[t] = a.sa_row(t0 + t);
      sum32[t] = a.sum32_row(t0 + t);
      sum16[t] = a.format == ActFormat::kQ8Block256 ? a.sum16_row(t0 + t) : nullptr;
    }
  }
};

inline int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

// ---- per-row kernels: one weight row against kTile tokens, canonical arithmetic ----
// (The SIMD work is over the values of a block; the float steps are scalar, in block order.)

inline __m256i unpack_block(const BlockQ4_0& b) { return unpack_nibbles16(b.qs); }
inline __m256i unpack_block(const BlockQ4_1& b) { return unpack_nibbles16(b.qs); }
inline __m256i unpack_block(const BlockQ5_0& b) { return _mm256_or_si256(unpack_nibbles16(b.qs), fifth_bits(b.qh)); }
inline __m256i unpack_block(const BlockQ5_1& b) { return _mm256_or_si256(unpack_nibbles16(b.qs), fifth_bits(b.qh)); }
inline float block_min(const BlockQ4_1& b) { return half(b.m); }
inline float block_min(const BlockQ5_1& b) { return half(b.m); }
template <typename Block> constexpr int kZero = 0;  // Q4_1, Q5_1: no zero point
template <> constexpr int kZero<BlockQ4_0> = 8;
template <> constexpr int kZero<BlockQ5_0> = 16;

// Four blocks' int32 lane vectors -> their four sums.
inline __m128i reduce4(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i abcd = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
  return _mm_add_epi32(_mm256_castsi256_si128(abcd), _mm256_extracti128_si256(abcd, 1));
}

#ifdef MUSE_VNNI
// With vpdpbusd, Q8_0 is one more zero-point type: w + 128 as unsigned bytes.
inline __m256i unpack_block(const BlockQ8_0& b) {
  return _mm256_xor_si256(load256(b.qs), _mm256_set1_epi8(char(0x80)));
}
template <> constexpr int kZero<BlockQ8_0> = 128;
#else
// Without it, Q8_0's signed weights as |w|, their signs moved onto the activations (below), so
// that vpmaddubsw cannot saturate.
inline __m256i unpack_block(const BlockQ8_0& b) {
  const __m256i q = load256(b.qs);
  return _mm256_sign_epi8(q, q);
}
#endif

// A block's int32 lane sums of unpacked weights u times the activations at x.
template <typename Block>
inline __m256i block_dot(const Block& w, __m256i u, const int8_t* x) {
#ifndef MUSE_VNNI
  if constexpr (std::is_same_v<Block, BlockQ8_0>)
    return dot_u8s8(_mm256_setzero_si256(), u, _mm256_sign_epi8(load256(x), load256(w.qs)));
#endif
  (void)w;
  return dot_u8s8(_mm256_setzero_si256(), u, load256(x));
}

// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0.
template <typename Block, int NT>
void gemm_legacy_tile(const GemmTask& g, int t0) {
  constexpr bool kAffine = std::is_same_v<Block, BlockQ4_1> || std::is_same_v<Block, BlockQ5_1>;
  const int nb = g.K / QK;
  const TokenTile<NT> tok(*g.a, t0);
  const auto& aq = tok.q;
  const auto& ad = tok.d;
  const auto& asa = tok.sa;
  const auto& asum = tok.sum32;
  for (int64_t r = g.r0; r < g.r1; ++r) {
    const Block* w = reinterpret_cast<const Block*>(g.w + r * g.w_row_bytes);
    __m128 acc[NT];  // the four chains, block b in lane b % 4
    for (int t = 0; t < NT; ++t) acc[t] = _mm_setzero_ps();
    int b = 0;
    for (; b + 4 <= nb; b += 4) {
      const __m256i u0 = unpack_block(w[b]), u1 = unpack_block(w[b + 1]), u2 = unpack_block(w[b + 2]),
                    u3 = unpack_block(w[b + 3]);
      const __m128 d = _mm_set_ps(half(w[b + 3].d), half(w[b + 2].d), half(w[b + 1].d), half(w[b].d));
      [[maybe_unused]] __m128 m;
      if constexpr (kAffine) m = _mm_set_ps(block_min(w[b + 3]), block_min(w[b + 2]), block_min(w[b + 1]), block_min(w[b]));
      for (int t = 0; t < NT; ++t) {
        const int8_t* x = aq[t] + b * QK;
        __m128i s = reduce4(block_dot(w[b], u0, x), block_dot(w[b + 1], u1, x + 32),
                            block_dot(w[b + 2], u2, x + 64), block_dot(w[b + 3], u3, x + 96));
        if constexpr (kZero<Block> != 0)
          s = _mm_sub_epi32(s, _mm_mullo_epi32(_mm_set1_epi32(kZero<Block>),
                                               _mm_loadu_si128(reinterpret_cast<const __m128i*>(asum[t] + b))));
        acc[t] = _mm_fmadd_ps(_mm_cvtepi32_ps(s), _mm_mul_ps(d, _mm_loadu_ps(ad[t] + b)), acc[t]);
        if constexpr (kAffine) acc[t] = _mm_fmadd_ps(m, _mm_loadu_ps(asa[t] + b), acc[t]);
      }
    }
    for (int t = 0; t < NT; ++t) {
      alignas(16) float chains[4];
      _mm_store_ps(chains, acc[t]);
      for (int bb = b; bb < nb; ++bb) {
        const int32_t s = hsum_epi32(block_dot(w[bb], unpack_block(w[bb]), aq[t] + bb * QK)) -
                          kZero<Block> * asum[t][bb];
        float& c = chains[bb % 4];
        c = std::fma(float(s), half(w[bb].d) * ad[t][bb], c);
        if constexpr (kAffine) c = std::fma(block_min(w[bb]), asa[t][bb], c);
      }
      g.y[(t0 + t) * g.ldy + r] = (chains[0] + chains[1]) + (chains[2] + chains[3]);
    }
  }
}

// ---- k-quants: 256-element super-blocks, activations quantized per 256 ----
inline __m256i scale_pair(int lo, int hi) {  // int16 lanes: 8 x lo, then 8 x hi
  return _mm256_set_m128i(_mm_set1_epi16(int16_t(hi)), _mm_set1_epi16(int16_t(lo)));
}

// The 6-bit scales and mins of a Q4_K/Q5_K super-block: bytes 0-7 scales, 8-15 mins.
inline void k_scales_mins(const uint8_t* packed, uint8_t out[16]) {
  uint32_t w[3];
  std::memcpy(w, packed, 12);
  const uint32_t lo6 = 0x3f3f3f3f, lo4 = 0x0f0f0f0f, lo2 = 0x03030303;
  const uint32_t v[4] = {w[0] & lo6, (w[2] & lo4) | (((w[0] >> 6) & lo2) << 4), w[1] & lo6,
                         ((w[2] >> 4) & lo4) | (((w[1] >> 6) & lo2) << 4)};
  std::memcpy(out, v, 16);
}

// The fields of super-block i of a Q4_K (qh null) or Q5_K row.
struct KBlock {
  const uint8_t *scales, *qs, *qh;
  uint16_t d, dmin;
};
template <bool kFiveBit>
inline KBlock k_block(const uint8_t* row, int i) {
  if constexpr (kFiveBit) {
    const BlockQ5_K& b = reinterpret_cast<const BlockQ5_K*>(row)[i];
    return {b.scales, b.qs, b.qh, b.d, b.dmin};
  } else {
    const BlockQ4_K& b = reinterpret_cast<const BlockQ4_K*>(row)[i];
    return {b.scales, b.qs, nullptr, b.d, b.dmin};
  }
}

// Up to four tokens' int32 lane vectors -> their sums in lanes 0-3 (exact in any order), and
// the tokens' activation scales of super-block i beside them: the float steps then run once for
// the tile, lane t doing exactly token t's scalar arithmetic.
template <int NT>
inline __m128 tile_sums(const __m256i (&v)[NT]) {
  static_assert(NT >= 1 && NT <= 4);
  if constexpr (NT == 1) return _mm_cvtepi32_ps(_mm_cvtsi32_si128(hsum_epi32(v[0])));
  if constexpr (NT == 2) {
    const __m256i ab = _mm256_hadd_epi32(v[0], v[1]);
    const __m128i s = _mm_add_epi32(_mm256_castsi256_si128(ab), _mm256_extracti128_si256(ab, 1));
    return _mm_cvtepi32_ps(_mm_hadd_epi32(s, s));
  }
  __m256i w[4] = {};
  for (int t = 0; t < NT; ++t) w[t] = v[t];
  return _mm_cvtepi32_ps(reduce4(w[0], w[1], w[2], w[3]));
}
template <int NT>
inline __m128 tile_scales(const float* const (&d)[NT], int i) {
  alignas(16) float out[4] = {};
  for (int t = 0; t < NT; ++t) out[t] = d[t][i];
  return _mm_load_ps(out);
}
template <int NT>
inline void store_tile(const GemmTask& g, int t0, int64_t r, __m128 acc) {
  alignas(16) float out[4];
  _mm_store_ps(out, acc);
  for (int t = 0; t < NT; ++t) g.y[(t0 + t) * g.ldy + r] = out[t];
}

// Q4_K and Q5_K. The mins term sum_j mn_j * sum32_j is taken as one vpmaddwd of the mins (each
// twice) against the activations' sums per 16.
template <bool kFiveBit, int NT>
void gemm_q45k_tile(const GemmTask& g, int t0) {
  const int nsb = g.K / QK_K;
  const TokenTile<NT> tok(*g.a, t0);
  const auto& aq = tok.q;
  const auto& as = tok.sum16;
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m128i twice = _mm_set_epi8(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
  for (int64_t r = g.r0; r < g.r1; ++r) {
    const uint8_t* row = g.w + r * g.w_row_bytes;
    __m128 acc = _mm_setzero_ps();
    for (int i = 0; i < nsb; ++i) {
      const auto [scales, qs, qh, dh, dminh] = k_block<kFiveBit>(row, i);
      alignas(16) uint8_t sm[16];
      k_scales_mins(scales, sm);
      const __m256i mins = _mm256_cvtepu8_epi16(
          _mm_shuffle_epi8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sm + 8)), twice));
      __m256i qhv = _mm256_setzero_si256();
      if constexpr (kFiveBit) qhv = load256(qh);
      __m256i isum[NT], msum[NT];
      for (int t = 0; t < NT; ++t) {
        isum[t] = _mm256_setzero_si256();
        msum[t] = _mm256_madd_epi16(load256(as[t] + 16 * i), mins);
      }
      for (int c = 0; c < 4; ++c) {
        const __m256i x = load256(qs + 32 * c);
        __m256i lo = _mm256_and_si256(x, low4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low4);
        if constexpr (kFiveBit) {
          const __m256i one = _mm256_set1_epi8(1);
          lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qhv, 2 * c), one), 4));
          hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qhv, 2 * c + 1), one), 4));
        }
        const __m256i s_lo = _mm256_set1_epi16(sm[2 * c]);
        const __m256i s_hi = _mm256_set1_epi16(sm[2 * c + 1]);
        for (int t = 0; t < NT; ++t) {
          const int8_t* p = aq[t] + i * QK_K + 64 * c;
          isum[t] = dot_i16(isum[t], _mm256_maddubs_epi16(lo, load256(p)), s_lo);
          isum[t] = dot_i16(isum[t], _mm256_maddubs_epi16(hi, load256(p + 32)), s_hi);
        }
      }
      const __m128 da = tile_scales<NT>(tok.d, i);
      acc = _mm_fmadd_ps(tile_sums<NT>(isum), _mm_mul_ps(_mm_set1_ps(half(dh)), da), acc);
      acc = _mm_fnmadd_ps(tile_sums<NT>(msum), _mm_mul_ps(_mm_set1_ps(half(dminh)), da), acc);
    }
    store_tile<NT>(g, t0, r, acc);
  }
}

// Q6_K.
template <int NT>
void gemm_q6k_tile(const GemmTask& g, int t0) {
  const int nsb = g.K / QK_K;
  const TokenTile<NT> tok(*g.a, t0);
  const auto& aq = tok.q;
  const auto& bs = tok.sum16;
  const __m256i low4 = _mm256_set1_epi8(0x0F), low2 = _mm256_set1_epi8(0x03);
  for (int64_t r = g.r0; r < g.r1; ++r) {
    const BlockQ6_K* blocks = reinterpret_cast<const BlockQ6_K*>(g.w + r * g.w_row_bytes);
    __m128 acc = _mm_setzero_ps();
    for (int i = 0; i < nsb; ++i) {
      const BlockQ6_K& b = blocks[i];
      const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)));
      __m256i isum[NT];
      for (int t = 0; t < NT; ++t) {
        // The -32 zero point, through the activation sums: -32 * sum_g sc[g] * sum16[g].
        const __m256i off = _mm256_madd_epi16(load256(bs[t] + 16 * i), sc16);
        isum[t] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 5));
      }
      for (int n = 0; n < 2; ++n) {
        const __m256i qh = load256(b.qh + 32 * n);
        const __m256i ql0 = load256(b.ql + 64 * n), ql1 = load256(b.ql + 64 * n + 32);
        __m256i q[4];
        q[0] = _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_slli_epi16(_mm256_and_si256(qh, low2), 4));
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
      acc = _mm_fmadd_ps(tile_sums<NT>(isum),
                         _mm_mul_ps(_mm_set1_ps(half(b.d)), tile_scales<NT>(tok.d, i)), acc);
    }
    store_tile<NT>(g, t0, r, acc);
  }
}

#if defined(__AVX512F__) && defined(MUSE_VNNI)
// 512-bit versions of the k-quant row kernels (decode): each vector covers 64 consecutive
// values, and the per-32/16 scales come from one vpermw of the super-block's scale vector.
inline int32_t hsum_epi32(__m512i v) { return _mm512_reduce_add_epi32(v); }

// int16 lanes [s[i0] x16, s[i1] x16] from a vector of 16-bit scales.
inline __m512i pick_scales2(__m512i s, int i0, int i1) {
  const __m512i idx = _mm512_mask_set1_epi16(_mm512_set1_epi16(short(i0)), 0xFFFF0000u, short(i1));
  return _mm512_permutexvar_epi16(idx, s);
}
// int16 lanes [s[i] x8, s[i+1] x8, s[i+2] x8, s[i+3] x8].
inline __m512i pick_scales4(__m512i s, int i) {
  const __m512i idx = _mm512_set_epi16(i + 3, i + 3, i + 3, i + 3, i + 3, i + 3, i + 3, i + 3, i + 2, i + 2, i + 2, i + 2,
                                       i + 2, i + 2, i + 2, i + 2, i + 1, i + 1, i + 1, i + 1, i + 1, i + 1, i + 1, i + 1,
                                       i, i, i, i, i, i, i, i);
  return _mm512_permutexvar_epi16(idx, s);
}
inline __m512i nibbles_lo_hi(const uint8_t* p) {  // 32 bytes -> [low nibbles | high nibbles]
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(x), _mm256_srli_epi16(x, 4), 1);
  return _mm512_and_si512(both, _mm512_set1_epi8(0x0F));
}

// From NT <= 8 tokens on, a row's per-token integer sums are reduced together: each token's
// lanes are folded into "pair form" ([token 2k: 8 lanes | token 2k+1: 8 lanes]) and four such
// vectors are summed lane-wise into one 256-bit vector of eight token sums. Integer sums are
// exact in any order, and the float steps then run on 8 lanes with the canonical arithmetic.
template <int NT> constexpr bool kTokenVectors = NT >= 4;

inline __m512i pair_form(__m512i a, __m512i b) {
  return _mm512_add_epi32(_mm512_shuffle_i64x2(a, b, 0x44), _mm512_shuffle_i64x2(a, b, 0xEE));
}
inline __m256i sum_token_pairs(const __m512i (&pairs)[4]) {
  // [t0 | t1 | t2 | t3] and [t4 | t5 | t6 | t7], four lanes each.
  const __m512i y0 = _mm512_add_epi32(_mm512_shuffle_i32x4(pairs[0], pairs[1], 0x88),
                                      _mm512_shuffle_i32x4(pairs[0], pairs[1], 0xDD));
  const __m512i y1 = _mm512_add_epi32(_mm512_shuffle_i32x4(pairs[2], pairs[3], 0x88),
                                      _mm512_shuffle_i32x4(pairs[2], pairs[3], 0xDD));
  // 128-bit lane k: [t_k, t_{4+k}, ...] after two folds.
  const __m512i z = _mm512_add_epi32(_mm512_unpacklo_epi32(y0, y1), _mm512_unpackhi_epi32(y0, y1));
  const __m512i w = _mm512_add_epi32(z, _mm512_shuffle_epi32(z, _MM_PERM_BADC));
  const __m512i order = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 13, 9, 5, 1, 12, 8, 4, 0);
  return _mm512_castsi512_si256(_mm512_permutexvar_epi32(order, w));
}
// Two tokens' 16 int16 values per super-block side by side.
inline __m512i two_rows16(const int16_t* a, const int16_t* b) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(load256(a)), load256(b), 1);
}

// The activation scales of a tile's tokens for every super-block, 8 per super-block (zero
// past NT), so the float steps load one vector.
template <int NT>
const float* token_scales(const TokenTile<NT>& tok, int nsb) {
  thread_local std::vector<float> da;
  da.assign(size_t(nsb) * 8, 0.0f);
  for (int i = 0; i < nsb; ++i)
    for (int t = 0; t < NT; ++t) da[size_t(i) * 8 + t] = tok.d[t][i];
  return da.data();
}

template <int NT>
inline void store_tokens(const GemmTask& g, int t0, int64_t r, __m256 acc) {
  alignas(32) float out[8];
  _mm256_store_ps(out, acc);
  for (int t = 0; t < NT; ++t) g.y[(t0 + t) * g.ldy + r] = out[t];
}

template <bool kFiveBit, int NT>
void gemm_q45k_tile_512(const GemmTask& g, int t0) {
  const int nsb = g.K / QK_K;
  const TokenTile<NT> tok(*g.a, t0);
  const auto& aq = tok.q;
  const auto& ad = tok.d;
  const auto& asum = tok.sum32;
  [[maybe_unused]] const float* da = kTokenVectors<NT> ? token_scales(tok, nsb) : nullptr;
  for (int64_t r = g.r0; r < g.r1; ++r) {
    const uint8_t* row = g.w + r * g.w_row_bytes;
    float acc[NT] = {};
    [[maybe_unused]] __m256 acc8 = _mm256_setzero_ps();
    for (int i = 0; i < nsb; ++i) {
      const auto [scales, qs, qh, dh, dminh] = k_block<kFiveBit>(row, i);
      alignas(16) uint8_t sm[16];
      k_scales_mins(scales, sm);
      const __m512i sc = _mm512_cvtepu8_epi16(_mm256_castsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(sm))));
      __m512i w[4];  // sub-blocks (2c, 2c+1) for chunk c: 64 consecutive values
      for (int c = 0; c < 4; ++c) w[c] = nibbles_lo_hi(qs + 32 * c);
      if constexpr (kFiveBit) {
        const __m512i qhz = _mm512_broadcast_i64x4(load256(qh));
        const __m512i one = _mm512_set1_epi8(1);
        for (int c = 0; c < 4; ++c) {
          const __m512i shift = _mm512_mask_set1_epi16(_mm512_set1_epi16(short(2 * c)), 0xFFFF0000u, short(2 * c + 1));
          w[c] = _mm512_or_si512(w[c], _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qhz, shift), one), 4));
        }
      }
      __m512i s[4];
      for (int c = 0; c < 4; ++c) s[c] = pick_scales2(sc, 2 * c, 2 * c + 1);
      const float d = half(dh), dmin = half(dminh);
      __m512i isum[NT];
      for (int t = 0; t < NT; ++t) {
        const int8_t* p = aq[t] + i * QK_K;
        isum[t] = _mm512_setzero_si512();
        for (int c = 0; c < 4; ++c)
          isum[t] = _mm512_dpwssd_epi32(isum[t], _mm512_maddubs_epi16(w[c], _mm512_loadu_si512(p + 64 * c)), s[c]);
      }
      if constexpr (kTokenVectors<NT>) {
        // Mins per 32 values, each twice (they meet the activation sums per 16), for two tokens.
        const __m128i m8 = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sm + 8)));
        const __m512i mins2 = _mm512_broadcast_i64x4(_mm256_set_m128i(_mm_unpackhi_epi16(m8, m8), _mm_unpacklo_epi16(m8, m8)));
        __m512i sums[4], mins[4];
        for (int k = 0; k < 4; ++k) {
          const int a = 2 * k, b = 2 * k + 1;
          sums[k] = a < NT ? pair_form(isum[a], b < NT ? isum[b] : _mm512_setzero_si512()) : _mm512_setzero_si512();
          mins[k] = a < NT ? _mm512_madd_epi16(mins2, two_rows16(tok.sum16[a] + 16 * i, tok.sum16[b < NT ? b : a] + 16 * i))
                           : _mm512_setzero_si512();
        }
        const __m256 dav = _mm256_loadu_ps(da + size_t(i) * 8);
        acc8 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum_token_pairs(sums)), _mm256_mul_ps(_mm256_set1_ps(d), dav), acc8);
        acc8 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum_token_pairs(mins)), _mm256_mul_ps(_mm256_set1_ps(-dmin), dav), acc8);
      } else {
        const __m256i mins = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sm + 8)));
        for (int t = 0; t < NT; ++t) {
          const int32_t m = hsum_epi32(_mm256_mullo_epi32(mins, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(asum[t] + 8 * i))));
          acc[t] = std::fma(float(hsum_epi32(isum[t])), d * ad[t][i], acc[t]);
          acc[t] = std::fma(float(m), -(dmin * ad[t][i]), acc[t]);
        }
      }
    }
    if constexpr (kTokenVectors<NT>) store_tokens<NT>(g, t0, r, acc8);
    else
      for (int t = 0; t < NT; ++t) g.y[(t0 + t) * g.ldy + r] = acc[t];
  }
}

template <int NT>
void gemm_q6k_tile_512(const GemmTask& g, int t0) {
  const int nsb = g.K / QK_K;
  const TokenTile<NT> tok(*g.a, t0);
  const auto& aq = tok.q;
  const auto& ad = tok.d;
  const auto& bs = tok.sum16;
  [[maybe_unused]] const float* da = kTokenVectors<NT> ? token_scales(tok, nsb) : nullptr;
  const __m512i low4 = _mm512_set1_epi8(0x0F), low2 = _mm512_set1_epi8(0x03);
  // Per 64-value half of a 128-value chunk, the qh shift differs: (0 | 2) and (4 | 6).
  const __m512i shift01 = _mm512_mask_set1_epi16(_mm512_setzero_si512(), 0xFFFF0000u, 2);
  const __m512i shift23 = _mm512_mask_set1_epi16(_mm512_set1_epi16(4), 0xFFFF0000u, 6);
  for (int64_t r = g.r0; r < g.r1; ++r) {
    const BlockQ6_K* blocks = reinterpret_cast<const BlockQ6_K*>(g.w + r * g.w_row_bytes);
    float acc[NT] = {};
    [[maybe_unused]] __m256 acc8 = _mm256_setzero_ps();
    for (int i = 0; i < nsb; ++i) {
      const BlockQ6_K& b = blocks[i];
      const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)));
      const __m512i scz = _mm512_castsi256_si512(sc16);
      __m512i q[4], s[4];
      for (int n = 0; n < 2; ++n) {
        const __m512i ql = _mm512_loadu_si512(b.ql + 64 * n);
        const __m512i qh = _mm512_broadcast_i64x4(load256(b.qh + 32 * n));
        q[2 * n] = _mm512_or_si512(_mm512_and_si512(ql, low4),
                                   _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, shift01), low2), 4));
        q[2 * n + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), low4),
                                       _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, shift23), low2), 4));
        s[2 * n] = pick_scales4(scz, 8 * n);
        s[2 * n + 1] = pick_scales4(scz, 8 * n + 4);
      }
      const float d = half(b.d);
      __m512i isum[NT];
      for (int t = 0; t < NT; ++t) {
        const int8_t* p = aq[t] + i * QK_K;
        isum[t] = _mm512_setzero_si512();
        for (int k = 0; k < 4; ++k)
          isum[t] = _mm512_dpwssd_epi32(isum[t], _mm512_maddubs_epi16(q[k], _mm512_loadu_si512(p + 64 * k)), s[k]);
      }
      // The -32 zero point, through the activation sums: -32 * sum_g sc[g] * sum16[g].
      if constexpr (kTokenVectors<NT>) {
        const __m512i sc2 = _mm512_broadcast_i64x4(sc16);
        __m512i sums[4];
        for (int k = 0; k < 4; ++k) {
          const int a = 2 * k, c = 2 * k + 1;
          if (a >= NT) {
            sums[k] = _mm512_setzero_si512();
            continue;
          }
          const __m512i off = _mm512_madd_epi16(two_rows16(bs[a] + 16 * i, bs[c < NT ? c : a] + 16 * i), sc2);
          const __m512i pair = pair_form(isum[a], c < NT ? isum[c] : _mm512_setzero_si512());
          sums[k] = _mm512_sub_epi32(pair, _mm512_slli_epi32(c < NT ? off : _mm512_maskz_mov_epi32(0x00FF, off), 5));
        }
        acc8 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum_token_pairs(sums)),
                               _mm256_mul_ps(_mm256_set1_ps(d), _mm256_loadu_ps(da + size_t(i) * 8)), acc8);
      } else {
        for (int t = 0; t < NT; ++t) {
          const int32_t off = hsum_epi32(_mm256_madd_epi16(load256(bs[t] + 16 * i), sc16));
          acc[t] = std::fma(float(hsum_epi32(isum[t]) - 32 * off), d * ad[t][i], acc[t]);
        }
      }
    }
    if constexpr (kTokenVectors<NT>) store_tokens<NT>(g, t0, r, acc8);
    else
      for (int t = 0; t < NT; ++t) g.y[(t0 + t) * g.ldy + r] = acc[t];
  }
}
#endif

// ---- float weights (F32, F16, BF16) against float activations ----
#ifdef __AVX512F__
using FVec = __m512;
constexpr int kLanes = 16;
inline FVec fzero() { return _mm512_setzero_ps(); }
inline FVec fload(const float* p) { return _mm512_loadu_ps(p); }
inline FVec ffma(FVec a, FVec b, FVec c) { return _mm512_fmadd_ps(a, b, c); }
inline float fsum(FVec v) { return _mm512_reduce_add_ps(v); }
inline void fstore(float* p, FVec v) { _mm512_storeu_ps(p, v); }
inline FVec set1(float v) { return _mm512_set1_ps(v); }
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
inline void fstore(float* p, FVec v) { _mm256_storeu_ps(p, v); }
inline FVec set1(float v) { return _mm256_set1_ps(v); }
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

#ifdef __AVX512F__
// The horizontal sums of 16 rows' accumulators at once: lane r of the result is exactly
// _mm512_reduce_add_ps(rows[r]) (the same pairs added in the same tree: halves, quarters, then
// lanes 0 + 2 and 1 + 3, then those two; float addition is commutative), in about a third of
// the instructions of 16 separate reductions.
inline __m512 reduce_add_16_rows(const float* rows) {
  auto row = [&](int r) { return _mm512_load_ps(rows + 16 * r); };
  __m512 u[8], v[4], w[2];
  for (int p = 0; p < 8; ++p) {  // u[p]: lanes 0-7 row 2p's halves added, 8-15 row 2p + 1's
    const __m512 a = row(2 * p), b = row(2 * p + 1);
    u[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
  }
  for (int q = 0; q < 4; ++q)  // v[q]: quarter k is row 4q + k's quarters added
    v[q] = _mm512_add_ps(_mm512_shuffle_f32x4(u[2 * q], u[2 * q + 1], 0x88),
                         _mm512_shuffle_f32x4(u[2 * q], u[2 * q + 1], 0xDD));
  for (int s = 0; s < 2; ++s)  // w[s]: quarter k is (row 8s + k: lanes 0 + 2, 1 + 3; row 8s + 4 + k: the same)
    w[s] = _mm512_add_ps(_mm512_shuffle_ps(v[2 * s], v[2 * s + 1], 0x44), _mm512_shuffle_ps(v[2 * s], v[2 * s + 1], 0xEE));
  // Quarter k: rows k, 4 + k, 8 + k, 12 + k; then back to row order.
  const __m512 x = _mm512_add_ps(_mm512_shuffle_ps(w[0], w[1], 0x88), _mm512_shuffle_ps(w[0], w[1], 0xDD));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(order, x);
}
#endif

// Float weights against NT tokens, a row at a time: each token's dot product with a row is
// kLanes chains over k mod kLanes, then a horizontal sum, then the values after the last whole
// vector; the same operations whatever else shares the call. With AVX-512, 16 rows'
// accumulators wait in a buffer and are summed together. (Two rows at a time, or the rows
// interleaved in groups as the quantized weights are packed, made decode from memory 12-40%
// slower on a Zen 4: one weight stream reads memory fastest there.)
template <GgmlType kType, int NT>
void gemm_float_tile(const GemmTask& g, int t0) {
  const QuantizedActs& a = *g.a;
  const float* x[NT];
  for (int t = 0; t < NT; ++t) x[t] = a.x_row(t0 + t);
  const int kv = g.K / kLanes * kLanes;
  auto accumulate = [&](const uint8_t* row, FVec* acc) {
    for (int t = 0; t < NT; ++t) acc[t] = fzero();
    for (int k = 0; k < kv; k += kLanes) {
      const FVec w = load_w<kType>(row, k);
      for (int t = 0; t < NT; ++t) acc[t] = ffma(w, fload(x[t] + k), acc[t]);
    }
  };
  auto tail = [&](const uint8_t* row, int t, float s) {
    for (int k = kv; k < g.K; ++k) s += scalar_w<kType>(row, k) * x[t][k];
    return s;
  };
  int64_t r = g.r0;
#ifdef __AVX512F__
  alignas(64) float block[NT][16 * 16];
  for (; r + 16 <= g.r1; r += 16) {
    for (int i = 0; i < 16; ++i) {
      FVec acc[NT];
      accumulate(g.w + (r + i) * g.w_row_bytes, acc);
      for (int t = 0; t < NT; ++t) _mm512_store_ps(block[t] + 16 * i, acc[t]);
    }
    for (int t = 0; t < NT; ++t) {
      float* y = g.y + (t0 + t) * g.ldy + r;
      _mm512_storeu_ps(y, reduce_add_16_rows(block[t]));
      if (kv < g.K)
        for (int i = 0; i < 16; ++i) y[i] = tail(g.w + (r + i) * g.w_row_bytes, t, y[i]);
    }
  }
#endif
  for (; r < g.r1; ++r) {
    const uint8_t* row = g.w + r * g.w_row_bytes;
    FVec acc[NT];
    accumulate(row, acc);
    for (int t = 0; t < NT; ++t) g.y[(t0 + t) * g.ldy + r] = tail(row, t, fsum(acc[t]));
  }
}

// Walks the task's tokens in tiles of kTile, the last tile narrower.
template <template <int> class Tile>
void run_tiles(const GemmTask& g) {
  int t = g.t0;
  for (; t + kTile <= g.t1; t += kTile) Tile<kTile>::run(g, t);
  switch (g.t1 - t) {
#ifdef __AVX512F__
    case 7: Tile<7>::run(g, t); break;
    case 6: Tile<6>::run(g, t); break;
    case 5: Tile<5>::run(g, t); break;
    case 4: Tile<4>::run(g, t); break;
#endif
    case 3: Tile<3>::run(g, t); break;
    case 2: Tile<2>::run(g, t); break;
    case 1: Tile<1>::run(g, t); break;
    default: break;
  }
}

template <typename Block> struct LegacyTile {
  template <int NT> struct T { static void run(const GemmTask& g, int t0) { gemm_legacy_tile<Block, NT>(g, t0); } };
};
#if defined(__AVX512F__) && defined(MUSE_VNNI)
template <int NT> struct Q4KTile { static void run(const GemmTask& g, int t0) { gemm_q45k_tile_512<false, NT>(g, t0); } };
template <int NT> struct Q5KTile { static void run(const GemmTask& g, int t0) { gemm_q45k_tile_512<true, NT>(g, t0); } };
template <int NT> struct Q6KTile { static void run(const GemmTask& g, int t0) { gemm_q6k_tile_512<NT>(g, t0); } };
#else
template <int NT> struct Q4KTile { static void run(const GemmTask& g, int t0) { gemm_q45k_tile<false, NT>(g, t0); } };
template <int NT> struct Q5KTile { static void run(const GemmTask& g, int t0) { gemm_q45k_tile<true, NT>(g, t0); } };
template <int NT> struct Q6KTile { static void run(const GemmTask& g, int t0) { gemm_q6k_tile<NT>(g, t0); } };
#endif
template <GgmlType kType> struct FloatTile {
  template <int NT> struct T { static void run(const GemmTask& g, int t0) { gemm_float_tile<kType, NT>(g, t0); } };
};

// Float weights packed as [K][16 rows] (packed_weights.h; only where the weights stay in
// cache, see Model::pack_weights): a vector of kLanes rows (a unit) holds value k of each, so
// one FMA advances kLanes dot products, with no horizontal sums. A token's dot product with a
// row is one chain of FMAs in k order, whatever else shares the pass (its result does not
// depend on its batch); a pass takes up to 4 units by kFloatPassTokens tokens, so several
// independent chains hide the FMA latency and each load serves several FMAs.
constexpr int kFloatPassUnits = 4;
constexpr int kFloatPassTokens = kLanes == 16 ? 4 : 2;  // units x tokens accumulators in registers

template <GgmlType kType, int NU, int NT>
void packed_float_pass(const GemmTask& g, int64_t unit0, int t0) {
  static_assert(NU <= kFloatPassUnits && NT <= kFloatPassTokens);
  constexpr size_t kSize = kType == GgmlType::F32 ? 4 : 2;
  const uint8_t* w[NU];
  for (int u = 0; u < NU; ++u) {
    const int64_t row = (unit0 + u) * kLanes;
    w[u] = g.w + (size_t(row / kRowGroup) * size_t(g.K) * kRowGroup + size_t(row % kRowGroup)) * kSize;
  }
  const float* x[NT];
  FVec acc[NU][NT];
  for (int t = 0; t < NT; ++t) x[t] = g.a->x_row(t0 + t);
  for (int u = 0; u < NU; ++u)
    for (int t = 0; t < NT; ++t) acc[u][t] = fzero();
  for (int k = 0; k < g.K; ++k) {
    FVec wk[NU];
    for (int u = 0; u < NU; ++u) wk[u] = load_w<kType>(w[u], k * kRowGroup);
    for (int t = 0; t < NT; ++t) {
      const FVec xk = set1(x[t][k]);
      for (int u = 0; u < NU; ++u) acc[u][t] = ffma(wk[u], xk, acc[u][t]);
    }
  }
  for (int u = 0; u < NU; ++u)
    for (int t = 0; t < NT; ++t) fstore(g.y + (t0 + t) * g.ldy + (unit0 + u) * kLanes, acc[u][t]);
}

template <GgmlType kType, int NT>
void packed_float_tokens(const GemmTask& g, int t0) {
  int64_t u = g.r0 / kLanes;
  const int64_t end = g.r1 / kLanes;
  for (; u + kFloatPassUnits <= end; u += kFloatPassUnits) packed_float_pass<kType, kFloatPassUnits, NT>(g, u, t0);
  switch (end - u) {
    case 3: packed_float_pass<kType, 3, NT>(g, u, t0); break;
    case 2: packed_float_pass<kType, 2, NT>(g, u, t0); break;
    case 1: packed_float_pass<kType, 1, NT>(g, u, t0); break;
    default: break;
  }
}

template <GgmlType kType> struct PackedFloatTile {
  template <int NT> struct T {
    static void run(const GemmTask& g, int t0) {
      constexpr int kFirst = std::min(NT, kFloatPassTokens);
      packed_float_tokens<kType, kFirst>(g, t0);
      if constexpr (NT > kFirst) packed_float_tokens<kType, NT - kFirst>(g, t0 + kFirst);
    }
  };
};

#if defined(__AVX512F__) && defined(MUSE_VNNI)
// ---- batched kernels: kRowGroup (16) rows in the vector lanes ----
// A task's 16 weight rows are unpacked once into bytes interleaved so that one 64-byte vector
// holds 4 consecutive values of each row; vpdpbusd against a broadcast of 4 activation bytes
// then advances all 16 dot products at once, and the float steps of the canonical arithmetic
// run on 16 rows per instruction. Per row and token the operations are exactly those of the
// per-row kernels, so the results are bit-identical.
struct RowGroupTile {
  std::vector<uint8_t> u;         // [K / 4][16 rows][4 values]
  std::vector<float> d, m;        // [block][16 rows]
  std::vector<int32_t> sc, mn;    // [sub-block][16 rows]
  std::vector<float> f;           // float weights: [K][16 rows]
};

void pack_quantized(GgmlType type, const GemmTask& g, RowGroupTile& tile) {
  thread_local DecodedRow row;
  const int K = g.K;
  tile.u.resize(size_t(K) * kRowGroup);
  for (int r = 0; r < kRowGroup; ++r) {
    decode_row(type, g.w + (g.r0 + r) * g.w_row_bytes, K, row);
    if (r == 0) {
      tile.d.resize(row.d.size() * kRowGroup);
      tile.m.resize(row.m.size() * kRowGroup);
      tile.sc.resize(row.sc.size() * kRowGroup);
      tile.mn.resize(row.mn.size() * kRowGroup);
    }
    uint32_t* dst = reinterpret_cast<uint32_t*>(tile.u.data()) + r;
    const uint8_t* src = row.u.data();
    for (int k4 = 0; k4 < K / 4; ++k4) std::memcpy(dst + k4 * kRowGroup, src + 4 * k4, 4);
    for (size_t b = 0; b < row.d.size(); ++b) tile.d[b * kRowGroup + r] = row.d[b];
    for (size_t b = 0; b < row.m.size(); ++b) tile.m[b * kRowGroup + r] = row.m[b];
    for (size_t b = 0; b < row.sc.size(); ++b) tile.sc[b * kRowGroup + r] = row.sc[b];
    for (size_t b = 0; b < row.mn.size(); ++b) tile.mn[b * kRowGroup + r] = row.mn[b];
  }
}

inline __m512i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}
inline __m512i load512(const void* p) { return _mm512_loadu_si512(p); }
inline void store_rows(const GemmTask& g, int t, __m512 v) { _mm512_storeu_ps(g.y + t * g.ldy + g.r0, v); }

// Sum over `n4` groups of 4 values: 16 rows' integer dot products with one token.
template <int n4>
inline __m512i dot_rows(const uint8_t* u, const int8_t* a) {
  __m512i s = _mm512_setzero_si512();
  for (int e = 0; e < n4; ++e) s = _mm512_dpbusd_epi32(s, load512(u + 64 * e), bcast4(a + 4 * e));
  return s;
}

template <QuantFamily kFamily, int NT>
void rows_tile(const GemmTask& g, const RowGroupTile& w, int zero, int t0) {
  const QuantizedActs& a = *g.a;
  const int K = g.K;
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  if constexpr (kFamily == QuantFamily::kZeroPoint || kFamily == QuantFamily::kAffine) {
    __m512 chains[NT][4];
    for (int t = 0; t < NT; ++t)
      for (int c = 0; c < 4; ++c) chains[t][c] = _mm512_setzero_ps();
    for (int b = 0; b < K / QK; ++b) {
      const uint8_t* u = w.u.data() + size_t(b) * QK * kRowGroup;
      const __m512 d = _mm512_loadu_ps(&w.d[b * kRowGroup]);
      for (int t = 0; t < NT; ++t) {
        __m512& c = chains[t][b % 4];
        __m512i s = dot_rows<8>(u, a.q_row(t0 + t) + b * QK);
        if constexpr (kFamily == QuantFamily::kZeroPoint)
          s = _mm512_sub_epi32(s, _mm512_set1_epi32(zero * a.sum32_row(t0 + t)[b]));
        c = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(d, _mm512_set1_ps(a.d_row(t0 + t)[b])), c);
        if constexpr (kFamily == QuantFamily::kAffine)
          c = _mm512_fmadd_ps(_mm512_loadu_ps(&w.m[b * kRowGroup]), _mm512_set1_ps(a.sa_row(t0 + t)[b]), c);
      }
    }
    for (int t = 0; t < NT; ++t)
      acc[t] = _mm512_add_ps(_mm512_add_ps(chains[t][0], chains[t][1]), _mm512_add_ps(chains[t][2], chains[t][3]));
  } else {
    constexpr bool kSym = kFamily == QuantFamily::kKSymmetric;
    constexpr int kSub = kSym ? 16 : 32, kNSub = QK_K / kSub;
    for (int i = 0; i < K / QK_K; ++i) {
      const __m512 d = _mm512_loadu_ps(&w.d[i * kRowGroup]);
      for (int t = 0; t < NT; ++t) {
        const int8_t* aq = a.q_row(t0 + t) + i * QK_K;
        __m512i isum = _mm512_setzero_si512(), msum = _mm512_setzero_si512();
        for (int j = 0; j < kNSub; ++j) {
          const uint8_t* u = w.u.data() + (size_t(i) * QK_K + j * kSub) * kRowGroup;
          __m512i s = dot_rows<kSub / 4>(u, aq + j * kSub);
          const __m512i sc = load512(&w.sc[(i * kNSub + j) * kRowGroup]);
          if constexpr (kSym) {
            s = _mm512_sub_epi32(s, _mm512_set1_epi32(32 * a.sum16_row(t0 + t)[i * kNSub + j]));
          } else {
            const __m512i mn = load512(&w.mn[(i * kNSub + j) * kRowGroup]);
            msum = _mm512_add_epi32(msum, _mm512_mullo_epi32(mn, _mm512_set1_epi32(a.sum32_row(t0 + t)[i * kNSub + j])));
          }
          isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(s, sc));
        }
        const __m512 da = _mm512_set1_ps(a.d_row(t0 + t)[i]);
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(d, da), acc[t]);
        if constexpr (!kSym) {
          const __m512 dmin = _mm512_loadu_ps(&w.m[i * kRowGroup]);
          acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum), _mm512_mul_ps(dmin, da), acc[t]);
        }
      }
    }
  }
  for (int t = 0; t < NT; ++t) store_rows(g, t0 + t, acc[t]);
}

template <QuantFamily kFamily>
void gemm_rows_quantized(const GemmTask& g, GgmlType type) {
  thread_local RowGroupTile tile;
  pack_quantized(type, g, tile);
  const int zero = zero_point(type);
  // The block-32 families keep four accumulator chains per token: a narrower token tile.
  constexpr int kNT = kFamily == QuantFamily::kZeroPoint || kFamily == QuantFamily::kAffine ? 4 : 8;
  int t = g.t0;
  for (; t + kNT <= g.t1; t += kNT) rows_tile<kFamily, kNT>(g, tile, zero, t);
  for (; t < g.t1; ++t) rows_tile<kFamily, 1>(g, tile, zero, t);
}

template <GgmlType kType>
void gemm_rows(const GemmTask& g) {
  gemm_rows_quantized<quant_family_of(kType)>(g, kType);
}

// ---- packed kernels: weights repacked at load (ops/packed_weights.h) ----
// The same lanes-are-rows arithmetic as rows_tile, unpacking 4- and 6-bit values in registers
// as they are used, so a decode step reads the packed bytes once and nothing else per row.
// Per tile of up to kTile tokens: for each 64-value chunk, the two halves' sums for every
// token, then the scales (an integer multiply per sub-block), the mins or the -32 zero point
// (vpdpwssd of per-row pairs against the tokens' sums per 16), then the float steps.

inline __m512i bcast_pair16(const int16_t* p) {  // two consecutive int16 in every int32 lane
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}
inline __m512i load_u8_lanes(const uint8_t* p) {  // 16 bytes -> 16 int32 lanes
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m512i load_i8_lanes(const uint8_t* p) {
  return _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m512 load_f16_lanes(const uint8_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

template <int NT>
void packed_q4k_tile(const GemmTask& g, int t0) {
  const int nsb = g.K / QK_K;
  constexpr size_t kTileBytes = kPackedQ4KTile;
  const TokenTile<NT> tok(*g.a, t0);
  const auto& aq = tok.q;
  const auto& as = tok.sum16;
  const auto& ad = tok.d;
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (int64_t grp = g.r0 / kRowGroup; grp < g.r1 / kRowGroup; ++grp) {
    const uint8_t* tiles = g.w + size_t(grp) * nsb * kTileBytes;
    __m512 acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
    for (int i = 0; i < nsb; ++i) {
      const uint8_t* tile = tiles + size_t(i) * kTileBytes;
      __m512i isum[NT], msum[NT];
      for (int t = 0; t < NT; ++t) isum[t] = msum[t] = _mm512_setzero_si512();
      for (int c = 0; c < 4; ++c) {
        prefetch_stream_part(tile, kTileBytes, c, 4);
        __m512i sa[NT], sb[NT];
        for (int t = 0; t < NT; ++t) sa[t] = sb[t] = _mm512_setzero_si512();
        for (int e = 0; e < 8; ++e) {
          const __m512i v = load512(tile + 64 * (8 * c + e));
          const __m512i lo = _mm512_and_si512(v, low4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
          const int at = i * QK_K + 64 * c + 4 * e;
          for (int t = 0; t < NT; ++t) {
            sa[t] = _mm512_dpbusd_epi32(sa[t], lo, bcast4(aq[t] + at));
            sb[t] = _mm512_dpbusd_epi32(sb[t], hi, bcast4(aq[t] + at + 32));
          }
        }
        const __m512i sca = load_u8_lanes(tile + 2048 + 16 * (2 * c)), scb = load_u8_lanes(tile + 2048 + 16 * (2 * c + 1));
        for (int t = 0; t < NT; ++t)
          isum[t] = _mm512_add_epi32(isum[t], _mm512_add_epi32(_mm512_mullo_epi32(sa[t], sca), _mm512_mullo_epi32(sb[t], scb)));
      }
      for (int j = 0; j < 8; ++j) {  // sum_j mn_j * sum32_j, as mn_j * (sum16 + sum16)
        const __m512i m = load_u8_lanes(tile + 2176 + 16 * j), m2 = _mm512_or_si512(m, _mm512_slli_epi32(m, 16));
        for (int t = 0; t < NT; ++t) msum[t] = _mm512_dpwssd_epi32(msum[t], m2, bcast_pair16(as[t] + 16 * i + 2 * j));
      }
      const __m512 d = load_f16_lanes(tile + 2304), dmin = load_f16_lanes(tile + 2336);
      for (int t = 0; t < NT; ++t) {
        const __m512 da = _mm512_set1_ps(ad[t][i]);
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(d, da), acc[t]);
        acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum[t]), _mm512_mul_ps(dmin, da), acc[t]);
      }
    }
    for (int t = 0; t < NT; ++t) _mm512_storeu_ps(g.y + (t0 + t) * g.ldy + grp * kRowGroup, acc[t]);
  }
}

template <int NT>
void packed_q6k_tile(const GemmTask& g, int t0) {
  const int nsb = g.K / QK_K;
  constexpr size_t kTileBytes = kPackedQ6KTile;
  const TokenTile<NT> tok(*g.a, t0);
  const auto& aq = tok.q;
  const auto& as = tok.sum16;
  const auto& ad = tok.d;
  const __m512i low4 = _mm512_set1_epi8(0x0F), bits45 = _mm512_set1_epi8(0x30);
  // The high bits of value group k of a quarter, moved to bits 4 and 5.
  auto high_bits = [&](__m512i qh, int k) {
    switch (k) {
      case 0: return _mm512_and_si512(_mm512_slli_epi16(qh, 4), bits45);
      case 1: return _mm512_and_si512(_mm512_slli_epi16(qh, 2), bits45);
      case 2: return _mm512_and_si512(qh, bits45);
      default: return _mm512_and_si512(_mm512_srli_epi16(qh, 2), bits45);
    }
  };
  for (int64_t grp = g.r0 / kRowGroup; grp < g.r1 / kRowGroup; ++grp) {
    const uint8_t* tiles = g.w + size_t(grp) * nsb * kTileBytes;
    __m512 acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
    for (int i = 0; i < nsb; ++i) {
      const uint8_t* tile = tiles + size_t(i) * kTileBytes;
      __m512i isum[NT];
      for (int t = 0; t < NT; ++t) isum[t] = _mm512_setzero_si512();
      for (int c = 0; c < 4; ++c)
        for (int q = 0; q < 2; ++q) {  // groups 4c + q (half A) and 4c + 2 + q (half B)
          prefetch_stream_part(tile, kTileBytes, 2 * c + q, 8);
          __m512i sa[NT], sb[NT];
          for (int t = 0; t < NT; ++t) sa[t] = sb[t] = _mm512_setzero_si512();
          const __m512i qha = load512(tile + 2048 + 64 * (4 * c + 2 * q)), qhb = load512(tile + 2048 + 64 * (4 * c + 2 * q + 1));
          for (int k = 0; k < 4; ++k) {
            const int e = 4 * q + k;
            const __m512i v = load512(tile + 64 * (8 * c + e));
            const __m512i ua = _mm512_or_si512(_mm512_and_si512(v, low4), high_bits(qha, k));
            const __m512i ub = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(v, 4), low4), high_bits(qhb, k));
            const int at = i * QK_K + 64 * c + 4 * e;
            for (int t = 0; t < NT; ++t) {
              sa[t] = _mm512_dpbusd_epi32(sa[t], ua, bcast4(aq[t] + at));
              sb[t] = _mm512_dpbusd_epi32(sb[t], ub, bcast4(aq[t] + at + 32));
            }
          }
          const __m512i sca = load_i8_lanes(tile + 3072 + 16 * (4 * c + q)), scb = load_i8_lanes(tile + 3072 + 16 * (4 * c + 2 + q));
          for (int t = 0; t < NT; ++t)
            isum[t] = _mm512_add_epi32(isum[t], _mm512_add_epi32(_mm512_mullo_epi32(sa[t], sca), _mm512_mullo_epi32(sb[t], scb)));
        }
      // The -32 zero point: 32 * sum_g sc_g * sum16_g, scales paired per int32 lane.
      __m512i off[NT];
      for (int t = 0; t < NT; ++t) off[t] = _mm512_setzero_si512();
      for (int j = 0; j < 8; ++j) {
        const __m512i lo = _mm512_and_si512(load_i8_lanes(tile + 3072 + 16 * (2 * j)), _mm512_set1_epi32(0xFFFF));
        const __m512i pair = _mm512_or_si512(lo, _mm512_slli_epi32(load_i8_lanes(tile + 3072 + 16 * (2 * j + 1)), 16));
        for (int t = 0; t < NT; ++t) off[t] = _mm512_dpwssd_epi32(off[t], pair, bcast_pair16(as[t] + 16 * i + 2 * j));
      }
      const __m512 d = load_f16_lanes(tile + 3328);
      for (int t = 0; t < NT; ++t) {
        const __m512i s = _mm512_sub_epi32(isum[t], _mm512_slli_epi32(off[t], 5));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(d, _mm512_set1_ps(ad[t][i])), acc[t]);
      }
    }
    for (int t = 0; t < NT; ++t) _mm512_storeu_ps(g.y + (t0 + t) * g.ldy + grp * kRowGroup, acc[t]);
  }
}

// Q4_0, Q5_0 and Q8_0: one tile per 32-value block; four accumulator chains per token, as the
// canonical arithmetic has them, so at most four tokens per pass over the weights.
template <GgmlType kType, int NT>
void packed_block32_tile(const GemmTask& g, int t0) {
  static_assert(NT <= 4);
  constexpr bool kNibbles = kType != GgmlType::Q8_0;
  const int nb = g.K / QK;
  const size_t tile_bytes = packed_tile_bytes(kType);
  const int zero = zero_point(kType);
  const TokenTile<NT> tok(*g.a, t0);
  const __m512i low4 = _mm512_set1_epi8(0x0F), bit4 = _mm512_set1_epi8(0x10);
  for (int64_t grp = g.r0 / kRowGroup; grp < g.r1 / kRowGroup; ++grp) {
    const uint8_t* tiles = g.w + size_t(grp) * nb * tile_bytes;
    __m512 chains[NT][4];
    for (int t = 0; t < NT; ++t)
      for (int c = 0; c < 4; ++c) chains[t][c] = _mm512_setzero_ps();
    for (int b = 0; b < nb; ++b) {
      const uint8_t* tile = tiles + size_t(b) * tile_bytes;
      prefetch_stream(tile, tile_bytes);
      __m512i w[8];  // w[e]: values 4e..4e+3 of every row
      if constexpr (kNibbles) {
        for (int e = 0; e < 4; ++e) {
          const __m512i v = load512(tile + 64 * e);
          w[e] = _mm512_and_si512(v, low4);
          w[4 + e] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
        }
        if constexpr (kType == GgmlType::Q5_0) {
          uint64_t masks[8];
          std::memcpy(masks, tile + 256, sizeof masks);
          for (int e = 0; e < 8; ++e) w[e] = _mm512_or_si512(w[e], _mm512_maskz_mov_epi8(masks[e], bit4));
        }
      } else {
        for (int e = 0; e < 8; ++e) w[e] = load512(tile + 64 * e);
      }
      const __m512 d = load_f16_lanes(tile + tile_bytes - 32);
      for (int t = 0; t < NT; ++t) {
        const int8_t* a = tok.q[t] + b * QK;
        __m512i s = _mm512_set1_epi32(-zero * tok.sum32[t][b]);  // the zero point, up front
        for (int e = 0; e < 8; ++e) s = _mm512_dpbusd_epi32(s, w[e], bcast4(a + 4 * e));
        __m512& c = chains[t][b % 4];
        c = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(d, _mm512_set1_ps(tok.d[t][b])), c);
      }
    }
    for (int t = 0; t < NT; ++t)
      _mm512_storeu_ps(g.y + (t0 + t) * g.ldy + grp * kRowGroup,
                       _mm512_add_ps(_mm512_add_ps(chains[t][0], chains[t][1]), _mm512_add_ps(chains[t][2], chains[t][3])));
  }
}

// At most four tokens per pass over a group's tiles (a second pass finds them in cache): with
// eight, every accumulator is in flight at once and spills (kernels_bench.cpp, one thread,
// in L2: Q6_K 106 GMAC/s at eight tokens per pass against 117 at two passes of four; Q4_K the
// same within noise). Block-32 types also keep four chains per token.
template <template <int> class Pass> struct InPassesOfFour {
  template <int NT> struct T {
    static void run(const GemmTask& g, int t0) {
      if constexpr (NT > 4) {
        Pass<4>::run(g, t0);
        Pass<NT - 4>::run(g, t0 + 4);
      } else {
        Pass<NT>::run(g, t0);
      }
    }
  };
};
template <GgmlType kType> struct PackedBlock32Pass {
  template <int NT> struct P { static void run(const GemmTask& g, int t0) { packed_block32_tile<kType, NT>(g, t0); } };
};
template <int NT> struct PackedQ4KPass { static void run(const GemmTask& g, int t0) { packed_q4k_tile<NT>(g, t0); } };
template <int NT> struct PackedQ6KPass { static void run(const GemmTask& g, int t0) { packed_q6k_tile<NT>(g, t0); } };
template <GgmlType kType> struct PackedBlock32Tile {
  template <int NT> using T = InPassesOfFour<PackedBlock32Pass<kType>::template P>::template T<NT>;
};
template <int NT> using PackedQ4KTile = InPassesOfFour<PackedQ4KPass>::T<NT>;
template <int NT> using PackedQ6KTile = InPassesOfFour<PackedQ6KPass>::T<NT>;

// Float weights: the 16 rows transposed to [K][16] floats; one FMA per value and token.
template <int NT>
void rows_tile_float(const GemmTask& g, const float* wt, int t0) {
  __m512 acc[NT];
  const float* x[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t] = _mm512_setzero_ps();
    x[t] = g.a->x_row(t0 + t);
  }
  for (int k = 0; k < g.K; ++k) {
    const __m512 w = _mm512_loadu_ps(wt + size_t(k) * kRowGroup);
    for (int t = 0; t < NT; ++t) acc[t] = _mm512_fmadd_ps(w, _mm512_set1_ps(x[t][k]), acc[t]);
  }
  for (int t = 0; t < NT; ++t) store_rows(g, t0 + t, acc[t]);
}

template <GgmlType kType>
void gemm_rows_float(const GemmTask& g) {
  thread_local std::vector<float> wt, row;
  wt.resize(size_t(g.K) * kRowGroup);
  row.resize(g.K);
  for (int r = 0; r < kRowGroup; ++r) {
    const uint8_t* src = g.w + (g.r0 + r) * g.w_row_bytes;
    for (int k = 0; k < g.K; ++k) wt[size_t(k) * kRowGroup + r] = scalar_w<kType>(src, k);
  }
  int t = g.t0;
  for (; t + 8 <= g.t1; t += 8) rows_tile_float<8>(g, wt.data(), t);
  for (; t < g.t1; ++t) rows_tile_float<1>(g, wt.data(), t);
}
#endif

#ifndef __AVX512F__
// ---- packed kernels, AVX2: the packed layout's 16 rows as two halves of 8 int32 lanes ----
// Half h of a 64-byte packed vector is its bytes 32h..32h+31: rows 8h..8h+7, 4 values each.
// For one token both halves go together (the token's broadcasts serve both); for more, a half
// at a time for two tokens (the second half finds the group's tiles in cache). Without
// vpdpbusd, vpmaddubsw's int16 pair sums add up in int16 lanes as far as they cannot overflow
// (|activation| <= 127; the bound is stated at each sum), then one vpmaddwd against the scales
// (each row's scale in both int16 halves of its lane) makes the int32 sums: the integers of
// the canonical arithmetic, so the same floats.
constexpr int kHalfRows = 8;

inline __m256i bcast4_avx2(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}
inline __m256i bcast_pair16_avx2(const int16_t* p) {  // two consecutive int16 in every int32 lane
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}
// 8 bytes (one per row of a half) -> 8 int32 lanes, each value in both of its int16 halves.
inline __m256i u8_twice(const uint8_t* p) {
  const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  return _mm256_or_si256(v, _mm256_slli_epi32(v, 16));
}
inline __m256i i8_lanes(const uint8_t* p) {
  return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
// Two signed values per row, in the low and the high int16 half of its lane.
inline __m256i i8_pair(const uint8_t* lo, const uint8_t* hi) {
  return _mm256_or_si256(_mm256_and_si256(i8_lanes(lo), _mm256_set1_epi32(0xFFFF)),
                         _mm256_slli_epi32(i8_lanes(hi), 16));
}
inline __m256 f16_half(const uint8_t* p) {  // 8 F16 -> 8 floats
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline void store_half(const GemmTask& g, int t, int64_t grp, int h, __m256 v) {
  _mm256_storeu_ps(g.y + t * g.ldy + grp * kRowGroup + kHalfRows * h, v);
}
inline __m256i madd_ones(__m256i v) { return _mm256_madd_epi16(v, _mm256_set1_epi16(1)); }
template <typename V, int NH, int NT>
inline void fill(V (&a)[NH][NT], V v) {
  for (int h = 0; h < NH; ++h)
    for (int t = 0; t < NT; ++t) a[h][t] = v;
}

// Q4_K: halves [h0, h0 + NH) of group grp against tokens [t0, t0 + NT).
template <int NH, int NT>
void packed_q4k_group_avx2(const GemmTask& g, int64_t grp, int h0, int t0) {
  const int nsb = g.K / QK_K;
  constexpr size_t kTileBytes = kPackedQ4KTile;
  const TokenTile<NT> tok(*g.a, t0);
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const uint8_t* tiles = g.w + size_t(grp) * nsb * kTileBytes;
  __m256 acc[NH][NT];
  fill(acc, _mm256_setzero_ps());
  for (int i = 0; i < nsb; ++i) {
    const uint8_t* tile = tiles + size_t(i) * kTileBytes;
    __m256i isum[NH][NT];
    fill(isum, _mm256_setzero_si256());
    for (int c = 0; c < 4; ++c) {
      if (h0 == 0) prefetch_stream_part(tile, kTileBytes, c, 4);
      __m256i sa[NH][NT], sb[NH][NT];  // int16: 8 pair sums of u <= 15 times 127, <= 30480
      fill(sa, _mm256_setzero_si256());
      fill(sb, _mm256_setzero_si256());
      for (int e = 0; e < 8; ++e) {
        const int at = i * QK_K + 64 * c + 4 * e;
        __m256i xa[NT], xb[NT];
        for (int t = 0; t < NT; ++t) {
          xa[t] = bcast4_avx2(tok.q[t] + at);
          xb[t] = bcast4_avx2(tok.q[t] + at + 32);
        }
        for (int h = 0; h < NH; ++h) {
          const __m256i v = load256(tile + 64 * (8 * c + e) + 32 * (h0 + h));
          const __m256i lo = _mm256_and_si256(v, low4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
          for (int t = 0; t < NT; ++t) {
            sa[h][t] = _mm256_add_epi16(sa[h][t], _mm256_maddubs_epi16(lo, xa[t]));
            sb[h][t] = _mm256_add_epi16(sb[h][t], _mm256_maddubs_epi16(hi, xb[t]));
          }
        }
      }
      for (int h = 0; h < NH; ++h) {
        const int rows = kHalfRows * (h0 + h);
        const __m256i sca = u8_twice(tile + 2048 + 16 * (2 * c) + rows), scb = u8_twice(tile + 2048 + 16 * (2 * c + 1) + rows);
        for (int t = 0; t < NT; ++t)
          isum[h][t] = _mm256_add_epi32(isum[h][t], _mm256_add_epi32(_mm256_madd_epi16(sa[h][t], sca), _mm256_madd_epi16(sb[h][t], scb)));
      }
    }
    for (int h = 0; h < NH; ++h) {
      const int rows = kHalfRows * (h0 + h);
      __m256i msum[NT];  // sum_j mn_j * sum32_j, as mn_j * (sum16 + sum16)
      for (int t = 0; t < NT; ++t) msum[t] = _mm256_setzero_si256();
      for (int j = 0; j < 8; ++j) {
        const __m256i m = u8_twice(tile + 2176 + 16 * j + rows);
        for (int t = 0; t < NT; ++t)
          msum[t] = _mm256_add_epi32(msum[t], _mm256_madd_epi16(m, bcast_pair16_avx2(tok.sum16[t] + 16 * i + 2 * j)));
      }
      const __m256 d = f16_half(tile + 2304 + 2 * rows), dmin = f16_half(tile + 2336 + 2 * rows);
      for (int t = 0; t < NT; ++t) {
        const __m256 da = _mm256_set1_ps(tok.d[t][i]);
        acc[h][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[h][t]), _mm256_mul_ps(d, da), acc[h][t]);
        acc[h][t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(msum[t]), _mm256_mul_ps(dmin, da), acc[h][t]);
      }
    }
  }
  for (int h = 0; h < NH; ++h)
    for (int t = 0; t < NT; ++t) store_half(g, t0 + t, grp, h0 + h, acc[h][t]);
}

// Q6_K: as Q4_K's, with the high bits merged in and the -32 zero point through the sums per 16.
template <int NH, int NT>
void packed_q6k_group_avx2(const GemmTask& g, int64_t grp, int h0, int t0) {
  const int nsb = g.K / QK_K;
  constexpr size_t kTileBytes = kPackedQ6KTile;
  const TokenTile<NT> tok(*g.a, t0);
  const __m256i low4 = _mm256_set1_epi8(0x0F), bits45 = _mm256_set1_epi8(0x30);
  auto high_bits = [&](__m256i qh, int k) {  // those of value group k, moved to bits 4 and 5
    switch (k) {
      case 0: return _mm256_and_si256(_mm256_slli_epi16(qh, 4), bits45);
      case 1: return _mm256_and_si256(_mm256_slli_epi16(qh, 2), bits45);
      case 2: return _mm256_and_si256(qh, bits45);
      default: return _mm256_and_si256(_mm256_srli_epi16(qh, 2), bits45);
    }
  };
  const uint8_t* tiles = g.w + size_t(grp) * nsb * kTileBytes;
  __m256 acc[NH][NT];
  fill(acc, _mm256_setzero_ps());
  for (int i = 0; i < nsb; ++i) {
    const uint8_t* tile = tiles + size_t(i) * kTileBytes;
    __m256i isum[NH][NT];
    fill(isum, _mm256_setzero_si256());
    for (int c = 0; c < 4; ++c)
      for (int q = 0; q < 2; ++q) {    // groups 4c + q (half A) and 4c + 2 + q (half B)
        if (h0 == 0) prefetch_stream_part(tile, kTileBytes, 2 * c + q, 8);
        for (int k2 = 0; k2 < 4; k2 += 2) {  // int16: 4 pair sums of u <= 63 times 127, <= 32004
          __m256i sa[NH][NT], sb[NH][NT];
          fill(sa, _mm256_setzero_si256());
          fill(sb, _mm256_setzero_si256());
          for (int k = k2; k < k2 + 2; ++k) {
            const int e = 4 * q + k, at = i * QK_K + 64 * c + 4 * e;
            __m256i xa[NT], xb[NT];
            for (int t = 0; t < NT; ++t) {
              xa[t] = bcast4_avx2(tok.q[t] + at);
              xb[t] = bcast4_avx2(tok.q[t] + at + 32);
            }
            for (int h = 0; h < NH; ++h) {
              const int half = 32 * (h0 + h);
              const __m256i qha = load256(tile + 2048 + 64 * (4 * c + 2 * q) + half);
              const __m256i qhb = load256(tile + 2048 + 64 * (4 * c + 2 * q + 1) + half);
              const __m256i v = load256(tile + 64 * (8 * c + e) + half);
              const __m256i ua = _mm256_or_si256(_mm256_and_si256(v, low4), high_bits(qha, k));
              const __m256i ub = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), low4), high_bits(qhb, k));
              for (int t = 0; t < NT; ++t) {
                sa[h][t] = _mm256_add_epi16(sa[h][t], _mm256_maddubs_epi16(ua, xa[t]));
                sb[h][t] = _mm256_add_epi16(sb[h][t], _mm256_maddubs_epi16(ub, xb[t]));
              }
            }
          }
          for (int h = 0; h < NH; ++h) {
            const int rows = kHalfRows * (h0 + h);
            const uint8_t* sc = tile + 3072 + rows;
            const __m256i sca = i8_pair(sc + 16 * (4 * c + q), sc + 16 * (4 * c + q));
            const __m256i scb = i8_pair(sc + 16 * (4 * c + 2 + q), sc + 16 * (4 * c + 2 + q));
            for (int t = 0; t < NT; ++t)
              isum[h][t] = _mm256_add_epi32(isum[h][t], _mm256_add_epi32(_mm256_madd_epi16(sa[h][t], sca), _mm256_madd_epi16(sb[h][t], scb)));
          }
        }
      }
    for (int h = 0; h < NH; ++h) {
      const int rows = kHalfRows * (h0 + h);
      const uint8_t* sc = tile + 3072 + rows;
      __m256i off[NT];  // 32 * sum_g sc_g * sum16_g comes off; scales paired per int32 lane
      for (int t = 0; t < NT; ++t) off[t] = _mm256_setzero_si256();
      for (int j = 0; j < 8; ++j) {
        const __m256i pair = i8_pair(sc + 16 * (2 * j), sc + 16 * (2 * j + 1));
        for (int t = 0; t < NT; ++t)
          off[t] = _mm256_add_epi32(off[t], _mm256_madd_epi16(pair, bcast_pair16_avx2(tok.sum16[t] + 16 * i + 2 * j)));
      }
      const __m256 d = f16_half(tile + 3328 + 2 * rows);
      for (int t = 0; t < NT; ++t) {
        const __m256i s = _mm256_sub_epi32(isum[h][t], _mm256_slli_epi32(off[t], 5));
        acc[h][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(d, _mm256_set1_ps(tok.d[t][i])), acc[h][t]);
      }
    }
  }
  for (int h = 0; h < NH; ++h)
    for (int t = 0; t < NT; ++t) store_half(g, t0 + t, grp, h0 + h, acc[h][t]);
}

// Q4_0, Q5_0 and Q8_0: one tile per block of 32, four accumulator chains per row and token.
// Q8_0's bytes q + 128 go back to q, |q| times the activations with q's signs (vpmaddubsw
// cannot take u up to 255): the same integer as u * a less 128 times the activations' sum.
template <GgmlType kType, int NH, int NT>
void packed_block32_group_avx2(const GemmTask& g, int64_t grp, int h0, int t0) {
  const int nb = g.K / QK;
  const size_t tile_bytes = packed_tile_bytes(kType);
  constexpr int zero = kType == GgmlType::Q4_0 ? 8 : kType == GgmlType::Q5_0 ? 16 : 0;
  const TokenTile<NT> tok(*g.a, t0);
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const uint8_t* tiles = g.w + size_t(grp) * nb * tile_bytes;
  __m256 chains[NH][NT][4];
  for (int h = 0; h < NH; ++h)
    for (int t = 0; t < NT; ++t)
      for (int c = 0; c < 4; ++c) chains[h][t][c] = _mm256_setzero_ps();
  for (int b = 0; b < nb; ++b) {
    const uint8_t* tile = tiles + size_t(b) * tile_bytes;
    if (h0 == 0) prefetch_stream(tile, tile_bytes);
    __m256i s[NH][NT];
    for (int h = 0; h < NH; ++h)
      for (int t = 0; t < NT; ++t) s[h][t] = _mm256_set1_epi32(-zero * tok.sum32[t][b]);
    // Q4_0: int16 sums of 8 pairs of u <= 15 (<= 30480); Q5_0 of 4 pairs of u <= 31 (<= 31496).
    constexpr int kRun = kType == GgmlType::Q4_0 ? 8 : kType == GgmlType::Q5_0 ? 4 : 1;
    for (int e0 = 0; e0 < 8; e0 += kRun) {
      __m256i p[NH][NT];
      fill(p, _mm256_setzero_si256());
      for (int e = e0; e < e0 + kRun; ++e) {
        __m256i x[NT];
        for (int t = 0; t < NT; ++t) x[t] = bcast4_avx2(tok.q[t] + b * QK + 4 * e);
        for (int h = 0; h < NH; ++h) {
          const int half = 32 * (h0 + h);
          if constexpr (kType == GgmlType::Q8_0) {
            const __m256i q = _mm256_xor_si256(load256(tile + 64 * e + half), _mm256_set1_epi8(char(0x80)));
            const __m256i u = _mm256_sign_epi8(q, q);  // |q| <= 128: pair sums <= 32512
            for (int t = 0; t < NT; ++t) p[h][t] = _mm256_maddubs_epi16(u, _mm256_sign_epi8(x[t], q));
          } else {
            const __m256i v = load256(tile + 64 * (e % 4) + half);
            __m256i u = _mm256_and_si256(e < 4 ? v : _mm256_srli_epi16(v, 4), low4);
            if constexpr (kType == GgmlType::Q5_0) u = _mm256_or_si256(u, fifth_bits(tile + 256 + 8 * e + 4 * (h0 + h)));
            for (int t = 0; t < NT; ++t) p[h][t] = _mm256_add_epi16(p[h][t], _mm256_maddubs_epi16(u, x[t]));
          }
        }
      }
      for (int h = 0; h < NH; ++h)
        for (int t = 0; t < NT; ++t) s[h][t] = _mm256_add_epi32(s[h][t], madd_ones(p[h][t]));
    }
    for (int h = 0; h < NH; ++h) {
      const __m256 d = f16_half(tile + tile_bytes - 32 + 2 * kHalfRows * (h0 + h));
      for (int t = 0; t < NT; ++t) {
        __m256& c = chains[h][t][b % 4];
        c = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[h][t]), _mm256_mul_ps(d, _mm256_set1_ps(tok.d[t][b])), c);
      }
    }
  }
  for (int h = 0; h < NH; ++h)
    for (int t = 0; t < NT; ++t)
      store_half(g, t0 + t, grp, h0 + h,
                 _mm256_add_ps(_mm256_add_ps(chains[h][t][0], chains[h][t][1]), _mm256_add_ps(chains[h][t][2], chains[h][t][3])));
}

// A tile of NT tokens over the task's groups: one token with both halves at once, more in
// pairs of tokens a half at a time.
template <template <int, int> class Group, int NT>
void packed_tile_avx2(const GemmTask& g, int t0) {
  for (int64_t grp = g.r0 / kRowGroup; grp < g.r1 / kRowGroup; ++grp) {
    if constexpr (NT == 1) {
      Group<2, 1>::run(g, grp, 0, t0);
    } else {
      for (int h = 0; h < 2; ++h) {
        for (int t = 0; t + 2 <= NT; t += 2) Group<1, 2>::run(g, grp, h, t0 + t);
        if constexpr (NT % 2) Group<1, 1>::run(g, grp, h, t0 + NT - 1);
      }
    }
  }
}
template <int NH, int NT> struct PackedQ4KGroup {
  static void run(const GemmTask& g, int64_t grp, int h0, int t0) { packed_q4k_group_avx2<NH, NT>(g, grp, h0, t0); }
};
template <int NH, int NT> struct PackedQ6KGroup {
  static void run(const GemmTask& g, int64_t grp, int h0, int t0) { packed_q6k_group_avx2<NH, NT>(g, grp, h0, t0); }
};
template <GgmlType kType> struct PackedBlock32Group {
  template <int NH, int NT> struct G {
    static void run(const GemmTask& g, int64_t grp, int h0, int t0) { packed_block32_group_avx2<kType, NH, NT>(g, grp, h0, t0); }
  };
};
template <int NT> struct PackedQ4KTile { static void run(const GemmTask& g, int t0) { packed_tile_avx2<PackedQ4KGroup, NT>(g, t0); } };
template <int NT> struct PackedQ6KTile { static void run(const GemmTask& g, int t0) { packed_tile_avx2<PackedQ6KGroup, NT>(g, t0); } };
template <GgmlType kType> struct PackedBlock32Tile {
  template <int NT> struct T {
    static void run(const GemmTask& g, int t0) { packed_tile_avx2<PackedBlock32Group<kType>::template G, NT>(g, t0); }
  };
};
#endif

}  // namespace
}  // namespace muse::MUSE_SIMD_NS

#include "ops/float_ops-inl.h"
#include "ops/quantize-inl.h"

namespace muse::MUSE_SIMD_NS {
namespace {

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
  k.gemm[int(GgmlType::Q8_0)] = run_tiles<LegacyTile<BlockQ8_0>::T>;
  k.gemm[int(GgmlType::Q4_K)] = run_tiles<Q4KTile>;
  k.gemm[int(GgmlType::Q5_K)] = run_tiles<Q5KTile>;
  k.gemm[int(GgmlType::Q6_K)] = run_tiles<Q6KTile>;
#if defined(__AVX512F__) && defined(MUSE_VNNI)
  k.gemm_rows[int(GgmlType::F32)] = gemm_rows_float<GgmlType::F32>;
  k.gemm_rows[int(GgmlType::F16)] = gemm_rows_float<GgmlType::F16>;
  k.gemm_rows[int(GgmlType::BF16)] = gemm_rows_float<GgmlType::BF16>;
  k.gemm_rows[int(GgmlType::Q4_0)] = gemm_rows<GgmlType::Q4_0>;
  k.gemm_rows[int(GgmlType::Q4_1)] = gemm_rows<GgmlType::Q4_1>;
  k.gemm_rows[int(GgmlType::Q5_0)] = gemm_rows<GgmlType::Q5_0>;
  k.gemm_rows[int(GgmlType::Q5_1)] = gemm_rows<GgmlType::Q5_1>;
  k.gemm_rows[int(GgmlType::Q8_0)] = gemm_rows<GgmlType::Q8_0>;
  k.gemm_rows[int(GgmlType::Q4_K)] = gemm_rows<GgmlType::Q4_K>;
  k.gemm_rows[int(GgmlType::Q5_K)] = gemm_rows<GgmlType::Q5_K>;
  k.gemm_rows[int(GgmlType::Q6_K)] = gemm_rows<GgmlType::Q6_K>;
#endif
  k.gemm_packed[int(GgmlType::F32)] = run_tiles<PackedFloatTile<GgmlType::F32>::T>;
  k.gemm_packed[int(GgmlType::F16)] = run_tiles<PackedFloatTile<GgmlType::F16>::T>;
  k.gemm_packed[int(GgmlType::BF16)] = run_tiles<PackedFloatTile<GgmlType::BF16>::T>;
  k.gemm_packed[int(GgmlType::Q4_K)] = run_tiles<PackedQ4KTile>;
  k.gemm_packed[int(GgmlType::Q6_K)] = run_tiles<PackedQ6KTile>;
  k.gemm_packed[int(GgmlType::Q4_0)] = run_tiles<PackedBlock32Tile<GgmlType::Q4_0>::T>;
  k.gemm_packed[int(GgmlType::Q5_0)] = run_tiles<PackedBlock32Tile<GgmlType::Q5_0>::T>;
  k.gemm_packed[int(GgmlType::Q8_0)] = run_tiles<PackedBlock32Tile<GgmlType::Q8_0>::T>;
  k.dot_keys = dot_keys<float>;
  k.dot_keys_f16 = dot_keys<uint16_t>;
  k.weighted_rows = weighted_rows<float>;
  k.weighted_rows_f16 = weighted_rows<uint16_t>;
  k.softmax = softmax;
  k.swiglu = swiglu;
  k.to_f16 = to_f16;
  k.round_f16 = round_f16;
  k.quantize_block32 = quantize_block32;
  k.quantize_block256 = quantize_block256;
  return k;
}

}  // namespace
}  // namespace muse::MUSE_SIMD_NS
