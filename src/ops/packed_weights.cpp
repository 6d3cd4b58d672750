#include "ops/packed_weights.h"

#include <cstring>

#include "ops/row_decode.h"
#include "util/error.h"
#include "util/fp16.h"

namespace muse {

namespace {
int values_per_tile(GgmlType type) {
  if (is_float_type(type)) return 1;
  return type == GgmlType::Q4_0 || type == GgmlType::Q5_0 || type == GgmlType::Q8_0 ? QK : QK_K;
}

// Float rows: each value copied as it is (F32, F16 or BF16 bits) to [k][row].
void pack_float_groups(GgmlType type, const uint8_t* src, int64_t K, int64_t g0, int64_t g1,
                       uint8_t* dst) {
  const size_t rb = row_bytes(type, K), size = rb / size_t(K);
  for (int64_t g = g0; g < g1; ++g) {
    uint8_t* group = dst + size_t(g) * size_t(K) * kPackRows * size;
    for (int r = 0; r < kPackRows; ++r) {
      const uint8_t* row = src + size_t(g * kPackRows + r) * rb;
      for (int64_t k = 0; k < K; ++k)
        std::memcpy(group + (size_t(k) * kPackRows + r) * size, row + size_t(k) * size, size);
    }
  }
}

// Blocks of 32: one tile per block.
void pack_block32_groups(GgmlType type, const uint8_t* src, int K, int64_t g0, int64_t g1,
                         uint8_t* dst) {
  const size_t rb = row_bytes(type, K), tile_bytes = packed_tile_bytes(type);
  const int nb = K / QK;
  const bool nibbles = type != GgmlType::Q8_0, fifth_bits = type == GgmlType::Q5_0;
  DecodedRow row;
  for (int64_t g = g0; g < g1; ++g) {
    uint8_t* group = dst + size_t(g) * nb * tile_bytes;
    std::memset(group, 0, size_t(nb) * tile_bytes);
    for (int r = 0; r < kPackRows; ++r) {
      decode_row(type, src + size_t(g * kPackRows + r) * rb, K, row);
      for (int b = 0; b < nb; ++b) {
        uint8_t* tile = group + size_t(b) * tile_bytes;
        const uint8_t* u = row.u.data() + size_t(b) * QK;
        for (int e = 0; e < (nibbles ? 4 : 8); ++e)
          for (int i = 0; i < 4; ++i)
            tile[64 * e + 4 * r + i] =
                nibbles ? uint8_t((u[4 * e + i] & 0xF) | (u[16 + 4 * e + i] & 0xF) << 4)
                        : u[4 * e + i];
        if (fifth_bits)
          for (int e = 0; e < 8; ++e)
            for (int i = 0; i < 4; ++i)
              if (u[4 * e + i] & 0x10) {
                uint64_t mask;
                std::memcpy(&mask, tile + 256 + 8 * e, 8);
                mask |= uint64_t(1) << (4 * r + i);
                std::memcpy(tile + 256 + 8 * e, &mask, 8);
              }
        const uint16_t d = float_to_fp16(row.d[size_t(b)]);  // exact: it came from F16
        std::memcpy(tile + tile_bytes - 32 + 2 * r, &d, 2);
      }
    }
  }
}

// Byte of (row r, value b of a group of 4) within a 64-byte vector.
constexpr int lane(int r, int b) { return 4 * r + b; }
}  // namespace

bool packable(GgmlType type, int64_t cols) {
  switch (type) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
      return cols > 0;
    case GgmlType::Q4_K:
    case GgmlType::Q6_K:
      return cols > 0 && cols % QK_K == 0;
    case GgmlType::Q4_0:
    case GgmlType::Q5_0:
    case GgmlType::Q8_0:
      return cols > 0 && cols % QK == 0;
    default:
      return false;
  }
}

size_t packed_tile_bytes(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
      return kPackRows * 4;
    case GgmlType::F16:
    case GgmlType::BF16:
      return kPackRows * 2;
    case GgmlType::Q4_K:
      return kPackedQ4KTile;
    case GgmlType::Q6_K:
      return kPackedQ6KTile;
    case GgmlType::Q4_0:
      return kPackedQ4_0Tile;
    case GgmlType::Q5_0:
      return kPackedQ5_0Tile;
    case GgmlType::Q8_0:
      return kPackedQ8_0Tile;
    default:
      fail("no packed layout for ", type_name(type));
  }
}

size_t packed_bytes(GgmlType type, int64_t rows, int64_t cols) {
  return size_t(rows / kPackRows) * size_t(cols / values_per_tile(type)) * packed_tile_bytes(type);
}

void pack_groups(GgmlType type, const uint8_t* src, int64_t cols, int64_t g0, int64_t g1,
                 uint8_t* dst) {
  if (!packable(type, cols))
    fail("no packed layout for ", type_name(type), " rows of ", cols, " values");
  if (is_float_type(type)) return pack_float_groups(type, src, cols, g0, g1, dst);
  if (values_per_tile(type) == QK) return pack_block32_groups(type, src, int(cols), g0, g1, dst);
  const int K = int(cols), nsb = K / QK_K;
  const size_t rb = row_bytes(type, cols), tile_bytes = packed_tile_bytes(type);
  const bool q6 = type == GgmlType::Q6_K;
  DecodedRow row;
  for (int64_t g = g0; g < g1; ++g) {
    uint8_t* group = dst + size_t(g) * nsb * tile_bytes;
    std::memset(group, 0, nsb * tile_bytes);
    for (int r = 0; r < kPackRows; ++r) {
      const uint8_t* src_row = src + size_t(g * kPackRows + r) * rb;
      decode_row(type, src_row, K, row);
      for (int i = 0; i < nsb; ++i) {
        uint8_t* tile = group + size_t(i) * tile_bytes;
        const uint8_t* u = row.u.data() + size_t(i) * QK_K;
        for (int c = 0; c < 4; ++c)
          for (int e = 0; e < 8; ++e)
            for (int b = 0; b < 4; ++b) {
              const uint8_t a = u[64 * c + 4 * e + b], h = u[64 * c + 32 + 4 * e + b];
              tile[64 * (8 * c + e) + lane(r, b)] = uint8_t((a & 0xF) | (h & 0xF) << 4);
              if (q6) {
                const int q = e / 4, k = e % 4;
                tile[2048 + 64 * (4 * c + 2 * q + 0) + lane(r, b)] |= uint8_t((a >> 4) << (2 * k));
                tile[2048 + 64 * (4 * c + 2 * q + 1) + lane(r, b)] |= uint8_t((h >> 4) << (2 * k));
              }
            }
        if (q6) {
          const BlockQ6_K& blk = reinterpret_cast<const BlockQ6_K*>(src_row)[i];
          for (int j = 0; j < 16; ++j) tile[3072 + 16 * j + r] = uint8_t(blk.scales[j]);
          std::memcpy(tile + 3328 + 2 * r, &blk.d, 2);
        } else {
          const BlockQ4_K& blk = reinterpret_cast<const BlockQ4_K*>(src_row)[i];
          for (int j = 0; j < 8; ++j) {
            tile[2048 + 16 * j + r] = uint8_t(row.sc[size_t(8 * i + j)]);
            tile[2176 + 16 * j + r] = uint8_t(row.mn[size_t(8 * i + j)]);
          }
          std::memcpy(tile + 2304 + 2 * r, &blk.d, 2);
          std::memcpy(tile + 2336 + 2 * r, &blk.dmin, 2);
        }
      }
    }
  }
}

}  // namespace muse
