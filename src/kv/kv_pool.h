// The paged KV cache: keys and values of every layer stored in fixed-size blocks of token
// slots, shared between sequences by reference count. A sequence is a table of blocks
// (KvSequence); forking one shares all its blocks, and the first write into a shared block
// copies it (copy-on-write at block granularity), so a common prefix is stored once.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "util/large_buffer.h"

namespace muse {

enum class KvType { kF16, kF32, kQ8_0 };
const char* kv_type_name(KvType t);
KvType kv_type_from_name(const std::string& name);  // "f16", "f32", "q8_0"; throws otherwise

struct KvPoolConfig {
  int n_layer = 0;
  int kv_dim = 0;  // key values per token and layer (kv heads x head dim)
  int v_dim = 0;
  // Rows split into this many heads; a block stores each head's rows together (keys of head 0
  // for every slot, then head 1, ...), so attention over one head reads contiguous memory.
  int n_heads = 1;
  int block_tokens = 16;
  KvType type = KvType::kF16;
  size_t budget_bytes = size_t(256) << 20;  // the pool holds as many blocks as fit
};

class KvPool {
 public:
  explicit KvPool(const KvPoolConfig& config);
  // What one block of this configuration takes (every layer's keys and values).
  static size_t block_bytes_for(const KvPoolConfig& config);

  const KvPoolConfig& config() const { return config_; }
  int block_tokens() const { return config_.block_tokens; }
  int n_blocks() const { return int(refs_.size()); }
  int n_free() const { return int(free_.size()); }
  size_t block_bytes() const { return block_bytes_; }
  size_t bytes_in_use() const { return size_t(n_blocks() - n_free()) * block_bytes_; }

  // A fresh block with one reference, or -1 when every block is in use.
  int32_t allocate();
  void retain(int32_t block);
  void release(int32_t block);  // frees the block when the last reference goes
  int ref_count(int32_t block) const { return refs_.at(size_t(block)); }
  void copy_block(int32_t from, int32_t to);  // every layer's slots

  // Stores one token's key and value rows (floats, converted to the pool's type).
  void write(int32_t block, int slot, int layer, const float* k, const float* v);
  // One head's part of a block. Values: block_tokens rows of v_head_bytes() each. Keys: F16
  // and F32 stored by dimension (value i of every slot together, slot s of value i at
  // i * block_tokens + s), so attention scores a slot per vector lane; Q8_0 keys as rows of
  // k_head_bytes(), since its blocks of 32 run along a row.
  const uint8_t* keys(int32_t block, int layer, int head) const { return key_rows(block, layer, head); }
  const uint8_t* values(int32_t block, int layer, int head) const { return value_rows(block, layer, head); }
  size_t k_head_bytes() const { return k_head_bytes_; }
  size_t v_head_bytes() const { return v_head_bytes_; }
  // One row back as floats (tests, and types without a fused kernel).
  void read_key(int32_t block, int slot, int layer, float* out) const;
  void read_value(int32_t block, int slot, int layer, float* out) const;

 private:
  // Storage runs keys then values, each ordered by layer, head, then block: one head's blocks
  // in a layer are neighbours, so a sequence's blocks (allocated in order) stream from memory.
  uint8_t* key_rows(int32_t block, int layer, int head) const {
    return data() + (size_t(layer * config_.n_heads + head) * size_t(n_blocks()) + size_t(block)) * k_head_block_bytes_;
  }
  uint8_t* value_rows(int32_t block, int layer, int head) const {
    return data() + values_offset_ +
           (size_t(layer * config_.n_heads + head) * size_t(n_blocks()) + size_t(block)) * v_head_block_bytes_;
  }
  uint8_t* data() const { return storage_.data(); }

  KvPoolConfig config_;
  size_t k_head_bytes_ = 0, v_head_bytes_ = 0;              // one head's row
  size_t k_head_block_bytes_ = 0, v_head_block_bytes_ = 0;  // one head's rows in a block
  size_t values_offset_ = 0, block_bytes_ = 0;
  LargeBuffer storage_;
  std::vector<int> refs_;
  std::vector<int32_t> free_;
};

// One sequence's view of the pool: its length in tokens and the blocks holding them.
class KvSequence {
 public:
  KvSequence() = default;
  int length() const { return length_; }
  const std::vector<int32_t>& blocks() const { return blocks_; }
  // Block and slot of token position pos.
  int32_t block_of(int pos, const KvPool& pool) const { return blocks_[size_t(pos / pool.block_tokens())]; }

  // Makes room for n more tokens: new blocks as needed, and a private copy of a shared last
  // block that the new tokens would write into. False (and no change) when the pool runs out.
  bool reserve(KvPool& pool, int n);
  // Records n tokens written into the reserved slots.
  void advance(int n) { length_ += n; }
  // A second sequence sharing every block (no copying).
  KvSequence fork(KvPool& pool) const;
  // Starts from cached blocks (already retained for this sequence) covering n tokens.
  void adopt(std::vector<int32_t> blocks, int n);
  // Keeps the first n tokens, releasing blocks no longer needed.
  void truncate(KvPool& pool, int n);
  void release(KvPool& pool) { truncate(pool, 0); }

 private:
  int length_ = 0;
  std::vector<int32_t> blocks_;  // may extend past length_ after reserve()
};

}  // namespace muse
