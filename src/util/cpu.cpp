#include "util/cpu.h"

#include <cpuid.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace muse {
namespace {

uint64_t xgetbv0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t(hi) << 32) | lo;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27);
  if (!osxsave) return f;
  const uint64_t xcr0 = xgetbv0();
  const bool ymm_os = (xcr0 & 0x6) == 0x6;
  const bool zmm_os = (xcr0 & 0xe6) == 0xe6;
  f.fma = ymm_os && (c & (1u << 12));
  f.f16c = ymm_os && (c & (1u << 29));
  __cpuid_count(7, 0, a, b, c, d);
  f.avx2 = ymm_os && (b & (1u << 5));
  f.avx512f = zmm_os && (b & (1u << 16));
  f.avx512bw = zmm_os && (b & (1u << 30));
  f.avx512vl = zmm_os && (b & (1u << 31));
  f.avx512vnni = zmm_os && (c & (1u << 11));
  __cpuid_count(7, 1, a, b, c, d);
  f.avx512bf16 = zmm_os && (a & (1u << 5));
  return f;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

SimdLevel simd_level() {
  static const SimdLevel level = [] {
    const CpuFeatures& f = cpu_features();
    SimdLevel best = SimdLevel::kScalar;
    if (f.avx2 && f.fma && f.f16c) best = SimdLevel::kAvx2;
    if (best == SimdLevel::kAvx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni)
      best = SimdLevel::kAvx512;
    if (const char* want = std::getenv("MUSE_SIMD")) {
      SimdLevel cap = best;
      if (!std::strcmp(want, "scalar")) cap = SimdLevel::kScalar;
      if (!std::strcmp(want, "avx2")) cap = SimdLevel::kAvx2;
      if (int(cap) < int(best)) best = cap;
    }
    return best;
  }();
  return level;
}

const char* simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::kAvx512: return "avx512-vnni";
    case SimdLevel::kAvx2: return "avx2";
    default: return "scalar";
  }
}

size_t last_level_cache_bytes() {
  for (const int name : {_SC_LEVEL3_CACHE_SIZE, _SC_LEVEL2_CACHE_SIZE}) {
    const long bytes = sysconf(name);
    if (bytes > 0) return size_t(bytes);
  }
  return 0;
}

}  // namespace muse
