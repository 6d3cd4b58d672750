// libFuzzer target for the Jinja interpreter: any template source either fails with muse::Error
// or renders, within the limits, against a chat-like context. Limits are tight so that slow
// inputs are reported as errors instead of timing out the fuzzer.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "chat/jinja.h"
#include "util/error.h"
#include "util/json.h"

namespace {

const muse::Json& context() {
  static const muse::Json c = muse::Json::parse(R"({
    "messages": [{"role": "system", "content": "Be brief."},
                 {"role": "user", "content": "What is 17 * 23?"},
                 {"role": "assistant", "content": "391", "reasoning_content": "17*20+17*3",
                  "tool_calls": [{"id": "call_1", "type": "function",
                                  "function": {"name": "calc", "arguments": {"x": 1.5}}}]}],
    "tools": [{"type": "function", "function": {"name": "calc", "parameters": {"type": "object"}}}],
    "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>", "n": [1, 2, 3]})");
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  muse::jinja::RenderOptions options;
  options.now = muse::jinja::DateTime::parse("2026-11-22T12:00:00");
  options.limits.max_steps = 20000;
  options.limits.max_depth = 64;
  options.limits.max_string_bytes = 1 << 16;
  options.limits.max_list_items = 1 << 12;
  try {
    const muse::jinja::Template t(std::string_view(reinterpret_cast<const char*>(data), size));
    t.render(context(), options);
  } catch (const muse::Error&) {
  }
  return 0;
}
