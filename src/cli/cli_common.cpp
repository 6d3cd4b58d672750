#include "cli/cli_common.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "synth/synth.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/thread_pool.h"

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

// Until Muse ships a trained model, the default is a small synthetic one written on first use.
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

}  // namespace muse
