// `muse chat-template`: renders a chat template with a given context, exactly as the model
// would see it (for checking templates against Hugging Face's rendering).
#include <cstdio>

#include "chat/chat_template.h"
#include "chat/jinja.h"
#include "cli/args.h"
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "io/gguf.h"
#include "util/error.h"
#include "util/json.h"

namespace muse {

int cmd_chat_template(const Argv& argv) {
  const Args a(argv, {"--template", "--context", "--now", "-m"}, {});
  if (a.has("--template") == a.has("-m"))
    fail("give the template as --template FILE.jinja or -m MODEL.gguf");
  Json context = Json::parse(read_text_file(a.require("--context")));
  if (!context.is_object()) fail("--context must hold a JSON object (the template's variables)");
  std::string source;
  if (a.has("-m")) {
    // The model's template, with its BOS and EOS texts unless the context sets them.
    const auto chat_template = ChatTemplate::from_gguf(*GgufFile::open(a.get("-m")));
    source = chat_template->source();
    Json::Object& vars = context.mutable_object();
    vars.emplace("bos_token", chat_template->bos_token());
    vars.emplace("eos_token", chat_template->eos_token());
  } else {
    source = read_text_file(a.get("--template"));
  }
  jinja::RenderOptions options;
  if (a.has("--now")) options.now = jinja::DateTime::parse(a.get("--now"));
  const std::string rendered = jinja::Template(source).render(context, options);
  std::fwrite(rendered.data(), 1, rendered.size(), stdout);
  return 0;
}

}  // namespace muse
