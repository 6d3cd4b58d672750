// Muse reports bad input with one exception type whose message is a single line,
// so every command can print it and exit non-zero.
#pragma once
#include <stdexcept>
#include <string>
#include <string_view>

namespace muse {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

inline std::string to_text(const std::string& s) { return s; }
inline std::string to_text(const char* s) { return s; }
inline std::string to_text(char c) { return std::string(1, c); }
inline std::string to_text(char* s) { return s; }
inline std::string to_text(std::string_view s) { return std::string(s); }
template <typename T>
std::string to_text(const T& v) {
  return std::to_string(v);
}

template <typename... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::string msg;
  ((msg += to_text(parts)), ...);
  throw Error(msg);
}

}  // namespace muse
