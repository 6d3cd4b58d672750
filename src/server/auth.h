// API keys: read from a file, compared in constant time, never logged (a request is known by its
// key's line number), and per-key limits on concurrent requests and on requests per minute.
#pragma once
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace muse {

// Equal contents, in time that depends on the lengths only.
bool constant_time_equal(std::string_view a, std::string_view b);

class ApiKeys {
 public:
  // One key per line; blank lines and lines starting with '#' are skipped; a file without keys,
  // or a key shorter than 16 characters, is an error.
  static ApiKeys from_file(const std::string& path);
  explicit ApiKeys(std::vector<std::string> keys);
  // The index of the key an Authorization header ("Bearer KEY") carries, or -1. Every key is
  // compared, whatever matched before.
  int match(std::string_view authorization) const;
  size_t size() const { return keys_.size(); }

 private:
  std::vector<std::string> keys_;
};

class KeyLimiter {
 public:
  KeyLimiter(int max_concurrent, double requests_per_minute);
  // Takes a slot for `key`; false with the reason (and when to retry) when a limit is reached.
  bool acquire(int key, std::string* why, double* retry_after_seconds);
  void release(int key);

 private:
  struct State {
    int running = 0;
    double tokens = 0;  // token bucket for the rate, refilled continuously
    std::chrono::steady_clock::time_point refilled;
    bool started = false;
  };
  std::mutex mu_;
  int max_concurrent_;
  double per_minute_;
  std::map<int, State> keys_;
};

}  // namespace muse
