// A Jinja2 interpreter for the chat templates that model authors ship in GGUF files and
// tokenizer_config.json. It renders them the way Hugging Face's apply_chat_template does:
// Jinja2's sandboxed environment with trim_blocks, lstrip_blocks and loop controls,
// raise_exception(msg), strftime_now(fmt), and tojson as Python's json.dumps(ensure_ascii=False).
//
// Values follow Python: ints and floats, str() and repr() of lists and dicts, truthiness,
// insertion-ordered dicts, Jinja's Undefined (prints as "", fails when used further), and
// lists, dicts and namespaces are shared by reference so that methods like append() mutate.
// List and dict methods that mutate are allowed (as in Jinja2's SandboxedEnvironment; the
// immutable variant Hugging Face uses would refuse them).
//
// Errors are muse::Error with one-line messages: "template syntax error (line N): ...",
// "template error (line N): ..." for runtime errors, and exactly the template's message for
// raise_exception(). Hostile templates hit limits (steps, depth, sizes) instead of hanging.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "util/json.h"

namespace muse::jinja {

// A wall-clock time without a zone, as Python's naive datetime.now() gives strftime_now().
struct DateTime {
  int year = 1970, month = 1, day = 1, hour = 0, minute = 0, second = 0, microsecond = 0;
  // "YYYY-MM-DDTHH:MM:SS" (or a space instead of T, optional ".ffffff", or a date alone).
  static DateTime parse(std::string_view text);
  static DateTime now_local();
};

struct Limits {
  uint64_t max_steps = 20'000'000;      // expression and statement evaluations per render
  int max_depth = 500;                  // nested evaluation (macro recursion included)
  size_t max_string_bytes = 64u << 20;  // any single string, the output included
  size_t max_list_items = 4u << 20;     // items of any single list
};

struct RenderOptions {
  std::optional<DateTime> now;  // the clock of strftime_now(); local time when absent
  Limits limits;
};

struct Program;  // the parsed template (internal)

class Template {
 public:
  // Parses the source; throws muse::Error on a syntax error.
  explicit Template(std::string_view source);
  ~Template();
  Template(const Template&);
  Template& operator=(const Template&);
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;

  // `context` is a JSON object whose members become the template's variables.
  std::string render(const Json& context, const RenderOptions& options = {}) const;

 private:
  std::shared_ptr<const Program> program_;
};

}  // namespace muse::jinja
