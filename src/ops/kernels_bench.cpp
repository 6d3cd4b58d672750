// Google Benchmark of the kernels alone, one thread: on weights that stay in the L2 cache (what
// the arithmetic costs) and on weights streamed from memory, apart from threading (which
// `muse bench` measures on whole models). MUSE_SIMD=avx2|scalar picks another kernel set.
//
//   build/muse_kernel_bench --benchmark_filter=Gemm/Q6_K/8/
//
// Gemm/TYPE/T/ROWS: the kernel a model uses for a ROWS x 1024 matrix (packed where the type
// packs) against T tokens; "MAC/s" counts row-value products per second.
// Attention/dot|weighted_f16|f32/Q: Q queries against 256 KV rows of 128 values, F16 (converted
// as they load) or F32.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <vector>

#include "ops/matmul.h"
#include "ops/packed_weights.h"
#include "util/fp16.h"

namespace muse {
namespace {

std::vector<float> random_values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

void BM_Gemm(benchmark::State& state, GgmlType type) {
  constexpr int kK = 1024;
  const int T = int(state.range(0)), kRows = int(state.range(1));
  const KernelSet& ks = kernels();
  const std::vector<float> wf = random_values(size_t(kRows) * kK, 1);
  const size_t rb = row_bytes(type, kK);
  std::vector<uint8_t> w(rb * kRows);
  for (int r = 0; r < kRows; ++r)
    quantize_row(type, wf.data() + size_t(r) * kK, w.data() + r * rb, kK);
  std::vector<uint8_t> packed;
  GemmKernel kernel = ks.gemm[int(type)];
  if (packable(type, kK) && ks.gemm_packed[int(type)]) {
    packed.resize(packed_bytes(type, kRows, kK));
    pack_groups(type, w.data(), kK, 0, kRows / kRowGroup, packed.data());
    kernel = ks.gemm_packed[int(type)];
  }
  const std::vector<float> x = random_values(size_t(T) * kK, 2);
  QuantizedActs acts;
  quantize_acts(x.data(), kK, T, kK, act_format(type), acts);
  std::vector<float> y(size_t(T) * kRows);
  GemmTask g;
  g.w = packed.empty() ? w.data() : packed.data();
  g.w_row_bytes = rb;
  g.K = kK;
  g.a = &acts;
  g.r0 = 0;
  g.r1 = kRows;
  g.t0 = 0;
  g.t1 = T;
  g.y = y.data();
  g.ldy = kRows;
  // The large matrix in row chunks as the matmul splits it for two threads (ops/matmul.cpp): a
  // kernel that passes over its rows more than once finds them in cache only when a chunk fits.
  const int64_t chunk = kRows > 512 ? kRows / 16 / kRowGroup * kRowGroup : kRows;
  for (auto _ : state) {
    for (int64_t r0 = 0; r0 < kRows; r0 += chunk) {
      g.r0 = r0;
      g.r1 = std::min<int64_t>(kRows, r0 + chunk);
      kernel(g);
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.counters["MAC/s"] =
      benchmark::Counter(double(kRows) * kK * T, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(ks.name) + (packed.empty() ? "" : " packed"));
}

constexpr int kKvRows = 256, kHeadDim = 128, kKvBlock = 16;  // the KV cache's block

// Random keys or values in blocks of kKvBlock rows, one after another (a sequence's blocks
// as the pool allocates them in order); keys are stored by dimension within a block, values
// as rows, the same bytes either way.
struct AttentionData {
  std::vector<uint16_t> rows_f16;
  std::vector<float> rows, q, out;
  std::vector<const float*> in, blocks;
  std::vector<const uint16_t*> blocks_f16;
  std::vector<float*> outs;
  AttentionData(int n_q, bool values) {
    rows = random_values(size_t(kKvRows) * kHeadDim, 3);
    for (float v : rows) rows_f16.push_back(float_to_fp16(v));
    for (int b = 0; b < kKvRows / kKvBlock; ++b) {
      blocks.push_back(rows.data() + size_t(b) * kKvBlock * kHeadDim);
      blocks_f16.push_back(rows_f16.data() + size_t(b) * kKvBlock * kHeadDim);
    }
    const int in_len = values ? kKvRows : kHeadDim, out_len = values ? kHeadDim : kKvRows;
    q = random_values(size_t(n_q) * in_len, 4);
    out.assign(size_t(n_q) * out_len, 0.0f);
    for (int j = 0; j < n_q; ++j) {
      in.push_back(q.data() + size_t(j) * in_len);
      outs.push_back(out.data() + size_t(j) * out_len);
    }
  }
};

void BM_Attention(benchmark::State& state, bool values, bool f16) {
  const int n_q = int(state.range(0));
  const KernelSet& ks = kernels();
  AttentionData d(n_q, values);
  const KvSpan<float> span{d.blocks.data(), kKvBlock, kKvRows, kHeadDim};
  const KvSpan<uint16_t> span16{d.blocks_f16.data(), kKvBlock, kKvRows, kHeadDim};
  for (auto _ : state) {
    if (values && f16)
      ks.weighted_rows_f16(d.in.data(), d.outs.data(), n_q, span16);
    else if (values)
      ks.weighted_rows(d.in.data(), d.outs.data(), n_q, span);
    else if (f16)
      ks.dot_keys_f16(d.in.data(), d.outs.data(), n_q, span16, 0.1f);
    else
      ks.dot_keys(d.in.data(), d.outs.data(), n_q, span, 0.1f);
    benchmark::DoNotOptimize(d.out.data());
    benchmark::ClobberMemory();
  }
  state.counters["MAC/s"] = benchmark::Counter(double(kKvRows) * kHeadDim * n_q,
                                               benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(ks.name);
}

// Rows: 512 (the weights stay in L2: the arithmetic alone) and 151936 (Qwen3's output matrix,
// more than any last-level cache: streamed from memory as a decode step streams it).
void token_counts(benchmark::internal::Benchmark* b) {
  for (int rows : {512, 151936})
    for (int t : {1, 2, 3, 4, 8, 16, 64})
      if (rows == 512 || t <= 8) b->Args({t, rows});
}

BENCHMARK_CAPTURE(BM_Gemm, Q4_K, GgmlType::Q4_K)->Apply(token_counts);
BENCHMARK_CAPTURE(BM_Gemm, Q6_K, GgmlType::Q6_K)->Apply(token_counts);
BENCHMARK_CAPTURE(BM_Gemm, Q8_0, GgmlType::Q8_0)->Apply(token_counts);
BENCHMARK_CAPTURE(BM_Gemm, Q4_0, GgmlType::Q4_0)->Apply(token_counts);
BENCHMARK_CAPTURE(BM_Gemm, F16, GgmlType::F16)->Apply(token_counts);
BENCHMARK_CAPTURE(BM_Attention, dot_f16, false, true)->Arg(1)->Arg(2)->Arg(4)->Arg(16);
BENCHMARK_CAPTURE(BM_Attention, dot_f32, false, false)->Arg(1)->Arg(2)->Arg(4)->Arg(16);
BENCHMARK_CAPTURE(BM_Attention, weighted_f16, true, true)->Arg(1)->Arg(2)->Arg(4)->Arg(16);
BENCHMARK_CAPTURE(BM_Attention, weighted_f32, true, false)->Arg(1)->Arg(2)->Arg(4)->Arg(16);

}  // namespace
}  // namespace muse

BENCHMARK_MAIN();
