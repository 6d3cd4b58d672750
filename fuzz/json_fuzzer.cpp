// libFuzzer target for the JSON parser: any input parses or raises muse::Error, and what parses
// prints back to text that parses to the same value.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "util/error.h"
#include "util/json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  muse::Json value;
  try {
    value = muse::Json::parse(std::string_view(reinterpret_cast<const char*>(data), size));
  } catch (const muse::Error&) {
    return 0;
  }
  const std::string once = value.dump();
  const std::string twice = muse::Json::parse(once).dump();
  if (once != twice) __builtin_trap();
  return 0;
}
