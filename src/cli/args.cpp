#include "cli/args.h"

#include <cstdlib>

#include "util/error.h"

namespace muse {

Args::Args(const std::vector<std::string>& argv, const std::set<std::string>& known,
           const std::set<std::string>& switches) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (switches.count(a)) {
      values_.insert_or_assign(a, std::string(1, '1'));
    } else if (known.count(a)) {
      if (i + 1 >= argv.size()) fail(a, " needs a value");
      values_[a] = argv[++i];
      all_[a].push_back(argv[i]);
    } else {
      fail("unknown argument \"", a, "\"");
    }
  }
}

std::string Args::get(const std::string& flag, const std::string& fallback) const {
  auto it = values_.find(flag);
  return it == values_.end() ? fallback : it->second;
}

std::vector<std::string> Args::get_all(const std::string& flag) const {
  auto it = all_.find(flag);
  return it == all_.end() ? std::vector<std::string>{} : it->second;
}

std::string Args::require(const std::string& flag) const {
  auto it = values_.find(flag);
  if (it == values_.end()) fail(flag, " is required");
  return it->second;
}

long long Args::get_int(const std::string& flag, long long fallback) const {
  if (!has(flag)) return fallback;
  const std::string v = get(flag);
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end || errno) fail(flag, " needs an integer, got \"", v, "\"");
  return x;
}

double Args::get_double(const std::string& flag, double fallback) const {
  if (!has(flag)) return fallback;
  const std::string v = get(flag);
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end) fail(flag, " needs a number, got \"", v, "\"");
  return x;
}

std::vector<int> parse_int_list(const std::string& text, const std::string& flag) {
  std::vector<int> out;
  size_t i = 0;
  while (i < text.size()) {
    size_t j = text.find(',', i);
    if (j == std::string::npos) j = text.size();
    const std::string item = text.substr(i, j - i);
    char* end = nullptr;
    errno = 0;
    const long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end || errno || v < INT32_MIN || v > INT32_MAX)
      fail(flag, ": \"", item, "\" is not an integer");
    out.push_back(int(v));
    i = j + 1;
  }
  if (out.empty()) fail(flag, " is empty");
  return out;
}

}  // namespace muse
