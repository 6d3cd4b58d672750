// A radix tree over token sequences at block granularity, remembering which KV blocks hold the
// keys and values of each cached prefix, so a new request that starts the same way reuses them
// instead of computing them again (SGLang's RadixAttention idea). The tree holds one reference
// to every block it lists; blocks that only the tree references are evicted least recently used
// first, from the leaves up, when the pool needs room.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "kv/kv_pool.h"

namespace muse {

class PrefixCache {
 public:
  explicit PrefixCache(KvPool& pool);
  ~PrefixCache();
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  // The blocks of the longest cached prefix of tokens, in whole blocks, each retained once for
  // the caller (who owns those references, e.g. through KvSequence::adopt).
  std::vector<int32_t> match(const std::vector<int32_t>& tokens);
  // Remembers the full blocks of a sequence whose first tokens.size() keys and values are in
  // blocks. Blocks already cached for the same tokens are kept; the tree retains new ones.
  void insert(const std::vector<int32_t>& tokens, const std::vector<int32_t>& blocks);
  // Frees up to n blocks that only the tree references, least recently used first; returns
  // how many it freed.
  int evict(int n);

  int cached_blocks() const { return n_nodes_; }
  // Blocks that eviction could free now.
  int evictable_blocks() const;

 private:
  struct Node {
    std::vector<int32_t> tokens;  // this block's tokens (block_tokens of them)
    int32_t block = -1;
    uint64_t last_used = 0;
    Node* parent = nullptr;
    std::map<std::vector<int32_t>, std::unique_ptr<Node>> children;
  };

  KvPool& pool_;
  Node root_;
  int n_nodes_ = 0;
  uint64_t clock_ = 0;
};

}  // namespace muse
