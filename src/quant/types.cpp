#include "quant/types.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "util/error.h"
#include "util/fp16.h"

namespace muse {
namespace {

struct TypeTable {
  TypeTraits t[kGgmlTypeLimit];
  constexpr TypeTable() : t{} {
    auto set = [&](GgmlType id, const char* name, int bs, int bytes, bool computable) {
      t[int(id)] = TypeTraits{name, bs, bytes, computable};
    };
    set(GgmlType::F32, "f32", 1, 4, true);
    set(GgmlType::F16, "f16", 1, 2, true);
    set(GgmlType::BF16, "bf16", 1, 2, true);
    set(GgmlType::Q4_0, "q4_0", 32, 18, true);
    set(GgmlType::Q4_1, "q4_1", 32, 20, true);
    set(GgmlType::Q5_0, "q5_0", 32, 22, true);
    set(GgmlType::Q5_1, "q5_1", 32, 24, true);
    set(GgmlType::Q8_0, "q8_0", 32, 34, true);
    set(GgmlType::Q8_1, "q8_1", 32, 36, false);
    set(GgmlType::Q2_K, "q2_K", 256, 84, false);
    set(GgmlType::Q3_K, "q3_K", 256, 110, false);
    set(GgmlType::Q4_K, "q4_K", 256, 144, true);
    set(GgmlType::Q5_K, "q5_K", 256, 176, true);
    set(GgmlType::Q6_K, "q6_K", 256, 210, true);
    set(GgmlType::Q8_K, "q8_K", 256, 292, false);
    set(GgmlType::IQ2_XXS, "iq2_xxs", 256, 66, false);
    set(GgmlType::IQ2_XS, "iq2_xs", 256, 74, false);
    set(GgmlType::IQ3_XXS, "iq3_xxs", 256, 98, false);
    set(GgmlType::IQ1_S, "iq1_s", 256, 50, false);
    set(GgmlType::IQ4_NL, "iq4_nl", 32, 18, false);
    set(GgmlType::IQ3_S, "iq3_s", 256, 110, false);
    set(GgmlType::IQ2_S, "iq2_s", 256, 82, false);
    set(GgmlType::IQ4_XS, "iq4_xs", 256, 136, false);
    set(GgmlType::I8, "i8", 1, 1, false);
    set(GgmlType::I16, "i16", 1, 2, false);
    set(GgmlType::I32, "i32", 1, 4, false);
    set(GgmlType::I64, "i64", 1, 8, false);
    set(GgmlType::F64, "f64", 1, 8, false);
    set(GgmlType::IQ1_M, "iq1_m", 256, 56, false);
    set(GgmlType::TQ1_0, "tq1_0", 256, 54, false);
    set(GgmlType::TQ2_0, "tq2_0", 256, 66, false);
    set(GgmlType::MXFP4, "mxfp4", 32, 17, false);
  }
};
constexpr TypeTable kTypes;

// Round to nearest, ties to even: the rounding llama.cpp's quantizers use.
inline int nearest_int(float v) { return int(std::nearbyint(v)); }

float max_abs_signed(const float* x, int n) {  // the element of largest magnitude, with sign
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  return max;
}

// ---- legacy 32-element blocks ----
void quantize_q4_0(const float* x, BlockQ4_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK) {
    const float max = max_abs_signed(x, QK);
    const float d = max / -8, id = d ? 1.0f / d : 0.0f;
    y[i].d = float_to_fp16(d);
    for (int j = 0; j < QK / 2; ++j) {
      const uint8_t a = std::min(15, int(int8_t(x[j] * id + 8.5f)));
      const uint8_t b = std::min(15, int(int8_t(x[j + QK / 2] * id + 8.5f)));
      y[i].qs[j] = a | (b << 4);
    }
  }
}
void quantize_q4_1(const float* x, BlockQ4_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK) {
    const float mn = *std::min_element(x, x + QK), mx = *std::max_element(x, x + QK);
    const float d = (mx - mn) / 15, id = d ? 1.0f / d : 0.0f;
    y[i].d = float_to_fp16(d);
    y[i].m = float_to_fp16(mn);
    for (int j = 0; j < QK / 2; ++j) {
      const uint8_t a = std::min(15, int(int8_t((x[j] - mn) * id + 0.5f)));
      const uint8_t b = std::min(15, int(int8_t((x[j + QK / 2] - mn) * id + 0.5f)));
      y[i].qs[j] = a | (b << 4);
    }
  }
}
void quantize_q5_0(const float* x, BlockQ5_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK) {
    const float max = max_abs_signed(x, QK);
    const float d = max / -16, id = d ? 1.0f / d : 0.0f;
    y[i].d = float_to_fp16(d);
    uint32_t qh = 0;
    for (int j = 0; j < QK / 2; ++j) {
      const uint8_t a = std::min(31, int(int8_t(x[j] * id + 16.5f)));
      const uint8_t b = std::min(31, int(int8_t(x[j + QK / 2] * id + 16.5f)));
      y[i].qs[j] = (a & 0xF) | ((b & 0xF) << 4);
      qh |= uint32_t((a & 0x10) >> 4) << j;
      qh |= uint32_t((b & 0x10) >> 4) << (j + QK / 2);
    }
    std::memcpy(y[i].qh, &qh, 4);
  }
}
void quantize_q5_1(const float* x, BlockQ5_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK) {
    const float mn = *std::min_element(x, x + QK), mx = *std::max_element(x, x + QK);
    const float d = (mx - mn) / 31, id = d ? 1.0f / d : 0.0f;
    y[i].d = float_to_fp16(d);
    y[i].m = float_to_fp16(mn);
    uint32_t qh = 0;
    for (int j = 0; j < QK / 2; ++j) {
      const uint8_t a = std::min(31, int((x[j] - mn) * id + 0.5f));
      const uint8_t b = std::min(31, int((x[j + QK / 2] - mn) * id + 0.5f));
      y[i].qs[j] = (a & 0xF) | ((b & 0xF) << 4);
      qh |= uint32_t((a & 0x10) >> 4) << j;
      qh |= uint32_t((b & 0x10) >> 4) << (j + QK / 2);
    }
    std::memcpy(y[i].qh, &qh, 4);
  }
}
void quantize_q8_0(const float* x, BlockQ8_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK) {
    float amax = 0;
    for (int j = 0; j < QK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127, id = d ? 1.0f / d : 0.0f;
    y[i].d = float_to_fp16(d);
    for (int j = 0; j < QK; ++j) y[i].qs[j] = int8_t(nearest_int(x[j] * id));
  }
}

void dequantize_q4_0(const BlockQ4_0* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK) {
    const float d = fp16_to_float(x[i].d);
    for (int j = 0; j < QK / 2; ++j) {
      y[j] = ((x[i].qs[j] & 0xF) - 8) * d;
      y[j + QK / 2] = ((x[i].qs[j] >> 4) - 8) * d;
    }
  }
}
void dequantize_q4_1(const BlockQ4_1* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK) {
    const float d = fp16_to_float(x[i].d), m = fp16_to_float(x[i].m);
    for (int j = 0; j < QK / 2; ++j) {
      y[j] = (x[i].qs[j] & 0xF) * d + m;
      y[j + QK / 2] = (x[i].qs[j] >> 4) * d + m;
    }
  }
}
void dequantize_q5_0(const BlockQ5_0* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK) {
    const float d = fp16_to_float(x[i].d);
    uint32_t qh;
    std::memcpy(&qh, x[i].qh, 4);
    for (int j = 0; j < QK / 2; ++j) {
      const int a = (x[i].qs[j] & 0xF) | (((qh >> j) & 1) << 4);
      const int b = (x[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      y[j] = (a - 16) * d;
      y[j + QK / 2] = (b - 16) * d;
    }
  }
}
void dequantize_q5_1(const BlockQ5_1* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK) {
    const float d = fp16_to_float(x[i].d), m = fp16_to_float(x[i].m);
    uint32_t qh;
    std::memcpy(&qh, x[i].qh, 4);
    for (int j = 0; j < QK / 2; ++j) {
      const int a = (x[i].qs[j] & 0xF) | (((qh >> j) & 1) << 4);
      const int b = (x[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      y[j] = a * d + m;
      y[j + QK / 2] = b * d + m;
    }
  }
}
void dequantize_q8_0(const BlockQ8_0* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK) {
    const float d = fp16_to_float(x[i].d);
    for (int j = 0; j < QK; ++j) y[j] = x[i].qs[j] * d;
  }
}

// ---- k-quants ----
// Per 32-element sub-block: an affine fit y = scale * q - min with q in [0, qmax].
// The sub-block scales and mins are then quantized to 6 bits against the super-block's d, dmin.
void fit_k_superblock(const float* x, int qmax, uint8_t* sc, uint8_t* mn, float* d, float* dmin) {
  float scales[8], mins[8], max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    const float* s = x + 32 * j;
    const float lo = std::min(0.0f, *std::min_element(s, s + 32));
    const float hi = *std::max_element(s, s + 32);
    scales[j] = (hi - lo) / qmax;
    mins[j] = -lo;
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  *d = max_scale / 63;
  *dmin = max_min / 63;
  for (int j = 0; j < 8; ++j) {
    sc[j] = uint8_t(std::min(63, *d ? nearest_int(scales[j] / *d) : 0));
    mn[j] = uint8_t(std::min(63, *dmin ? nearest_int(mins[j] / *dmin) : 0));
  }
}
void pack_k_scales(const uint8_t* sc, const uint8_t* mn, uint8_t* out) {
  for (int j = 0; j < 4; ++j) {
    out[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
    out[j + 4] = (mn[j] & 63) | ((mn[j + 4] >> 4) << 6);
    out[j + 8] = (sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4);
  }
}
// q for each element given the quantized scale and min (so rounding uses what is stored).
void k_levels(const float* x, const uint8_t* packed, float d, float dmin, int qmax, uint8_t* q) {
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, mn;
    k_scale_min(j, packed, &sc, &mn);
    const float scale = d * sc, min = dmin * mn;
    for (int l = 0; l < 32; ++l) {
      const int v = scale ? nearest_int((x[32 * j + l] + min) / scale) : 0;
      q[32 * j + l] = uint8_t(std::clamp(v, 0, qmax));
    }
  }
}

void quantize_q4_k(const float* x, BlockQ4_K* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    uint8_t sc[8], mn[8], q[QK_K];
    float d, dmin;
    fit_k_superblock(x, 15, sc, mn, &d, &dmin);
    y[i].d = float_to_fp16(d);
    y[i].dmin = float_to_fp16(dmin);
    pack_k_scales(sc, mn, y[i].scales);
    k_levels(x, y[i].scales, fp16_to_float(y[i].d), fp16_to_float(y[i].dmin), 15, q);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) y[i].qs[32 * c + l] = q[64 * c + l] | (q[64 * c + 32 + l] << 4);
  }
}
void quantize_q5_k(const float* x, BlockQ5_K* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    uint8_t sc[8], mn[8], q[QK_K];
    float d, dmin;
    fit_k_superblock(x, 31, sc, mn, &d, &dmin);
    y[i].d = float_to_fp16(d);
    y[i].dmin = float_to_fp16(dmin);
    pack_k_scales(sc, mn, y[i].scales);
    k_levels(x, y[i].scales, fp16_to_float(y[i].d), fp16_to_float(y[i].dmin), 31, q);
    std::memset(y[i].qh, 0, sizeof y[i].qh);
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < 32; ++l) {
        const uint8_t a = q[64 * c + l], b = q[64 * c + 32 + l];
        y[i].qs[32 * c + l] = (a & 0xF) | ((b & 0xF) << 4);
        y[i].qh[l] |= ((a >> 4) << (2 * c)) | ((b >> 4) << (2 * c + 1));
      }
    }
  }
}
void quantize_q6_k(const float* x, BlockQ6_K* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    float scales[16], max_scale = 0, amax_scale = 0;
    for (int g = 0; g < 16; ++g) {
      scales[g] = max_abs_signed(x + 16 * g, 16) / -32;
      if (std::fabs(scales[g]) > amax_scale) {
        amax_scale = std::fabs(scales[g]);
        max_scale = scales[g];
      }
    }
    const float iscale = max_scale ? -128.0f / max_scale : 0.0f;
    y[i].d = float_to_fp16(iscale ? 1.0f / iscale : 0.0f);
    const float d = fp16_to_float(y[i].d);
    int8_t q[QK_K];
    for (int g = 0; g < 16; ++g) {
      y[i].scales[g] = int8_t(std::min(127, nearest_int(iscale * scales[g])));
      const float s = d * y[i].scales[g];
      for (int l = 0; l < 16; ++l)
        q[16 * g + l] = int8_t(s ? std::clamp(nearest_int(x[16 * g + l] / s), -32, 31) : 0);
    }
    for (int n = 0; n < 2; ++n) {
      const int8_t* qq = q + 128 * n;
      uint8_t* ql = y[i].ql + 64 * n;
      uint8_t* qh = y[i].qh + 32 * n;
      for (int l = 0; l < 32; ++l) {
        const uint8_t q1 = qq[l] + 32, q2 = qq[l + 32] + 32, q3 = qq[l + 64] + 32,
                      q4 = qq[l + 96] + 32;
        ql[l] = (q1 & 0xF) | ((q3 & 0xF) << 4);
        ql[l + 32] = (q2 & 0xF) | ((q4 & 0xF) << 4);
        qh[l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
      }
    }
  }
}

void dequantize_q4_k(const BlockQ4_K* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_float(x[i].d), dmin = fp16_to_float(x[i].dmin);
    const uint8_t* q = x[i].qs;
    for (int c = 0; c < 4; ++c, q += 32) {
      uint8_t s0, m0, s1, m1;
      k_scale_min(2 * c, x[i].scales, &s0, &m0);
      k_scale_min(2 * c + 1, x[i].scales, &s1, &m1);
      for (int l = 0; l < 32; ++l) *y++ = d * s0 * (q[l] & 0xF) - dmin * m0;
      for (int l = 0; l < 32; ++l) *y++ = d * s1 * (q[l] >> 4) - dmin * m1;
    }
  }
}
void dequantize_q5_k(const BlockQ5_K* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_float(x[i].d), dmin = fp16_to_float(x[i].dmin);
    const uint8_t* q = x[i].qs;
    for (int c = 0; c < 4; ++c, q += 32) {
      uint8_t s0, m0, s1, m1;
      k_scale_min(2 * c, x[i].scales, &s0, &m0);
      k_scale_min(2 * c + 1, x[i].scales, &s1, &m1);
      for (int l = 0; l < 32; ++l)
        *y++ = d * s0 * ((q[l] & 0xF) + (((x[i].qh[l] >> (2 * c)) & 1) << 4)) - dmin * m0;
      for (int l = 0; l < 32; ++l)
        *y++ = d * s1 * ((q[l] >> 4) + (((x[i].qh[l] >> (2 * c + 1)) & 1) << 4)) - dmin * m1;
    }
  }
}
void dequantize_q6_k(const BlockQ6_K* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_float(x[i].d);
    for (int n = 0; n < 2; ++n) {
      const uint8_t* ql = x[i].ql + 64 * n;
      const uint8_t* qh = x[i].qh + 32 * n;
      const int8_t* sc = x[i].scales + 8 * n;
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * sc[is + 0] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
      y += 128;
    }
  }
}

}  // namespace

const TypeTraits& type_traits(GgmlType type) {
  static const TypeTraits kNone{};
  const uint32_t id = uint32_t(type);
  return id < kGgmlTypeLimit ? kTypes.t[id] : kNone;
}
bool type_known(uint32_t id) { return id < kGgmlTypeLimit && kTypes.t[id].name; }
const char* type_name(GgmlType type) {
  const char* n = type_traits(type).name;
  return n ? n : "unknown";
}
std::optional<GgmlType> type_from_name(const std::string& name) {
  std::string lower;
  for (char c : name) lower += char(std::tolower(static_cast<unsigned char>(c)));
  for (int i = 0; i < kGgmlTypeLimit; ++i) {
    const char* n = kTypes.t[i].name;
    if (!n) continue;
    std::string ln;
    for (const char* p = n; *p; ++p) ln += char(std::tolower(static_cast<unsigned char>(*p)));
    if (ln == lower) return GgmlType(i);
  }
  return std::nullopt;
}
size_t row_bytes(GgmlType type, int64_t n) {
  const TypeTraits& t = type_traits(type);
  return size_t(n / t.block_size) * t.block_bytes;
}

void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n) {
  const int64_t nb = n / type_traits(type).block_size;
  switch (type) {
    case GgmlType::F32: std::memcpy(dst, src, n * 4); return;
    case GgmlType::F16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_float(s[i]);
      return;
    }
    case GgmlType::BF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(s[i]);
      return;
    }
    case GgmlType::Q4_0: return dequantize_q4_0(static_cast<const BlockQ4_0*>(src), dst, nb);
    case GgmlType::Q4_1: return dequantize_q4_1(static_cast<const BlockQ4_1*>(src), dst, nb);
    case GgmlType::Q5_0: return dequantize_q5_0(static_cast<const BlockQ5_0*>(src), dst, nb);
    case GgmlType::Q5_1: return dequantize_q5_1(static_cast<const BlockQ5_1*>(src), dst, nb);
    case GgmlType::Q8_0: return dequantize_q8_0(static_cast<const BlockQ8_0*>(src), dst, nb);
    case GgmlType::Q4_K: return dequantize_q4_k(static_cast<const BlockQ4_K*>(src), dst, nb);
    case GgmlType::Q5_K: return dequantize_q5_k(static_cast<const BlockQ5_K*>(src), dst, nb);
    case GgmlType::Q6_K: return dequantize_q6_k(static_cast<const BlockQ6_K*>(src), dst, nb);
    default: fail("cannot dequantize tensor type ", type_name(type));
  }
}

void quantize_row(GgmlType type, const float* src, void* dst, int64_t n) {
  const int64_t nb = n / type_traits(type).block_size;
  switch (type) {
    case GgmlType::F32: std::memcpy(dst, src, n * 4); return;
    case GgmlType::F16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = float_to_fp16(src[i]);
      return;
    }
    case GgmlType::BF16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = float_to_bf16(src[i]);
      return;
    }
    case GgmlType::Q4_0: return quantize_q4_0(src, static_cast<BlockQ4_0*>(dst), nb);
    case GgmlType::Q4_1: return quantize_q4_1(src, static_cast<BlockQ4_1*>(dst), nb);
    case GgmlType::Q5_0: return quantize_q5_0(src, static_cast<BlockQ5_0*>(dst), nb);
    case GgmlType::Q5_1: return quantize_q5_1(src, static_cast<BlockQ5_1*>(dst), nb);
    case GgmlType::Q8_0: return quantize_q8_0(src, static_cast<BlockQ8_0*>(dst), nb);
    case GgmlType::Q4_K: return quantize_q4_k(src, static_cast<BlockQ4_K*>(dst), nb);
    case GgmlType::Q5_K: return quantize_q5_k(src, static_cast<BlockQ5_K*>(dst), nb);
    case GgmlType::Q6_K: return quantize_q6_k(src, static_cast<BlockQ6_K*>(dst), nb);
    default: fail("cannot quantize to tensor type ", type_name(type));
  }
}

}  // namespace muse
