#include "ops/row_decode.h"

#include <cstring>

#include "util/error.h"
#include "util/fp16.h"

namespace muse {

int zero_point(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_0: return 8;
    case GgmlType::Q5_0: return 16;
    case GgmlType::Q8_0: return 128;
    case GgmlType::Q6_K: return 32;
    default: return 0;
  }
}

namespace {

void nibbles(const uint8_t* qs, uint8_t* u) {  // 16 bytes -> 32 values, low nibbles first
  for (int j = 0; j < 16; ++j) {
    u[j] = qs[j] & 0xF;
    u[j + 16] = qs[j] >> 4;
  }
}
void fifth_bits(const uint8_t* qh, uint8_t* u) {
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  for (int j = 0; j < 32; ++j) u[j] |= ((bits >> j) & 1) << 4;
}

}  // namespace

void decode_row(GgmlType type, const uint8_t* row, int K, DecodedRow& out) {
  out.u.resize(K);
  uint8_t* u = out.u.data();
  const int nb = K / QK, nsb = K / QK_K;
  switch (type) {
    case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q8_0: case GgmlType::Q4_1:
    case GgmlType::Q5_1:
      out.d.resize(nb);
      out.m.resize(nb);
      break;
    default:
      out.d.resize(nsb);
      out.m.resize(nsb);
      out.sc.resize(type == GgmlType::Q6_K ? nsb * 16 : nsb * 8);
      out.mn.resize(type == GgmlType::Q6_K ? 0 : nsb * 8);
  }
  switch (type) {
    case GgmlType::Q4_0:
      for (int b = 0; b < nb; ++b) {
        const BlockQ4_0& x = reinterpret_cast<const BlockQ4_0*>(row)[b];
        nibbles(x.qs, u + QK * b);
        out.d[b] = fp16_to_float(x.d);
      }
      return;
    case GgmlType::Q4_1:
      for (int b = 0; b < nb; ++b) {
        const BlockQ4_1& x = reinterpret_cast<const BlockQ4_1*>(row)[b];
        nibbles(x.qs, u + QK * b);
        out.d[b] = fp16_to_float(x.d);
        out.m[b] = fp16_to_float(x.m);
      }
      return;
    case GgmlType::Q5_0:
      for (int b = 0; b < nb; ++b) {
        const BlockQ5_0& x = reinterpret_cast<const BlockQ5_0*>(row)[b];
        nibbles(x.qs, u + QK * b);
        fifth_bits(x.qh, u + QK * b);
        out.d[b] = fp16_to_float(x.d);
      }
      return;
    case GgmlType::Q5_1:
      for (int b = 0; b < nb; ++b) {
        const BlockQ5_1& x = reinterpret_cast<const BlockQ5_1*>(row)[b];
        nibbles(x.qs, u + QK * b);
        fifth_bits(x.qh, u + QK * b);
        out.d[b] = fp16_to_float(x.d);
        out.m[b] = fp16_to_float(x.m);
      }
      return;
    case GgmlType::Q8_0:
      for (int b = 0; b < nb; ++b) {
        const BlockQ8_0& x = reinterpret_cast<const BlockQ8_0*>(row)[b];
        for (int j = 0; j < QK; ++j) u[QK * b + j] = uint8_t(x.qs[j]) ^ 0x80;
        out.d[b] = fp16_to_float(x.d);
      }
      return;
    case GgmlType::Q4_K: case GgmlType::Q5_K:
      for (int i = 0; i < nsb; ++i) {
        const uint8_t *scales, *qs, *qh = nullptr;
        uint16_t d, dmin;
        if (type == GgmlType::Q5_K) {
          const BlockQ5_K& x = reinterpret_cast<const BlockQ5_K*>(row)[i];
          scales = x.scales, qs = x.qs, qh = x.qh, d = x.d, dmin = x.dmin;
        } else {
          const BlockQ4_K& x = reinterpret_cast<const BlockQ4_K*>(row)[i];
          scales = x.scales, qs = x.qs, d = x.d, dmin = x.dmin;
        }
        out.d[i] = fp16_to_float(d);
        out.m[i] = fp16_to_float(dmin);
        for (int j = 0; j < 8; ++j) {
          uint8_t s, m;
          k_scale_min(j, scales, &s, &m);
          out.sc[8 * i + j] = s;
          out.mn[8 * i + j] = m;
        }
        uint8_t* v = u + QK_K * i;
        for (int c = 0; c < 4; ++c)
          for (int l = 0; l < 32; ++l) {
            v[64 * c + l] = qs[32 * c + l] & 0xF;
            v[64 * c + 32 + l] = qs[32 * c + l] >> 4;
            if (qh) {
              v[64 * c + l] |= ((qh[l] >> (2 * c)) & 1) << 4;
              v[64 * c + 32 + l] |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
            }
          }
      }
      return;
    case GgmlType::Q6_K:
      for (int i = 0; i < nsb; ++i) {
        const BlockQ6_K& x = reinterpret_cast<const BlockQ6_K*>(row)[i];
        out.d[i] = fp16_to_float(x.d);
        for (int g = 0; g < 16; ++g) out.sc[16 * i + g] = x.scales[g];
        uint8_t* v = u + QK_K * i;
        for (int n = 0; n < 2; ++n) {
          const uint8_t* ql = x.ql + 64 * n;
          const uint8_t* qh = x.qh + 32 * n;
          for (int l = 0; l < 32; ++l) {
            v[128 * n + l] = (ql[l] & 0xF) | ((qh[l] & 3) << 4);
            v[128 * n + 32 + l] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
            v[128 * n + 64 + l] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            v[128 * n + 96 + l] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
          }
        }
      }
      return;
    default: fail("decode_row: ", type_name(type), " is not a quantized type");
  }
}

}  // namespace muse
