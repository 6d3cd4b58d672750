#include "runtime/speculative.h"

#include <algorithm>

#include "model/model.h"
#include "util/error.h"

namespace muse {

PromptLookupDrafter::PromptLookupDrafter(int min_ngram, int max_ngram)
    : min_ngram_(std::max(1, min_ngram)), max_ngram_(std::max(min_ngram_, max_ngram)) {}

std::vector<int32_t> PromptLookupDrafter::propose(const std::vector<int32_t>& history,
                                                  int max_tokens) {
  const int n = int(history.size());
  if (max_tokens <= 0) return {};
  for (int len = std::min(max_ngram_, n - 1); len >= min_ngram_; --len) {
    const int32_t* tail = history.data() + n - len;
    // Latest match first: recent text predicts best. A match must leave a token after it.
    for (int start = n - len - 1; start >= 0; --start) {
      if (!std::equal(tail, tail + len, history.data() + start)) continue;
      const int from = start + len, count = std::min(max_tokens, n - from);
      return std::vector<int32_t>(history.begin() + from, history.begin() + from + count);
    }
  }
  return {};
}

DraftModelDrafter::DraftModelDrafter(const Model& draft, const Model& target, ThreadPool& pool,
                                     int n_ctx)
    : session_(draft, pool, SessionParams{.n_ctx = n_ctx}) {
  if (draft.config().n_vocab != target.config().n_vocab)
    fail("the draft model's vocabulary (", draft.config().n_vocab,
         " tokens) differs from the target's (", target.config().n_vocab, ")");
  logits_.resize(size_t(session_.n_vocab()));
}

std::vector<int32_t> DraftModelDrafter::propose(const std::vector<int32_t>& history,
                                                int max_tokens) {
  const int room = session_.n_ctx() - int(history.size());
  max_tokens = std::min(max_tokens, room);
  if (max_tokens <= 0 || history.empty()) return {};
  // Keep the common prefix; at least the last history token runs, for its logits.
  size_t keep = 0;
  while (keep < cached_.size() && keep + 1 < history.size() && cached_[keep] == history[keep])
    ++keep;
  session_.truncate(int(keep));
  cached_.resize(keep);
  session_.forward(history.data() + keep, int(history.size() - keep), logits_.data(), false);
  cached_.assign(history.begin(), history.end());
  std::vector<int32_t> guesses;
  for (int i = 0; i < max_tokens; ++i) {
    const int32_t t = int32_t(std::max_element(logits_.begin(), logits_.end()) - logits_.begin());
    guesses.push_back(t);
    if (i + 1 == max_tokens) break;
    session_.forward(&t, 1, logits_.data(), false);
    cached_.push_back(t);
  }
  return guesses;
}

}  // namespace muse
