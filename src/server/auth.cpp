#include "server/auth.h"

#include <algorithm>
#include <fstream>

#include "util/error.h"

namespace muse {

bool constant_time_equal(std::string_view a, std::string_view b) {
  // Every byte of the longer is visited; the length difference is folded in, not tested first.
  const size_t n = std::max(a.size(), b.size());
  unsigned diff = unsigned(a.size() != b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= unsigned(x ^ y);
  }
  return diff == 0;
}

ApiKeys ApiKeys::from_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) fail("cannot read the API key file ", path);
  std::vector<std::string> keys;
  std::string line;
  int number = 0;
  while (std::getline(f, line)) {
    ++number;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    const size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    line = line.substr(start);
    if (line.size() < 16) fail(path, ":", number, ": an API key must be at least 16 characters");
    keys.push_back(line);
  }
  if (keys.empty()) fail(path, " holds no API keys");
  return ApiKeys(std::move(keys));
}

ApiKeys::ApiKeys(std::vector<std::string> keys) : keys_(std::move(keys)) {}

int ApiKeys::match(std::string_view authorization) const {
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.substr(0, kBearer.size()) != kBearer) return -1;
  const std::string_view given = authorization.substr(kBearer.size());
  int found = -1;
  for (size_t i = 0; i < keys_.size(); ++i)
    if (constant_time_equal(given, keys_[i]) && found < 0) found = int(i);
  return found;
}

KeyLimiter::KeyLimiter(int max_concurrent, double requests_per_minute)
    : max_concurrent_(max_concurrent), per_minute_(requests_per_minute) {}

bool KeyLimiter::acquire(int key, std::string* why, double* retry_after_seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  State& s = keys_[key];
  const auto now = std::chrono::steady_clock::now();
  if (per_minute_ > 0) {
    // A bucket of one minute's requests, refilled at the rate.
    if (!s.started) {
      s.tokens = per_minute_;
      s.refilled = now;
      s.started = true;
    }
    const double minutes = std::chrono::duration<double>(now - s.refilled).count() / 60;
    s.tokens = std::min(per_minute_, s.tokens + minutes * per_minute_);
    s.refilled = now;
    if (s.tokens < 1) {
      *why = "rate limit reached for this API key";
      *retry_after_seconds = (1 - s.tokens) * 60 / per_minute_;
      return false;
    }
  }
  if (max_concurrent_ > 0 && s.running >= max_concurrent_) {
    *why = "too many concurrent requests for this API key (at most " + std::to_string(max_concurrent_) + ")";
    *retry_after_seconds = 1;
    return false;
  }
  if (per_minute_ > 0) s.tokens -= 1;
  ++s.running;
  return true;
}

void KeyLimiter::release(int key) {
  std::lock_guard<std::mutex> lock(mu_);
  State& s = keys_[key];
  if (s.running > 0) --s.running;
}

}  // namespace muse
