#include "util/bandwidth.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>

#include "util/large_buffer.h"
#include "util/thread_pool.h"

namespace muse {

double measure_read_bandwidth(ThreadPool& pool, size_t bytes) {
  LargeBuffer buf(bytes);
  const size_t words = bytes / sizeof(uint64_t);
  const int64_t tasks = int64_t(pool.size()) * 16;
  // Written first, so the pages exist and reads are not served from the zero page.
  pool.parallel_for(tasks, [&](int64_t t, int) {
    const size_t lo = words * size_t(t) / size_t(tasks), hi = words * size_t(t + 1) / size_t(tasks);
    uint64_t* w = reinterpret_cast<uint64_t*>(buf.data());
    for (size_t i = lo; i < hi; ++i) w[i] = i;
  });
  std::atomic<uint64_t> sink{0};
  double best = 0;
  for (int pass = 0; pass < 3; ++pass) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for(tasks, [&](int64_t t, int) {
      const size_t lo = words * size_t(t) / size_t(tasks),
                   hi = words * size_t(t + 1) / size_t(tasks);
      const uint64_t* w = reinterpret_cast<const uint64_t*>(buf.data());
      uint64_t acc[8] = {};
      size_t i = lo;
      for (; i + 8 <= hi; i += 8)
        for (int j = 0; j < 8; ++j) acc[j] ^= w[i + j];
      for (; i < hi; ++i) acc[0] ^= w[i];
      uint64_t x = 0;
      for (uint64_t a : acc) x ^= a;
      sink.fetch_xor(x, std::memory_order_relaxed);  // keeps the reads
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, double(bytes) / s);
  }
  return best;
}

}  // namespace muse
