// libFuzzer target for the GGUF reader: any input must either parse or raise muse::Error,
// and everything a parsed file hands out (metadata views, tensor data) must lie inside the input.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "io/gguf.h"
#include "util/error.h"

namespace {

volatile uint64_t g_sink;  // keeps the reads below from being optimised away

uint64_t touch(const uint8_t* p, size_t n) {
  uint64_t s = 0;
  for (size_t k = 0; k < n; ++k) s += p[k];
  return s;
}

uint64_t touch_value(const muse::GgufValue& v) {
  uint64_t s = 0;
  try {
    s += v.describe().size();
    s += v.describe(1000).size();
  } catch (const muse::Error&) {
  }
  try { s += uint64_t(v.as_int("fuzz")); } catch (const muse::Error&) {}
  try { s += uint64_t(v.as_double("fuzz") != 0); } catch (const muse::Error&) {}
  try { s += v.as_string("fuzz").size(); } catch (const muse::Error&) {}
  try { s += v.as_float_array("fuzz").size(); } catch (const muse::Error&) {}
  try { s += v.as_int_array("fuzz").size(); } catch (const muse::Error&) {}
  s += touch(reinterpret_cast<const uint8_t*>(v.str.data()), v.str.size());
  for (std::string_view e : v.strings) s += touch(reinterpret_cast<const uint8_t*>(e.data()), e.size());
  for (const muse::GgufValue& e : v.nested) s += touch_value(e);
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::unique_ptr<muse::GgufFile> f;
  try {
    f = muse::GgufFile::from_memory(data, size, "fuzz");
  } catch (const muse::Error&) {
    return 0;
  }
  uint64_t s = f->version() + f->alignment();
  for (const auto& [key, v] : f->metadata()) {
    s += key.size() + touch_value(v);
    if (f->find(key) == nullptr) __builtin_trap();  // every key must be findable
  }
  try { s += f->get_string("general.architecture").size(); } catch (const muse::Error&) {}
  for (const muse::GgufTensor& t : f->tensors()) {
    if (t.data < data || t.nbytes > size || t.data + t.nbytes > data + size) __builtin_trap();
    if (f->find_tensor(t.name) != &t) __builtin_trap();
    const size_t n = t.nbytes < 16 ? t.nbytes : 16;
    s += touch(t.data, n) + touch(t.data + t.nbytes - n, n);  // first and last bytes
    s += t.shape().size() + uint64_t(t.elements());
  }
  g_sink = s;
  return 0;
}
