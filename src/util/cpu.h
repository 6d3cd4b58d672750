// Run-time CPU feature detection: kernels are chosen once per process.
#pragma once
#include <cstddef>
#include <string>

namespace muse {

enum class SimdLevel { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512vnni = false, avx512bf16 = false;
};

const CpuFeatures& cpu_features();
// The best level this CPU supports, lowered by MUSE_SIMD=scalar|avx2|avx512 for testing.
SimdLevel simd_level();
const char* simd_level_name(SimdLevel level);
// The last-level cache's size in bytes (L3, else L2), or 0 where the system does not say.
size_t last_level_cache_bytes();

}  // namespace muse
