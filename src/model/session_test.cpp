#include "model/session.h"

#include <gtest/gtest.h>

#include <cstring>

#include "synth/synth.h"
#include "testing/test_support.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace muse {
namespace {

class SessionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    path_ = new std::string(testing::temp_path("session.gguf"));
    SynthOptions o;
    o.arch = Arch::kQwen3;
    apply_dims("embd=256,layers=2,heads=4,kv_heads=2,head_dim=64,ff=512,vocab=500,ctx=128", o.shape);
    o.type = "q4_k_m";
    synthesize(o, *path_);
  }
  static void TearDownTestSuite() {
    std::remove(path_->c_str());
    delete path_;
  }
  static std::string* path_;
};
std::string* SessionTest::path_ = nullptr;

std::vector<int32_t> some_tokens(int n) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back((i * 37 + 5) % 500);
  return t;
}

// Each token's arithmetic does not depend on what else is in the batch, so batched prefill,
// token-by-token decoding and chunked prefill give bit-identical logits.
TEST_F(SessionTest, BatchedAndIncrementalForwardAgreeExactly) {
  const auto model = Model::load(*path_);
  const int V = model->config().n_vocab, n = 41;  // above kBatchedMinTokens: prefill takes the batched kernels
  const auto tokens = some_tokens(n);
  ThreadPool pool(2);
  Session batched(*model, pool, {.n_ctx = 64});
  std::vector<float> all(size_t(n) * V);
  batched.forward(tokens.data(), n, all.data(), true);

  Session incremental(*model, pool, {.n_ctx = 64});
  std::vector<float> one(V);
  for (int i = 0; i < n; ++i) {
    incremental.forward(&tokens[i], 1, one.data(), false);
    ASSERT_EQ(0, std::memcmp(one.data(), &all[size_t(i) * V], V * 4)) << "position " << i;
  }

  Session chunked(*model, pool, {.n_ctx = 64, .n_batch = 5});
  std::vector<float> last(V);
  chunked.forward(tokens.data(), n, last.data(), false);
  EXPECT_EQ(0, std::memcmp(last.data(), &all[size_t(n - 1) * V], V * 4));
  EXPECT_EQ(chunked.n_past(), n);
}

// A chat turn keeps the shared prefix and replaces the rest: the result must be what a fresh
// session computes for the new sequence.
TEST_F(SessionTest, TruncateKeepsThePrefixAndForgetsTheRest) {
  const auto model = Model::load(*path_);
  const int V = model->config().n_vocab;
  ThreadPool pool(2);
  auto first = some_tokens(20);
  auto second = first;
  second.resize(12);
  for (int i = 0; i < 6; ++i) second.push_back((i * 11 + 3) % 500);
  Session reused(*model, pool, {.n_ctx = 64});
  std::vector<float> logits(V), fresh_logits(V);
  reused.forward(first.data(), int(first.size()), logits.data(), false);
  reused.truncate(12);
  reused.forward(second.data() + 12, int(second.size()) - 12, logits.data(), false);
  Session fresh(*model, pool, {.n_ctx = 64});
  fresh.forward(second.data(), int(second.size()), fresh_logits.data(), false);
  EXPECT_EQ(0, std::memcmp(logits.data(), fresh_logits.data(), size_t(V) * 4));
  EXPECT_THROW(reused.truncate(19), Error);
  EXPECT_THROW(reused.truncate(-1), Error);
}

TEST_F(SessionTest, RejectsOverflowAndBadTokens) {
  const auto model = Model::load(*path_);
  ThreadPool pool(1);
  Session s(*model, pool, {.n_ctx = 8});
  std::vector<float> logits(model->config().n_vocab);
  const auto tokens = some_tokens(9);
  EXPECT_THROW(s.forward(tokens.data(), 9, logits.data(), false), Error);
  const int32_t bad = 500;
  EXPECT_THROW(s.forward(&bad, 1, logits.data(), false), Error);
  EXPECT_EQ(s.n_past(), 0);
  s.forward(tokens.data(), 8, logits.data(), false);
  EXPECT_THROW(s.forward(tokens.data(), 1, logits.data(), false), Error);
}

TEST(ModelLoad, RefusesUnknownArchitectureByName) {
  GgufWriter w;
  w.set_string("general.architecture", "mamba2");
  const std::string path = testing::temp_path("mamba.gguf");
  w.write(path);
  try {
    Model::load(path);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unsupported architecture \"mamba2\""), std::string::npos) << e.what();
  }
  std::remove(path.c_str());
}

TEST(ModelLoad, RefusesMissingAndMisshapenTensors) {
  SynthOptions o;
  apply_dims("embd=64,layers=1,heads=2,kv_heads=1,head_dim=32,ff=64,vocab=300", o.shape);
  o.type = "f32";
  const std::string good = testing::temp_path("good.gguf");
  synthesize(o, good);
  auto f = GgufFile::open(good);
  // Rebuild the file without one tensor and with another given the wrong shape.
  GgufWriter w;
  for (const auto& [key, v] : f->metadata()) {
    if (v.type == GgufType::kString) w.set_string(key, std::string(v.str));
    else if (v.type == GgufType::kUint32) w.set_u32(key, uint32_t(v.u));
    else if (v.type == GgufType::kFloat32) w.set_f32(key, float(v.f));
  }
  for (const GgufTensor& t : f->tensors()) {
    if (t.name == "blk.0.ffn_up.weight") continue;
    std::vector<int64_t> dims(t.ne, t.ne + t.n_dims);
    w.add_tensor(t.name, t.type, dims, t.data, t.nbytes);
  }
  const std::string bad = testing::temp_path("bad.gguf");
  w.write(bad);
  EXPECT_THROW(Model::load(bad), Error);
  try {
    Model::load(bad);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing tensor \"blk.0.ffn_up.weight\""), std::string::npos) << e.what();
  }
  std::remove(good.c_str());
  std::remove(bad.c_str());
}

}  // namespace
}  // namespace muse
