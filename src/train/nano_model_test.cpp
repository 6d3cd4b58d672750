// The shipped model (models/muse-nano.gguf, trained by `muse train --recipe nano`): Muse reads
// it as llama.cpp does. tests/data/muse-nano.ref.json holds llama.cpp's tokens and greedy
// continuations (llama-tokenize, and llama-completion --temp 0 -n 64 --special) for held-out
// chat prompts; Muse must tokenize identically and generate the same text.
#include <gtest/gtest.h>

#include <filesystem>

#include "model/model.h"
#include "testing/test_support.h"
#include "tokenizer/tokenizer.h"
#include "util/json.h"
#include "util/thread_pool.h"

namespace muse {
namespace {

TEST(NanoModel, TokenizesAndGeneratesAsLlamaCppDoes) {
  const std::filesystem::path dir(MUSE_SOURCE_DIR);
  const std::filesystem::path model_path = dir / "models" / "muse-nano.gguf";
  const std::filesystem::path ref_path = dir / "tests" / "data" / "muse-nano.ref.json";
  if (!std::filesystem::exists(model_path)) GTEST_SKIP() << "no shipped model at " << model_path;
  const Json ref = Json::parse(testing::read_file(ref_path.string()));
  const auto model = Model::load(model_path.string());
  const auto tokenizer = Tokenizer::from_gguf(model->file());
  ThreadPool pool(2);
  const auto& cases = ref.at("cases").as_array();
  ASSERT_GE(cases.size(), 8u);
  for (const Json& c : cases) {
    const std::string prompt = c.at("prompt").as_string();
    const std::vector<int32_t> ids = tokenizer->encode(prompt);
    std::vector<int32_t> expected;
    for (const Json& id : c.at("tokens").as_array()) expected.push_back(int32_t(id.as_int()));
    EXPECT_EQ(ids, expected) << prompt;
    std::vector<int32_t> generated = testing::generate_alone(*model, *tokenizer, pool, ids, 64);
    EXPECT_EQ(tokenizer->decode(generated, true), c.at("greedy_text").as_string()) << prompt;
  }
}

}  // namespace
}  // namespace muse
