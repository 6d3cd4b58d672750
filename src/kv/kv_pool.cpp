#include "kv/kv_pool.h"

#include <algorithm>
#include <cstring>

#include "ops/matmul.h"
#include "quant/types.h"
#include "util/error.h"
#include "util/fp16.h"

namespace muse {

namespace {

GgmlType storage_type(KvType t) {
  switch (t) {
    case KvType::kF16: return GgmlType::F16;
    case KvType::kF32: return GgmlType::F32;
    case KvType::kQ8_0: return GgmlType::Q8_0;
  }
  return GgmlType::F16;
}

}  // namespace

const char* kv_type_name(KvType t) {
  switch (t) {
    case KvType::kF16: return "f16";
    case KvType::kF32: return "f32";
    case KvType::kQ8_0: return "q8_0";
  }
  return "?";
}

KvType kv_type_from_name(const std::string& name) {
  for (KvType t : {KvType::kF16, KvType::kF32, KvType::kQ8_0})
    if (name == kv_type_name(t)) return t;
  fail("unknown KV cache type \"", name, "\" (f16, f32 or q8_0)");
}

size_t KvPool::block_bytes_for(const KvPoolConfig& c) {
  const GgmlType t = storage_type(c.type);
  const int heads = std::max(1, c.n_heads);
  return (row_bytes(t, c.kv_dim / heads) + row_bytes(t, c.v_dim / heads)) * size_t(heads) *
         size_t(c.block_tokens) * size_t(c.n_layer);
}

KvPool::KvPool(const KvPoolConfig& config) : config_(config) {
  if (config.n_layer <= 0 || config.kv_dim <= 0 || config.v_dim <= 0)
    fail("KV pool: layers and row sizes must be positive");
  if (config.block_tokens <= 0 || config.block_tokens > 4096)
    fail("KV pool: block size must be between 1 and 4096 tokens");
  if (config.n_heads <= 0 || config.kv_dim % config.n_heads || config.v_dim % config.n_heads)
    fail("KV pool: rows of ", config.kv_dim, " and ", config.v_dim, " values do not split into ",
         config.n_heads, " heads");
  const int k_head = config.kv_dim / config.n_heads, v_head = config.v_dim / config.n_heads;
  if (config.type == KvType::kQ8_0 && (k_head % 32 || v_head % 32))
    fail("KV cache type q8_0 needs heads that are multiples of 32 values (this model has ", k_head,
         " and ", v_head, ")");
  const GgmlType t = storage_type(config.type);
  k_head_bytes_ = row_bytes(t, k_head);
  v_head_bytes_ = row_bytes(t, v_head);
  k_head_block_bytes_ = k_head_bytes_ * size_t(config.block_tokens);
  v_head_block_bytes_ = v_head_bytes_ * size_t(config.block_tokens);
  block_bytes_ = block_bytes_for(config);
  const size_t n = config.budget_bytes / block_bytes_;
  if (n == 0)
    fail("KV budget of ", config.budget_bytes, " bytes is smaller than one block (", block_bytes_, " bytes)");
  if (n > size_t(1) << 30) fail("KV budget too large");
  storage_ = LargeBuffer(n * block_bytes_);
  values_offset_ = n * k_head_block_bytes_ * size_t(config.n_heads) * size_t(config.n_layer);
  refs_.assign(n, 0);
  free_.reserve(n);
  for (size_t b = n; b-- > 0;) free_.push_back(int32_t(b));  // lowest ids first
}

int32_t KvPool::allocate() {
  if (free_.empty()) return -1;
  const int32_t b = free_.back();
  free_.pop_back();
  refs_[size_t(b)] = 1;
  return b;
}

void KvPool::retain(int32_t block) {
  if (block < 0 || block >= n_blocks() || refs_[size_t(block)] <= 0) fail("KV pool: retain of a free block");
  ++refs_[size_t(block)];
}

void KvPool::release(int32_t block) {
  if (block < 0 || block >= n_blocks() || refs_[size_t(block)] <= 0) fail("KV pool: release of a free block");
  if (--refs_[size_t(block)] == 0) free_.push_back(block);
}

void KvPool::copy_block(int32_t from, int32_t to) {
  for (int l = 0; l < config_.n_layer; ++l)
    for (int h = 0; h < config_.n_heads; ++h) {
      std::memcpy(key_rows(to, l, h), key_rows(from, l, h), k_head_block_bytes_);
      std::memcpy(value_rows(to, l, h), value_rows(from, l, h), v_head_block_bytes_);
    }
}

void KvPool::write(int32_t block, int slot, int layer, const float* k, const float* v) {
  const GgmlType t = storage_type(config_.type);
  const int k_head = config_.kv_dim / config_.n_heads, v_head = config_.v_dim / config_.n_heads;
  const int bt = config_.block_tokens;
  const KernelSet& kern = kernels();
  thread_local std::vector<uint16_t> key16;
  key16.resize(size_t(k_head));
  for (int h = 0; h < config_.n_heads; ++h) {
    const float* key = k + size_t(h) * k_head;
    const float* value = v + size_t(h) * v_head;
    uint8_t* keys = key_rows(block, layer, h);
    uint8_t* values = value_rows(block, layer, h) + size_t(slot) * v_head_bytes_;
    if (config_.type == KvType::kF16) {
      kern.to_f16(key, key16.data(), k_head);
      for (int i = 0; i < k_head; ++i)
        reinterpret_cast<uint16_t*>(keys)[size_t(i) * bt + slot] = key16[size_t(i)];
      kern.to_f16(value, reinterpret_cast<uint16_t*>(values), v_head);
    } else if (config_.type == KvType::kF32) {
      for (int i = 0; i < k_head; ++i)
        reinterpret_cast<float*>(keys)[size_t(i) * bt + slot] = key[i];
      std::memcpy(values, value, sizeof(float) * size_t(v_head));
    } else {
      quantize_row(t, key, keys + size_t(slot) * k_head_bytes_, k_head);
      quantize_row(t, value, values, v_head);
    }
  }
}

void KvPool::read_key(int32_t block, int slot, int layer, float* out) const {
  const int k_head = config_.kv_dim / config_.n_heads;
  const int bt = config_.block_tokens;
  for (int h = 0; h < config_.n_heads; ++h) {
    const uint8_t* keys = key_rows(block, layer, h);
    float* key = out + size_t(h) * k_head;
    if (config_.type == KvType::kF16)
      for (int i = 0; i < k_head; ++i)
        key[i] = fp16_to_float(reinterpret_cast<const uint16_t*>(keys)[size_t(i) * bt + slot]);
    else if (config_.type == KvType::kF32)
      for (int i = 0; i < k_head; ++i)
        key[i] = reinterpret_cast<const float*>(keys)[size_t(i) * bt + slot];
    else
      dequantize_row(GgmlType::Q8_0, keys + size_t(slot) * k_head_bytes_, key, k_head);
  }
}

void KvPool::read_value(int32_t block, int slot, int layer, float* out) const {
  const int v_head = config_.v_dim / config_.n_heads;
  for (int h = 0; h < config_.n_heads; ++h)
    dequantize_row(storage_type(config_.type), values(block, layer, h) + size_t(slot) * v_head_bytes_, out + size_t(h) * v_head, v_head);
}

bool KvSequence::reserve(KvPool& pool, int n) {
  if (n <= 0) return true;
  const int bt = pool.block_tokens();
  const size_t first = size_t(length_ / bt);               // first block written
  const size_t last = size_t((length_ + n - 1) / bt);      // last block written
  // Count what is needed before changing anything, so failure leaves the sequence intact.
  int needed = 0;
  for (size_t b = first; b <= last; ++b)
    if (b >= blocks_.size() || pool.ref_count(blocks_[b]) > 1) ++needed;
  if (needed > pool.n_free()) return false;
  for (size_t b = first; b <= last; ++b) {
    if (b >= blocks_.size()) {
      blocks_.push_back(pool.allocate());
    } else if (pool.ref_count(blocks_[b]) > 1) {
      // Shared with another sequence or the prefix cache: write into a private copy.
      const int32_t copy = pool.allocate();
      pool.copy_block(blocks_[b], copy);
      pool.release(blocks_[b]);
      blocks_[b] = copy;
    }
  }
  return true;
}

KvSequence KvSequence::fork(KvPool& pool) const {
  KvSequence s;
  s.length_ = length_;
  const size_t used = size_t((length_ + pool.block_tokens() - 1) / pool.block_tokens());
  s.blocks_.assign(blocks_.begin(), blocks_.begin() + long(std::min(used, blocks_.size())));
  for (int32_t b : s.blocks_) pool.retain(b);
  return s;
}

void KvSequence::adopt(std::vector<int32_t> blocks, int n) {
  if (!blocks_.empty() || length_) fail("KvSequence::adopt on a sequence that holds blocks");
  blocks_ = std::move(blocks);
  length_ = n;
}

void KvSequence::truncate(KvPool& pool, int n) {
  if (n < 0 || n > length_) fail("cannot truncate a sequence of ", length_, " tokens to ", n);
  const size_t keep = size_t((n + pool.block_tokens() - 1) / pool.block_tokens());
  while (blocks_.size() > keep) {
    pool.release(blocks_.back());
    blocks_.pop_back();
  }
  length_ = n;
}

}  // namespace muse
