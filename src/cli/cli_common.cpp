#include "cli/cli_common.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>

#include "runtime/json_schema.h"
#include "synth/synth.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/thread_pool.h"

#ifdef MUSE_BUILTIN_MODEL
extern "C" const char muse_builtin_model[], muse_builtin_model_end[];
#endif

namespace muse {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

int thread_count(const Args& a) {
  const long long t = a.get_int("-t", default_thread_count());
  if (t < 1 || t > 1024) fail("-t must be between 1 and 1024");
  return int(t);
}

std::string human_bytes(double b) {
  char buf[32];
  if (b >= 1e9) std::snprintf(buf, sizeof buf, "%.2f GB", b / 1e9);
  else if (b >= 1e6) std::snprintf(buf, sizeof buf, "%.1f MB", b / 1e6);
  else std::snprintf(buf, sizeof buf, "%.1f kB", b / 1e3);
  return buf;
}

namespace {

// The default model: Muse's own (linked in when models/muse-nano.gguf was there at build time),
// else a small random-weight one; written to MUSE_HOME (~/.cache/muse) on first use.
std::string default_model_path() {
  std::string dir;
  if (const char* h = std::getenv("MUSE_HOME")) dir = h;
  else if (const char* home = std::getenv("HOME")) dir = std::string(home) + "/.cache/muse";
  else dir = "/tmp/muse";
  std::string partial;
  for (size_t i = 0; i <= dir.size(); ++i)
    if (i == dir.size() || dir[i] == '/') {
      partial = dir.substr(0, i);
      if (!partial.empty()) mkdir(partial.c_str(), 0755);
    }
#ifdef MUSE_BUILTIN_MODEL
  // Muse's own model, linked in: written out once per version (the name carries its hash).
  const std::string_view bytes(muse_builtin_model, size_t(muse_builtin_model_end - muse_builtin_model));
  const std::string path = dir + "/muse-nano-" MUSE_BUILTIN_MODEL_HASH ".gguf";
  if (access(path.c_str(), R_OK) != 0) {
    std::fprintf(stderr, "muse: writing the built-in default model (muse-nano) to %s\n", path.c_str());
    const std::string tmp = path + ".tmp";
    std::ofstream f(tmp, std::ios::binary);
    if (!f || !f.write(bytes.data(), std::streamsize(bytes.size())) || !f.flush()) fail("cannot write ", tmp);
    f.close();
    if (std::rename(tmp.c_str(), path.c_str()) != 0) fail("cannot write ", path);
  }
#else
  const std::string path = dir + "/default-synth-q8_0.gguf";
  if (access(path.c_str(), R_OK) != 0) {
    std::fprintf(stderr, "muse: writing the built-in default model (random weights) to %s\n", path.c_str());
    SynthOptions o;
    o.arch = Arch::kLlama;
    apply_dims("embd=256,layers=4,heads=8,kv_heads=2,head_dim=32,ff=768,vocab=4096,ctx=4096", o.shape);
    o.type = "q8_0";
    o.name = "muse-default-synth";
    const std::string tmp = path + ".tmp";
    synthesize(o, tmp);
    if (std::rename(tmp.c_str(), path.c_str()) != 0) fail("cannot write ", path);
  }
#endif
  return path;
}

}  // namespace

std::string model_path(const Args& a) { return a.has("-m") ? a.get("-m") : default_model_path(); }

std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot read ", path);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

std::vector<int32_t> prompt_tokens(const Args& a, const Tokenizer* tokenizer, int n_vocab) {
  const int sources = int(a.has("--tokens")) + int(a.has("-p")) + int(a.has("-f"));
  if (sources != 1) fail("give the prompt as exactly one of --tokens 1,2,3, -p TEXT or -f FILE");
  std::vector<int32_t> ids;
  if (a.has("--tokens")) {
    for (int id : parse_int_list(a.get("--tokens"), "--tokens")) ids.push_back(id);
  } else {
    if (!tokenizer) fail("the model has no tokenizer: give the prompt as --tokens");
    ids = tokenizer->encode(a.has("-p") ? a.get("-p") : read_text_file(a.get("-f")));
  }
  for (int32_t id : ids)
    if (id < 0 || id >= n_vocab) fail("--tokens: id ", id, " is outside the vocabulary (0..", n_vocab - 1, ")");
  if (ids.empty()) fail("the prompt is empty");
  return ids;
}

std::set<std::string> generation_flags() {
  return {"-n", "--temp", "--top-k", "--top-p", "--min-p", "--typical-p", "--repeat-penalty",
          "--repeat-last-n", "--presence-penalty", "--frequency-penalty", "--logit-bias", "--seed",
          "--stop", "--grammar", "--json-schema"};
}

const char* const kGenerationUsage =
    "generation: -n MAX_TOKENS, --temp T (0: greedy) --top-k K --top-p P --min-p M --typical-p P\n"
    "            --repeat-penalty R --repeat-last-n N --presence-penalty P --frequency-penalty F\n"
    "            --logit-bias ID=BIAS,... (ID=-inf bans) --seed S --stop TEXT (repeatable)\n"
    "            --grammar FILE.gbnf | --json-schema FILE.json (or inline JSON)\n";

GenerationRequest generation_from_args(const Args& a, int default_max_tokens) {
  GenerationRequest g;
  const long long n = a.get_int("-n", default_max_tokens);
  if (n < 0 || n > (1 << 24)) fail("-n must be between 0 and ", 1 << 24);
  g.max_tokens = int(n);
  SamplingParams& s = g.sampling;
  s.temperature = float(a.get_double("--temp", s.temperature));
  s.top_k = int(a.get_int("--top-k", s.top_k));
  s.top_p = float(a.get_double("--top-p", s.top_p));
  s.min_p = float(a.get_double("--min-p", s.min_p));
  s.typical_p = float(a.get_double("--typical-p", s.typical_p));
  s.repeat_penalty = float(a.get_double("--repeat-penalty", s.repeat_penalty));
  s.repeat_last_n = int(a.get_int("--repeat-last-n", s.repeat_last_n));
  s.presence_penalty = float(a.get_double("--presence-penalty", s.presence_penalty));
  s.frequency_penalty = float(a.get_double("--frequency-penalty", s.frequency_penalty));
  s.seed = uint64_t(a.get_int("--seed", 1234));
  if (a.has("--logit-bias")) {
    const std::string spec = a.get("--logit-bias");
    size_t pos = 0;
    while (pos < spec.size()) {
      size_t comma = spec.find(',', pos);
      if (comma == std::string::npos) comma = spec.size();
      const std::string item = spec.substr(pos, comma - pos);
      const size_t eq = item.find('=');
      if (eq == std::string::npos) fail("--logit-bias: expected ID=BIAS, got \"", item, "\"");
      char* end = nullptr;
      const long id = std::strtol(item.c_str(), &end, 10);
      if (end != item.c_str() + eq || id < 0) fail("--logit-bias: bad token id in \"", item, "\"");
      const std::string bias = item.substr(eq + 1);
      float value;
      if (bias == "-inf") {
        value = -std::numeric_limits<float>::infinity();
      } else {
        value = std::strtof(bias.c_str(), &end);
        if (bias.empty() || *end) fail("--logit-bias: bad bias in \"", item, "\"");
      }
      s.logit_bias[int32_t(id)] = value;
      pos = comma + 1;
    }
  }
  s.validate();
  g.stop = a.get_all("--stop");
  if (a.has("--grammar") && a.has("--json-schema")) fail("give --grammar or --json-schema, not both");
  if (a.has("--grammar")) g.grammar = Grammar::parse(read_text_file(a.get("--grammar")));
  if (a.has("--json-schema")) {
    const std::string spec = a.get("--json-schema");
    const std::string text = !spec.empty() && (spec[0] == '{' || spec[0] == '[') ? spec : read_text_file(spec);
    g.grammar = Grammar::parse(json_schema_to_grammar(Json::parse(text)));
  }
  return g;
}

}  // namespace muse
