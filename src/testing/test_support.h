// Helpers shared by the tests: the reference data directory and temporary files.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <vector>
#include <string>
#include <sys/stat.h>

#include "model/model.h"
#include "model/session.h"
#include "runtime/generate.h"
#include "runtime/scheduler.h"
#include "synth/synth.h"
#include "tokenizer/tokenizer.h"

namespace muse::testing {

// MUSE_REFERENCE_DIR, else ../shared/reference beside the source tree; "" when absent.
inline std::string reference_dir() {
  std::string dir;
  if (const char* env = std::getenv("MUSE_REFERENCE_DIR")) dir = env;
  else dir = std::string(MUSE_SOURCE_DIR) + "/../shared/reference";
  struct stat st;
  return stat((dir + "/README.md").c_str(), &st) == 0 ? dir : "";
}

#define MUSE_REQUIRE_REFERENCE(dir)                                                          \
  const std::string dir = ::muse::testing::reference_dir();                                  \
  if (dir.empty())                                                                           \
  GTEST_SKIP() << "reference data not found: set MUSE_REFERENCE_DIR or place shared/reference " \
                  "beside the project"

// A fresh path under the test's temporary directory.
inline std::string temp_path(const std::string& name) {
  const char* base = std::getenv("TMPDIR");
  std::string dir = std::string(base ? base : "/tmp") + "/muse-test-" + std::to_string(getpid());
  mkdir(dir.c_str(), 0755);
  return dir + "/" + name;
}

// n normal(0, scale) samples from a fixed seed: kernels are tested on random data, never zeros.
inline std::vector<float> random_normal(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// A random-weight model of the given shape (synth --dims syntax), loaded from a temporary file.
inline std::unique_ptr<Model> synth_model(Arch arch, const std::string& dims, const std::string& type) {
  const std::string path = temp_path("synth-" + std::to_string(std::hash<std::string>()(dims + type)) + ".gguf");
  SynthOptions o;
  o.arch = arch;
  apply_dims(dims, o.shape);
  o.type = type;
  synthesize(o, path);
  auto model = Model::load(path);
  std::remove(path.c_str());  // the mapping stays valid
  return model;
}

// A suite's random-weight model and its tokenizer, written once for all of the suite's tests:
// derive the fixture from SynthModelTest<Spec>, where Spec has kArch, kDims and kType.
template <typename Spec>
class SynthModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = synth_model(Spec::kArch, Spec::kDims, Spec::kType);
    tokenizer_ = Tokenizer::from_gguf(model_->file());
  }
  static void TearDownTestSuite() {
    tokenizer_.reset();
    model_.reset();
  }
  static inline std::unique_ptr<Model> model_;
  static inline std::unique_ptr<Tokenizer> tokenizer_;
};

// The small Qwen3-shaped chat model most runtime tests share (q8_0, a 700-token vocabulary).
struct SmallQwen3 {
  static constexpr Arch kArch = Arch::kQwen3;
  static constexpr const char* kDims = "embd=128,layers=2,heads=4,kv_heads=2,head_dim=32,ff=256,vocab=700,ctx=1024";
  static constexpr const char* kType = "q8_0";
};

inline SamplingParams greedy_sampling() {
  SamplingParams s;
  s.temperature = 0;
  return s;
}

// A fixed prompt of n in-vocabulary ids (below 690, which every synthetic vocabulary here has).
inline std::vector<int32_t> fixed_prompt(int n = 40, int step = 37, int offset = 5) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back((i * step + offset) % 690);
  return p;
}

// What a prompt generates alone in a session (greedy unless `sampling` says otherwise): the
// reference batched and forked runs are held to.
inline std::vector<int32_t> generate_alone(const Model& model, const Tokenizer& tokenizer, ThreadPool& pool,
                                           const std::vector<int32_t>& prompt, int max_tokens,
                                           SamplingParams sampling = greedy_sampling()) {
  Session session(model, pool, {.n_ctx = 512});
  Generator gen(session, tokenizer);
  GenerationRequest g;
  g.prompt = prompt;
  g.max_tokens = max_tokens;
  g.sampling = sampling;
  return gen.generate(g).tokens;
}

// A scheduler small enough for the synthetic models: 8-token blocks, 16 MiB of KV, 64-token steps.
inline SchedulerConfig small_scheduler_config() {
  SchedulerConfig c;
  c.block_tokens = 8;
  c.kv_budget_bytes = size_t(16) << 20;
  c.max_batch_tokens = 64;
  return c;
}

}  // namespace muse::testing
