#include "kv/prefix_cache.h"

#include <algorithm>
#include <functional>

namespace muse {

PrefixCache::PrefixCache(KvPool& pool) : pool_(pool) {}

PrefixCache::~PrefixCache() {
  std::function<void(Node&)> release_all = [&](Node& n) {
    for (auto& [key, child] : n.children) {
      release_all(*child);
      pool_.release(child->block);
    }
  };
  release_all(root_);
}

std::vector<int32_t> PrefixCache::match(const std::vector<int32_t>& tokens) {
  const size_t bt = size_t(pool_.block_tokens());
  std::vector<int32_t> blocks;
  Node* node = &root_;
  const uint64_t now = ++clock_;
  std::vector<int32_t> key(bt);
  for (size_t at = 0; at + bt <= tokens.size(); at += bt) {
    key.assign(tokens.begin() + long(at), tokens.begin() + long(at + bt));
    const auto it = node->children.find(key);
    if (it == node->children.end()) break;
    node = it->second.get();
    node->last_used = now;
    pool_.retain(node->block);
    blocks.push_back(node->block);
  }
  return blocks;
}

void PrefixCache::insert(const std::vector<int32_t>& tokens, const std::vector<int32_t>& blocks) {
  const size_t bt = size_t(pool_.block_tokens());
  Node* node = &root_;
  const uint64_t now = ++clock_;
  for (size_t i = 0; (i + 1) * bt <= tokens.size() && i < blocks.size(); ++i) {
    std::vector<int32_t> key(tokens.begin() + long(i * bt), tokens.begin() + long((i + 1) * bt));
    auto it = node->children.find(key);
    if (it == node->children.end()) {
      auto child = std::make_unique<Node>();
      child->tokens = key;
      child->block = blocks[i];
      child->parent = node;
      pool_.retain(blocks[i]);
      ++n_nodes_;
      it = node->children.emplace(std::move(key), std::move(child)).first;
    }
    node = it->second.get();
    node->last_used = now;
  }
}

int PrefixCache::evictable_blocks() const {
  // A block can go once nothing below it is in use and only the tree holds it.
  std::function<int(const Node&, bool*)> count = [&](const Node& n, bool* all_free) {
    int total = 0;
    bool free_below = true;
    for (const auto& [key, child] : n.children) {
      bool child_free = true;
      total += count(*child, &child_free);
      free_below = free_below && child_free;
    }
    const bool mine = &n != &root_ && free_below && pool_.ref_count(n.block) == 1;
    *all_free = mine;
    return total + (mine ? 1 : 0);
  };
  bool unused;
  return count(root_, &unused);
}

int PrefixCache::evict(int n) {
  int freed = 0;
  while (freed < n) {
    // Leaves that only the tree holds, oldest first. Removing one can turn its parent into a
    // leaf, so collect again until enough are freed or nothing more can go.
    std::vector<Node*> leaves;
    std::function<void(Node&)> collect = [&](Node& node) {
      for (auto& [key, child] : node.children) collect(*child);
      if (&node != &root_ && node.children.empty() && pool_.ref_count(node.block) == 1)
        leaves.push_back(&node);
    };
    collect(root_);
    if (leaves.empty()) break;
    std::sort(leaves.begin(), leaves.end(), [](const Node* a, const Node* b) { return a->last_used < b->last_used; });
    for (Node* leaf : leaves) {
      if (freed >= n) break;
      pool_.release(leaf->block);
      Node* parent = leaf->parent;
      parent->children.erase(leaf->tokens);  // destroys leaf
      --n_nodes_;
      ++freed;
    }
  }
  return freed;
}

}  // namespace muse
