#include "ops/matmul.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"
#include "util/fp16.h"
#include "util/thread_pool.h"

namespace muse {

ActFormat act_format(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::Q5_0: case GgmlType::Q5_1:
    case GgmlType::Q8_0:
      return ActFormat::kQ8Block32;
    case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K:
      return ActFormat::kQ8Block256;
    default: return ActFormat::kF32;
  }
}

void prepare_acts(const float* x, int64_t ldx, int T, int K, ActFormat format, QuantizedActs& out) {
  out.format = format;
  out.K = K;
  out.T = T;
  out.x = x;
  out.ldx = ldx;
  if (format == ActFormat::kF32) return;
  const int unit = format == ActFormat::kQ8Block32 ? QK : QK_K;
  if (K % unit) fail("activation length ", K, " is not a multiple of ", unit);
  out.q.resize(size_t(T) * K);
  out.d.resize(size_t(T) * (K / unit));
  out.sa.resize(size_t(T) * (K / QK));
  out.sum32.resize(size_t(T) * (K / QK));
  if (format == ActFormat::kQ8Block256) out.sum16.resize(size_t(T) * (K / 16));
}

void quantize_act_row(QuantizedActs& out, int t) {
  const int K = out.K;
  const KernelSet& ks = kernels();
  const float* x = out.x + t * out.ldx;
  int8_t* q = out.q.data() + int64_t(t) * K;
  if (out.format == ActFormat::kQ8Block32)
    ks.quantize_block32(x, K, q, out.d.data() + t * (K / QK), out.sa.data() + t * (K / QK), out.sum32.data() + t * (K / QK));
  else if (out.format == ActFormat::kQ8Block256)
    ks.quantize_block256(x, K, q, out.d.data() + t * (K / QK_K), out.sum16.data() + t * (K / 16),
                          out.sa.data() + t * (K / QK), out.sum32.data() + t * (K / QK));
}

void quantize_acts(const float* x, int64_t ldx, int T, int K, ActFormat format, QuantizedActs& out,
                   ThreadPool* pool) {
  prepare_acts(x, ldx, T, K, format, out);
  if (format == ActFormat::kF32) return;
  if (pool && T > 1) pool->parallel_for(T, [&](int64_t t, int) { quantize_act_row(out, int(t)); });
  else
    for (int t = 0; t < T; ++t) quantize_act_row(out, t);
}

const KernelSet& kernels_for(SimdLevel level) {
  switch (level) {
    case SimdLevel::kAvx512: return kernels_avx512::kSet;
    case SimdLevel::kAvx2: return kernels_avx2::kSet;
    default: return kernels_scalar::kSet;
  }
}

const KernelSet& kernels() {
  static const KernelSet& k = kernels_for(simd_level());
  return k;
}

namespace {

// One job's split into tasks: row chunks small enough to balance threads but large enough that
// each task streams a useful run of weights, times token chunks when the batch is large.
// Packed weights go through their kernel in whole groups of kRowGroup rows (any rows after
// the last group through the plain kernel); otherwise prompt batches take the batched kernel,
// one task per group (it unpacks the group's weights once for all tokens).
class JobTasks {
 public:
  JobTasks(const MatmulJob& job, int n_threads) : job_(job), ks_(kernels()) {
    const Matrix& w = *job.w;
    kernel_ = ks_.gemm[int(w.type)];
    if (!kernel_) fail("no kernel for tensor type ", type_name(w.type));
    packed_ = w.packed ? ks_.gemm_packed[int(w.type)] : nullptr;
    batched_ = ks_.gemm_rows[int(w.type)];
    if (!packed_ && batched_ && job.a->T >= kBatchedMinTokens && w.rows >= kRowGroup) {
      groups_ = w.rows / kRowGroup;
      n_tasks_ = groups_ + (groups_ * kRowGroup < w.rows ? 1 : 0);
      return;
    }
    batched_ = nullptr;
    chunk_ = std::max<int64_t>(8, w.rows / (int64_t(n_threads) * 8));
    // The packed float kernel takes 4 groups per pass (fewer leave its FMA latency exposed).
    const int64_t unit = packed_ && is_float_type(w.type) ? 4 * kRowGroup : kRowGroup;
    chunk_ = (chunk_ + unit - 1) / unit * unit;
    n_row_chunks_ = (w.rows + chunk_ - 1) / chunk_;
    n_tasks_ = n_row_chunks_ * ((job.a->T + kTokenChunk - 1) / kTokenChunk);
  }
  int64_t size() const { return n_tasks_; }
  void run(int64_t task) const {
    const Matrix& w = *job_.w;
    if (batched_) {
      if (task < groups_) batched_(task_for(task * kRowGroup, (task + 1) * kRowGroup, 0, job_.a->T));
      else kernel_(task_for(groups_ * kRowGroup, w.rows, 0, job_.a->T));
      return;
    }
    const int64_t rc = task % n_row_chunks_, tc = task / n_row_chunks_;
    const int t0 = int(tc * kTokenChunk), t1 = std::min(job_.a->T, t0 + kTokenChunk);
    const int64_t r0 = rc * chunk_, r1 = std::min(w.rows, (rc + 1) * chunk_);
    if (!packed_) return kernel_(task_for(r0, r1, t0, t1));
    const int64_t packed_end = std::min(r1, w.rows / kRowGroup * kRowGroup);
    if (r0 < packed_end) {
      GemmTask g = task_for(r0, packed_end, t0, t1);
      g.w = w.packed;
      packed_(g);
    }
    if (packed_end < r1) kernel_(task_for(std::max(r0, packed_end), r1, t0, t1));
  }

 private:
  static constexpr int kTokenChunk = 64;
  GemmTask task_for(int64_t r0, int64_t r1, int t0, int t1) const {
    GemmTask g;
    g.w = job_.w->data;
    g.w_row_bytes = job_.w->row_bytes();
    g.K = int(job_.w->cols);
    g.a = job_.a;
    g.r0 = r0;
    g.r1 = r1;
    g.t0 = t0;
    g.t1 = t1;
    g.y = job_.y;
    g.ldy = job_.ldy;
    return g;
  }
  MatmulJob job_;
  const KernelSet& ks_;
  GemmKernel kernel_ = nullptr, packed_ = nullptr, batched_ = nullptr;
  int64_t groups_ = 0, chunk_ = 0, n_row_chunks_ = 0, n_tasks_ = 0;
};

}  // namespace

void matmul_jobs(const MatmulJob* jobs, int n_jobs, ThreadPool& pool) {
  std::vector<JobTasks> split;
  split.reserve(size_t(n_jobs));
  int64_t total = 0;
  for (int j = 0; j < n_jobs; ++j) total += split.emplace_back(jobs[j], pool.size()).size();
  pool.parallel_for(total, [&](int64_t task, int) {
    size_t j = 0;
    while (task >= split[j].size()) task -= split[j++].size();
    split[j].run(task);
  });
}

void matmul_quantized(const Matrix& w, const QuantizedActs& a, float* y, int64_t ldy,
                      ThreadPool& pool) {
  const MatmulJob job{&w, &a, y, ldy};
  matmul_jobs(&job, 1, pool);
}

void matmul(const Matrix& w, const float* x, int64_t ldx, int T, float* y, int64_t ldy,
            ThreadPool& pool, QuantizedActs& scratch) {
  quantize_acts(x, ldx, T, int(w.cols), act_format(w.type), scratch, &pool);
  matmul_quantized(w, scratch, y, ldy, pool);
}

}  // namespace muse
