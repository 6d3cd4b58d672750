// Matrix multiplication of a GGUF weight matrix (any supported type) with a batch of float
// activation rows: y[t][r] = dot(W row r, x[t]). For quantized weights the activations are
// first quantized to 8 bits (per 32 or per 256 values, as llama.cpp does), so the inner loops
// are integer dot products.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "quant/types.h"
#include "util/cpu.h"
#include "util/fp16.h"

namespace muse {

class ThreadPool;

enum class ActFormat { kF32, kQ8Block32, kQ8Block256 };
ActFormat act_format(GgmlType weight_type);

// T activation rows of K values in the format a weight type multiplies with.
struct QuantizedActs {
  ActFormat format = ActFormat::kF32;
  int K = 0, T = 0;
  // kF32: the caller's rows.
  const float* x = nullptr;
  int64_t ldx = 0;
  // Quantized formats, row t at offset t * (K / unit):
  std::vector<int8_t> q;       // K values per row
  std::vector<float> d;        // one scale per 32 (Block32) or 256 (Block256) values
  std::vector<float> sa;       // d * sum(q) per 32 values
  std::vector<int32_t> sum32;  // sum(q) per 32 values
  std::vector<int16_t> sum16;  // Block256: sum(q) per 16 values
  const int8_t* q_row(int t) const { return q.data() + int64_t(t) * K; }
  const float* d_row(int t) const {
    return d.data() + int64_t(t) * (K / (format == ActFormat::kQ8Block32 ? QK : QK_K));
  }
  const float* sa_row(int t) const { return sa.data() + int64_t(t) * (K / QK); }
  const int32_t* sum32_row(int t) const { return sum32.data() + int64_t(t) * (K / QK); }
  const int16_t* sum16_row(int t) const { return sum16.data() + int64_t(t) * (K / 16); }
  const float* x_row(int t) const { return x + t * ldx; }
};

// Every kernel computes a quantized row's dot product with the same arithmetic, so results
// do not depend on the instruction set or on how many tokens share a batch: integer sums per
// block (exact in any order), then, block after block, these float32 fused multiply-adds:
//   Q4_0, Q5_0, Q8_0:  acc[b % 4] = fma(sum((q - zero) * a), d * da, acc[b % 4])
//   Q4_1, Q5_1:        acc[b % 4] = fma(sum(q * a), d * da, acc[b % 4]);
//                      acc[b % 4] = fma(m, da * sum(a), acc[b % 4])
//                      result = (acc[0] + acc[1]) + (acc[2] + acc[3])
//     (four chains, so a row's 32-value blocks are not one long serial dependency)
//   Q4_K, Q5_K:        per 256: acc = fma(sum_j sc_j sum(q * a), d * da, acc);
//                               acc = fma(sum_j mn_j sum_j(a), -(dmin * da), acc)
//   Q6_K:              per 256: acc = fma(sum_g sc_g sum((q - 32) * a), d * da, acc)
// where a are the 8-bit activations and da their scale. Float weights are summed in float32
// in an order that depends on the kernel set and on whether they are packed; for one token it
// does not depend on the other tokens in the call (but prompts of kBatchedMinTokens or more
// go through the batched kernel when the weights are not packed).

// Quantizes rows x[t * ldx .. + K) for t < T (K a multiple of the format's block).
void quantize_acts(const float* x, int64_t ldx, int T, int K, ActFormat format, QuantizedActs& out,
                   ThreadPool* pool = nullptr);
// The same in two steps, for callers that quantize each row as soon as it is ready: sizing
// `out` for the rows (which need not hold values yet), then row t (rows in parallel is fine).
void prepare_acts(const float* x, int64_t ldx, int T, int K, ActFormat format, QuantizedActs& out);
void quantize_act_row(QuantizedActs& out, int t);

// One rectangle of output: rows [r0, r1) of W times tokens [t0, t1).
struct GemmTask {
  const uint8_t* w = nullptr;
  size_t w_row_bytes = 0;
  int K = 0;
  const QuantizedActs* a = nullptr;
  int64_t r0 = 0, r1 = 0;
  int t0 = 0, t1 = 0;
  float* y = nullptr;  // y[t * ldy + r]
  int64_t ldy = 0;
};
using GemmKernel = void (*)(const GemmTask&);
constexpr int kRowGroup = 16;  // rows per group in the batched kernels (one AVX-512 vector)
constexpr int kBatchedMinTokens = 24;  // from this many tokens on, the batched kernels pay off (measured: per-row kernels win at 8 and 16 tokens, batched at 31)

// A run of KV blocks of one head as the attention kernels read it: `rows` rows of `dim`
// values in blocks of `block` rows, block b at blocks[b]. Values are stored as rows (row r's
// value i at blocks[r / block][(r % block) * dim + i]), keys by dimension (key t's value i at
// blocks[t / block][i * block + t % block]; see kv/kv_pool.h).
template <typename Row>
struct KvSpan {
  const Row* const* blocks;
  int block, rows, dim;
};

struct KernelSet {
  const char* name;
  GemmKernel gemm[kGgmlTypeLimit];
  // Batched (prompt) kernels over whole groups of kRowGroup rows; null where the set has none.
  GemmKernel gemm_rows[kGgmlTypeLimit];
  // Kernels over weights packed at load (ops/packed_weights.h): g.w is the packed matrix and
  // [r0, r1) whole groups of kRowGroup rows; any number of tokens. Null where the set has none.
  GemmKernel gemm_packed[kGgmlTypeLimit];
  // Attention over a span of KV blocks (KvSpan), F32 or F16 (the _f16 kernels convert values
  // as they load them, exactly, so they give what the float kernels give over the converted
  // rows).
  // For each of n_q queries j: s[j][t] = scale * (q[j] . key t) for the span's keys, summed as
  // four interleaved partial sums (value i into sum i mod 4 by fused multiply-add), then
  // (p0 + p1) + (p2 + p3): the same in every kernel set, whatever other queries share the call.
  void (*dot_keys)(const float* const* q, float* const* s, int n_q, const KvSpan<float>& keys,
                   float scale);
  void (*dot_keys_f16)(const float* const* q, float* const* s, int n_q,
                       const KvSpan<uint16_t>& keys, float scale);
  // For each of n_q queries j: out[j] += sum over r of p[j][r] * value row r, one fused
  // multiply-add per row and element in row order (so the result is the same however the rows
  // are split into calls, and whatever other queries share the call).
  void (*weighted_rows)(const float* const* p, float* const* out, int n_q,
                        const KvSpan<float>& values);
  void (*weighted_rows_f16)(const float* const* p, float* const* out, int n_q,
                            const KvSpan<uint16_t>& values);
  // In place softmax over n scores; with round_f16 the probabilities are rounded to F16
  // precision afterwards.
  void (*softmax)(float* x, int n, bool round_f16);
  // F16 conversion, rounding to nearest even (as util/fp16.h's float_to_fp16): out = x as F16;
  // x rounded to F16 precision in place.
  void (*to_f16)(const float* x, uint16_t* out, int n);
  void (*round_f16)(float* x, int n);
  // In place: x = silu(gate) * x over n values.
  void (*swiglu)(const float* gate, float* x, int n);
  // One activation row quantized per 32 (q, d, sa, sum32) or per 256 (q, d, sum16, sa, sum32)
  // values, as quantize_acts lays them out; every set gives identical bytes.
  void (*quantize_block32)(const float* x, int K, int8_t* q, float* d, float* sa, int32_t* sum32);
  void (*quantize_block256)(const float* x, int K, int8_t* q, float* d, int16_t* sum16, float* sa,
                            int32_t* sum32);
};
const KernelSet& kernels_for(SimdLevel level);
const KernelSet& kernels();  // the best for this CPU (see simd_level())

// A weight matrix as the forward pass sees it: rows of `cols` values.
struct Matrix {
  GgmlType type = GgmlType::F32;
  const uint8_t* data = nullptr;
  int64_t rows = 0, cols = 0;
  // The first rows / kRowGroup groups of rows packed for this CPU's kernels (see
  // ops/packed_weights.h), or null; `data` still holds every row.
  const uint8_t* packed = nullptr;
  size_t row_bytes() const { return muse::row_bytes(type, cols); }
};

// y[t * ldy + r] = W[r] . x[t * ldx], all rows, T tokens, on the pool. `scratch` keeps the
// quantized activations' buffers alive between calls so steady state allocates nothing.
void matmul(const Matrix& w, const float* x, int64_t ldx, int T, float* y, int64_t ldy,
            ThreadPool& pool, QuantizedActs& scratch);
// Same, with activations already quantized for w's type (several matrices share them).
void matmul_quantized(const Matrix& w, const QuantizedActs& a, float* y, int64_t ldy,
                      ThreadPool& pool);
// Several products in one parallel loop (one wait for all of them, and threads balance across
// matrices): y[t * ldy + r] = W[r] . a[t] for each job.
struct MatmulJob {
  const Matrix* w;
  const QuantizedActs* a;
  float* y;
  int64_t ldy;
};
void matmul_jobs(const MatmulJob* jobs, int n_jobs, ThreadPool& pool);

// What every per-32 quantizer does after a block's bytes are written: its scale (F16-rounded,
// as Q8_0's), the sum of its values, and scale times sum.
inline void finish_block32(int b, float scale, int sum, float* d, float* sa, int32_t* sum32) {
  d[b] = fp16_to_float(float_to_fp16(scale));
  sa[b] = d[b] * float(sum);
  sum32[b] = sum;
}

// What every per-256 quantizer does after a block's bytes and sums per 16 are written: its
// scale (0 for an all-zero block), sums per 32, and scale times sum per 32.
inline void finish_block256(int b, float scale, float* d, const int16_t* sum16, float* sa,
                            int32_t* sum32) {
  d[b] = scale;
  for (int g = 0; g < 8; ++g) {
    sum32[8 * b + g] = sum16[16 * b + 2 * g] + sum16[16 * b + 2 * g + 1];
    sa[8 * b + g] = scale * float(sum32[8 * b + g]);
  }
}

// An all-zero per-256 block: zero bytes, sums and scale.
inline void zero_block256(int b, int8_t* q, float* d, int16_t* sum16, float* sa, int32_t* sum32) {
  std::fill(q, q + QK_K, 0);
  std::fill(sum16 + 16 * b, sum16 + 16 * b + 16, 0);
  finish_block256(b, 0.0f, d, sum16, sa, sum32);
}

namespace kernels_scalar {
extern const KernelSet kSet;
// The reference activation quantizers (sets without their own use these).
void quantize_block32_row(const float* x, int K, int8_t* q, float* d, float* sa, int32_t* sum32);
void quantize_block256_row(const float* x, int K, int8_t* q, float* d, int16_t* sum16, float* sa,
                           int32_t* sum32);
}  // namespace kernels_scalar
namespace kernels_avx2 { extern const KernelSet kSet; }
namespace kernels_avx512 { extern const KernelSet kSet; }

}  // namespace muse
