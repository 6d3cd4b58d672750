// A model's chat template: turns OpenAI-style messages (and tools) into the prompt text the
// model was trained on, by rendering the Jinja template the model ships (see chat/jinja.h).
//
// The render context is what Hugging Face's apply_chat_template passes: `messages`,
// `add_generation_prompt`, `bos_token`, `eos_token`, `tools` (only when tools are given), and
// any extra variables (e.g. `enable_thinking`), which override the others.
//
// Models without a template get the default below (ChatML, as Qwen and many fine-tunes use):
//   <|im_start|>ROLE\nCONTENT<|im_end|>\n   for every message, then
//   <|im_start|>assistant\n                    when add_generation_prompt is true.
// Content given as a list of parts contributes the text of its {"type": "text"} parts.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "chat/jinja.h"
#include "util/json.h"

namespace muse {

class GgufFile;

class ChatTemplate {
 public:
  struct Options {
    Json tools;                          // a JSON array of tool definitions, or null for none
    bool add_generation_prompt = true;   // end with the opening of the assistant's turn
    Json extra;                          // a JSON object of further variables, or null
    std::optional<jinja::DateTime> now;  // strftime_now()'s clock; local time when absent
  };

  static const char* const kDefaultSource;  // the ChatML default described above

  // Parses `source` (throws muse::Error on a syntax error). `tool_use_source`, when not
  // empty, is a second template used when tools are given (GGUF's
  // tokenizer.chat_template.tool_use, as Hugging Face picks the "tool_use" template).
  ChatTemplate(std::string source, std::string bos_token, std::string eos_token,
               std::string tool_use_source = "");

  // From model metadata: tokenizer.chat_template (and .tool_use), and the texts of the BOS and
  // EOS tokens (tokenizer.ggml.tokens at tokenizer.ggml.bos_token_id / eos_token_id). Without
  // a template the default is used.
  static std::unique_ptr<ChatTemplate> from_gguf(const GgufFile& file);

  // `messages` is a JSON array of message objects. Throws muse::Error when the template
  // raises (with exactly its message) or fails.
  std::string render(const Json& messages, const Options& options) const;

  const std::string& source() const { return source_; }
  const std::string& bos_token() const { return bos_token_; }
  const std::string& eos_token() const { return eos_token_; }
  bool is_default() const { return source_ == kDefaultSource; }

 private:
  std::string source_, bos_token_, eos_token_;
  jinja::Template template_;
  std::optional<jinja::Template> tool_use_template_;
};

}  // namespace muse
