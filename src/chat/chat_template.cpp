#include "chat/chat_template.h"

#include "io/gguf.h"
#include "util/error.h"

namespace muse {

const char* const ChatTemplate::kDefaultSource =
    "{%- for message in messages -%}\n"
    "{%- set content = message['content'] -%}\n"
    "{%- if content is not string -%}\n"
    "{%- set text = namespace(value='') -%}\n"
    "{%- for part in (content if content is iterable else []) -%}\n"
    "{%- if part is mapping and part['type'] == 'text' -%}"
    "{%- set text.value = text.value ~ part['text'] -%}{%- endif -%}\n"
    "{%- endfor -%}\n"
    "{%- set content = text.value -%}\n"
    "{%- endif -%}\n"
    "{{- '<|im_start|>' ~ message['role'] ~ '\\n' ~ content ~ '<|im_end|>\\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}\n";

namespace {

jinja::Template parse_template(const std::string& source, const char* what) {
  try {
    return jinja::Template(source);
  } catch (const Error& e) {
    fail(what, ": ", e.what());
  }
}

std::string token_text(const GgufFile& file, const char* id_key) {
  const int64_t id = file.get_int(id_key, -1);
  const GgufValue* tokens = file.find("tokenizer.ggml.tokens");
  if (id < 0 || !tokens || tokens->type != GgufType::kArray ||
      tokens->elem_type != GgufType::kString || uint64_t(id) >= tokens->strings.size())
    return "";
  return std::string(tokens->strings[size_t(id)]);
}

}  // namespace

ChatTemplate::ChatTemplate(std::string source, std::string bos_token, std::string eos_token,
                           std::string tool_use_source)
    : source_(std::move(source)),
      bos_token_(std::move(bos_token)),
      eos_token_(std::move(eos_token)),
      template_(parse_template(source_, "chat template")) {
  if (!tool_use_source.empty())
    tool_use_template_ = parse_template(tool_use_source, "tool-use chat template");
}

std::unique_ptr<ChatTemplate> ChatTemplate::from_gguf(const GgufFile& file) {
  std::string source = file.get_string("tokenizer.chat_template", "");
  if (source.empty()) source = kDefaultSource;
  return std::make_unique<ChatTemplate>(std::move(source),
                                        token_text(file, "tokenizer.ggml.bos_token_id"),
                                        token_text(file, "tokenizer.ggml.eos_token_id"),
                                        file.get_string("tokenizer.chat_template.tool_use", ""));
}

std::string ChatTemplate::render(const Json& messages, const Options& options) const {
  if (!messages.is_array()) fail("chat messages must be a JSON array");
  if (!options.tools.is_null() && !options.tools.is_array())
    fail("chat tools must be a JSON array");
  if (!options.extra.is_null() && !options.extra.is_object())
    fail("extra template variables must be a JSON object");
  Json::Object context;
  context.insert_or_assign("messages", messages);
  if (!options.tools.is_null()) context.insert_or_assign("tools", options.tools);
  context.insert_or_assign("add_generation_prompt", options.add_generation_prompt);
  context.insert_or_assign("bos_token", bos_token_);
  context.insert_or_assign("eos_token", eos_token_);
  if (options.extra.is_object())
    for (const auto& [key, value] : options.extra.as_object()) context.insert_or_assign(key, value);
  jinja::RenderOptions render_options;
  render_options.now = options.now;
  const bool with_tools = options.tools.is_array() && options.tools.size() > 0;
  const jinja::Template& tpl = with_tools && tool_use_template_ ? *tool_use_template_ : template_;
  return tpl.render(Json(std::move(context)), render_options);
}

}  // namespace muse
