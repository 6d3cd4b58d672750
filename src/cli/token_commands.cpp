// `muse tokenize` and `muse detokenize`: the model's tokenizer on its own, without loading
// weights (the GGUF file is only mapped).
#include <unistd.h>

#include <cstdio>

#include "cli/args.h"
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace muse {

int cmd_tokenize(const Argv& argv) {
  const Args a(argv, {"-m", "-p", "-f"}, {"--no-bos", "--no-special"});
  if (a.has("-p") == a.has("-f")) fail("give the text as exactly one of -p TEXT or -f FILE");
  const auto file = GgufFile::open(a.require("-m"));
  const auto tokenizer = Tokenizer::from_gguf(*file);
  const std::string text = a.has("-p") ? a.get("-p") : read_text_file(a.get("-f"));
  const auto ids = tokenizer->encode(
      text, {.add_special = !a.has("--no-bos"), .parse_special = !a.has("--no-special")});
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(ids[i]);
  }
  std::printf("%s]\n", out.c_str());
  return 0;
}

int cmd_detokenize(const Argv& argv) {
  const Args a(argv, {"-m", "--tokens"}, {"--no-special"});
  const auto file = GgufFile::open(a.require("-m"));
  const auto tokenizer = Tokenizer::from_gguf(*file);
  std::vector<int32_t> ids;
  for (int id : parse_int_list(a.require("--tokens"), "--tokens")) ids.push_back(id);
  const std::string text = tokenizer->decode(ids, !a.has("--no-special"));
  // Exactly the text, so that scripts can compare it; a newline only for people.
  std::fwrite(text.data(), 1, text.size(), stdout);
  if (isatty(STDOUT_FILENO)) std::fputc('\n', stdout);
  return 0;
}

}  // namespace muse
