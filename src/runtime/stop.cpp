#include "runtime/stop.h"

#include <algorithm>

namespace muse {
namespace {

// Length of the incomplete UTF-8 sequence at the end of s (0 when s ends on a boundary).
size_t incomplete_utf8_tail(std::string_view s) {
  for (size_t back = 1; back <= std::min<size_t>(3, s.size()); ++back) {
    const unsigned char c = s[s.size() - back];
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    const size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return need > back ? back : 0;
  }
  return 0;
}

}  // namespace

StopMatcher::StopMatcher(std::vector<std::string> stop_strings, std::vector<int32_t> eog_ids)
    : eog_ids_(std::move(eog_ids)) {
  for (std::string& s : stop_strings) {
    if (!s.empty()) stops_.push_back(std::move(s));
  }
}

bool StopMatcher::is_end_of_generation(int32_t token) const {
  return std::find(eog_ids_.begin(), eog_ids_.end(), token) != eog_ids_.end();
}

StopMatcher::Result StopMatcher::feed(std::string_view delta) {
  Result r;
  if (stopped()) return r;
  held_.append(delta);
  // The earliest stop string wins; at the same position the longest.
  size_t best = std::string::npos;
  const std::string* match = nullptr;
  for (const std::string& s : stops_) {
    const size_t at = held_.find(s);
    if (at == std::string::npos) continue;
    if (at < best || (at == best && s.size() > match->size())) {
      best = at;
      match = &s;
    }
  }
  if (match) {
    r.text = held_.substr(0, best);
    r.reason = reason_ = Reason::kStopString;
    r.stop = *match;
    held_.clear();
    return r;
  }
  // Hold the longest tail that a stop string could still begin with.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    for (size_t len = std::min(s.size() - 1, held_.size()); len > hold; --len) {
      if (held_.compare(held_.size() - len, len, s, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  size_t emit = held_.size() - hold;
  emit -= incomplete_utf8_tail(std::string_view(held_).substr(0, emit));
  r.text = held_.substr(0, emit);
  held_.erase(0, emit);
  return r;
}

StopMatcher::Result StopMatcher::feed_token(int32_t token, std::string_view piece) {
  if (stopped()) return {};
  if (!is_end_of_generation(token)) return feed(piece);
  Result r;
  r.text = flush();
  r.reason = reason_ = Reason::kEndOfGeneration;
  return r;
}

std::string StopMatcher::flush() {
  std::string out;
  out.swap(held_);
  return out;
}

void StopMatcher::reset() {
  held_.clear();
  reason_ = Reason::kNone;
}

}  // namespace muse
