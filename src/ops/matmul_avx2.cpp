// AVX2 + FMA + F16C kernels (built with those flags only; chosen at run time).
#define MUSE_SIMD_NS kernels_avx2
#include "ops/matmul-inl.h"

namespace muse::kernels_avx2 {
const KernelSet kSet = make("avx2");
}
