// AVX-512 (F, BW, VL, VNNI) kernels (built with those flags only; chosen at run time).
#define MUSE_SIMD_NS kernels_avx512
#include "ops/matmul-inl.h"

namespace muse::kernels_avx512 {
const KernelSet kSet = make("avx512-vnni");
}
