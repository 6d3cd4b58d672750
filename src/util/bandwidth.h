// The machine's memory read bandwidth, measured the way a decode step reads weights: every
// thread streams its share of a buffer far larger than the caches.
#pragma once
#include <cstddef>

namespace muse {

class ThreadPool;

// Bytes per second, the best of a few passes over `bytes` of memory.
double measure_read_bandwidth(ThreadPool& pool, size_t bytes = size_t(512) << 20);

}  // namespace muse
