// Weight rows repacked at load for the row-group kernels: 16 rows (one AVX-512 vector of int32
// lanes) interleaved so that one 64-byte load holds 4 consecutive values of each row, still at
// 4 or 6 bits per value. A decode step then advances 16 dot products per vpdpbusd with no
// horizontal sums and no per-step unpacking into bytes, and reads about as many bytes as the
// GGUF layout (Q4_K: 2368 bytes per 16 x 256 values against 2304; Q6_K: the same 3360).
// AVX2 reads each 64-byte vector as two halves of 8 rows (32-byte vectors, vpmaddubsw).
//
// Layout of one tile (16 rows x one 256-value super-block); tiles go super-block after
// super-block within a group, groups one after another. Values are the unsigned u of the
// canonical arithmetic (matmul.h); a 64-value chunk c splits into halves A (values 64c + 0..31)
// and B (64c + 32..63), and vector e of a half holds its values 4e..4e+3 of every row (value
// 4e + b of row r in byte 4r + b).
//   Q4_K (sub-blocks of 32: A is sub-block 2c, B is 2c + 1)
//     [0, 2048)     nibbles: vector 8c + e holds A in the low and B in the high nibble
//     [2048, 2176)  scales, u8 [sub-block][row]
//     [2176, 2304)  mins, u8 [sub-block][row]
//     [2304, 2368)  d then dmin, f16 [row]
//   Q6_K (groups of 16: A holds groups 4c, 4c + 1 and B groups 4c + 2, 4c + 3)
//     [0, 2048)     low nibbles as Q4_K's
//     [2048, 3072)  high two bits: vector 4c + 2q + h (q: e in 4q..4q+3, h: half A or B)
//                   holds those of e = 4q + k at bits 2k, 2k + 1
//     [3072, 3328)  scales, i8 [group][row]
//     [3328, 3360)  d, f16 [row]
// Blocks of 32 (one tile per block; the zero point comes off through the activation sums):
//   Q4_0  [0, 256) nibbles: vector e holds values 4e.. in the low and 16 + 4e.. in the high
//         nibble; [256, 288) d, f16 [row]
//   Q5_0  as Q4_0's, then [256, 320) the fifth bits as eight 64-bit byte masks (mask e: bit
//         4r + b is the fifth bit of value 4e + b of row r); [320, 352) d
//   Q8_0  [0, 512) bytes q + 128: vector e holds values 4e..4e+3; [512, 544) d, f16 [row]
// (In every block-32 tile, d is the last 32 bytes.)
// Float weights (F32, F16, BF16): a tile is one value of each of the 16 rows, unchanged, so a
// group is [K][16 rows]; one vector load (AVX2: half of one) holds a value of every row.
#pragma once
#include <cstddef>
#include <cstdint>

#include "quant/types.h"

namespace muse {

constexpr int kPackRows = 16;
constexpr size_t kPackedQ4KTile = 2368, kPackedQ6KTile = 3360;  // bytes per tile
constexpr size_t kPackedQ4_0Tile = 288, kPackedQ5_0Tile = 352, kPackedQ8_0Tile = 544;

// Whether rows of this type and length have a packed layout (the first rows / 16 groups are
// packed; any rows after the last whole group stay in the GGUF layout).
bool packable(GgmlType type, int64_t cols);
size_t packed_tile_bytes(GgmlType type);
size_t packed_bytes(GgmlType type, int64_t rows, int64_t cols);

// Packs groups [g0, g1) of rows from `src` (GGUF rows of row_bytes each) into `dst`, the
// packed matrix's start.
void pack_groups(GgmlType type, const uint8_t* src, int64_t cols, int64_t g0, int64_t g1,
                 uint8_t* dst);

}  // namespace muse
