// The `muse` binary as users and scripts call it: exact command forms, JSON shapes, and one
// clear error line with a non-zero exit for bad input.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>

#include "testing/test_support.h"
#include "util/json.h"

namespace muse {
namespace {

struct Result {
  int code;
  std::string out, err;
};

Result muse(const std::string& args) {
  const std::string err_path = testing::temp_path("stderr.txt");
  const std::string cmd = std::string(MUSE_BINARY) + " " + args + " 2>" + err_path;
  FILE* p = popen(cmd.c_str(), "r");
  Result r{-1, "", ""};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  r.err = testing::read_file(err_path);
  return r;
}

class Cli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = new std::string(testing::temp_path("cli.gguf"));
    const Result r = muse("synth --arch qwen3 --dims embd=128,layers=2,heads=4,kv_heads=2,head_dim=32,ff=256,vocab=400 "
                          "--type q8_0 -o " + *model_ + " --seed 3");
    ASSERT_EQ(r.code, 0) << r.err;
  }
  static void TearDownTestSuite() {
    std::remove(model_->c_str());
    delete model_;
  }
  static std::string* model_;
};
std::string* Cli::model_ = nullptr;

TEST_F(Cli, InfoDescribesTheModel) {
  const Result r = muse("info -m " + *model_);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("architecture: qwen3"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("head dim 32"), std::string::npos);
  EXPECT_NE(r.out.find("q8_0"), std::string::npos);
  EXPECT_NE(r.out.find("tokenizer: gpt2"), std::string::npos);
  EXPECT_NE(r.out.find("chat template:"), std::string::npos);
}

TEST_F(Cli, LogitsPrintsTopKPerPositionAndDumpsAll) {
  const std::string dump = testing::temp_path("logits.f32");
  const Result r = muse("logits -m " + *model_ + " --tokens 1,2,3 --top 4 --dump " + dump);
  ASSERT_EQ(r.code, 0) << r.err;
  const Json j = Json::parse(r.out);
  EXPECT_EQ(j.at("tokens").size(), 3u);
  ASSERT_EQ(j.at("top").size(), 3u);
  for (const Json& pos : j.at("top").as_array()) {
    ASSERT_EQ(pos.size(), 4u);
    for (size_t k = 1; k < 4; ++k) EXPECT_GE(pos[k - 1][1].as_number(), pos[k][1].as_number());
  }
  const std::string raw = testing::read_file(dump);
  ASSERT_EQ(raw.size(), 3u * 400 * 4);
  const float* f = reinterpret_cast<const float*>(raw.data());
  EXPECT_FLOAT_EQ(f[2 * 400 + j.at("top")[2][0][0].as_int()], float(j.at("top")[2][0][1].as_number()));
}

TEST_F(Cli, GreedyRunIsDeterministicAndSampledRunFollowsTheSeed) {
  const Result a = muse("run -m " + *model_ + " --tokens 5,6,7 -n 8 --temp 0 --json");
  const Result b = muse("run -m " + *model_ + " --tokens 5,6,7 -n 8 --temp 0 --json -t 1");
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_EQ(Json::parse(a.out).at("generated").size(), 8u);
  EXPECT_EQ(a.out, b.out);
  const std::string sampled = "run -m " + *model_ + " --tokens 5,6,7 -n 8 --temp 1.5 --top-k 0 --top-p 1 --min-p 0 --json";
  EXPECT_EQ(muse(sampled + " --seed 11").out, muse(sampled + " --seed 11").out);
  EXPECT_NE(muse(sampled + " --seed 11").out, muse(sampled + " --seed 12").out);
}

TEST_F(Cli, BenchPrintsJson) {
  const Result r = muse("bench -m " + *model_ + " -p 16 -n 4 -r 1 -t 2 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const Json j = Json::parse(r.out);
  EXPECT_GT(j.at("pp_tps").as_number(), 0);
  EXPECT_GT(j.at("tg_tps").as_number(), 0);
}

TEST_F(Cli, BadInputGetsOneLineErrorAndNonZeroExit) {
  const std::string corrupt = testing::temp_path("corrupt.gguf");
  {
    std::string bytes = testing::read_file(*model_);
    bytes.resize(bytes.size() / 2);
    std::ofstream(corrupt, std::ios::binary) << bytes;
  }
  const std::string not_gguf = testing::temp_path("text.gguf");
  std::ofstream(not_gguf) << "hello, I am not a model\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"info -m /nonexistent/model.gguf", "cannot open"},
      {"info -m " + not_gguf, "not a GGUF file"},
      {"logits -m " + corrupt + " --tokens 1", "truncated"},
      {"logits -m " + *model_ + " --tokens 1,x", "not an integer"},
      {"logits -m " + *model_ + " --tokens 400", "outside the vocabulary"},
      {"run -m " + *model_ + " --tokens 1 --top-p 2", "out of range"},
      {"bench -m " + *model_ + " --bogus 1", "unknown argument"},
      {"synth --arch mamba --dims embd=64 --type q8_0 -o /tmp/x.gguf", "--arch"},
      {"synth --preset gpt5 --type q8_0 -o /tmp/x.gguf", "unknown preset"},
      {"frobnicate", "unknown command"},
  };
  for (const auto& [args, message] : cases) {
    const Result r = muse(args);
    EXPECT_NE(r.code, 0) << args;
    EXPECT_NE(r.err.find(message), std::string::npos) << args << " printed: " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << args << " printed: " << r.err;
  }
  std::remove(corrupt.c_str());
  std::remove(not_gguf.c_str());
}

}  // namespace
}  // namespace muse
