// Generation on a random-weight model: limits, stop strings, cancellation, cached prefixes and
// constrained output behave as promised whatever the model says.
#include "runtime/generate.h"

#include <gtest/gtest.h>

#include <cmath>

#include "model/model.h"
#include "model/session.h"
#include "runtime/json_schema.h"
#include "synth/synth.h"
#include "testing/test_support.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/json.h"
#include "util/thread_pool.h"

namespace muse {
namespace {

class GenerateTest : public testing::SynthModelTest<testing::SmallQwen3> {
 protected:
  GenerationRequest request(const std::string& prompt, int max_tokens) const {
    GenerationRequest r;
    r.prompt = tokenizer_->encode(prompt);
    r.max_tokens = max_tokens;
    r.sampling.temperature = 0;
    return r;
  }
  ThreadPool pool_{2};
};

TEST_F(GenerateTest, StopsAtTheLimitAndStreamsTheSameText) {
  Session session(*model_, pool_, {.n_ctx = 256});
  Generator gen(session, *tokenizer_);
  std::string streamed;
  int calls = 0;
  const GenerationResult r = gen.generate(request("The weather today", 20), [&](int32_t token, std::string_view t) {
    streamed += t;
    calls += token >= 0;  // -1: the text held back at the end
    return true;
  });
  EXPECT_EQ(streamed, r.text);
  EXPECT_EQ(calls, int(r.tokens.size()) - (r.finish == FinishReason::kEndOfGeneration ? 1 : 0));
  if (r.finish == FinishReason::kLength) {
    EXPECT_EQ(r.tokens.size(), 20u);
  }
  EXPECT_EQ(r.prompt_tokens, int(request("The weather today", 20).prompt.size()));
}

TEST_F(GenerateTest, StopStringEndsTheTextBeforeIt) {
  Session session(*model_, pool_, {.n_ctx = 256});
  Generator gen(session, *tokenizer_);
  const GenerationResult free_run = gen.generate(request("Once upon", 40));
  ASSERT_GE(free_run.text.size(), 6u) << "the random model should say something";
  // Stop at a piece of what it says anyway (greedy, so the run repeats).
  const std::string stop = free_run.text.substr(free_run.text.size() / 2, 3);
  GenerationRequest req = request("Once upon", 40);
  req.stop = {stop};
  const GenerationResult stopped = gen.generate(req);
  EXPECT_EQ(stopped.finish, FinishReason::kStopString);
  EXPECT_EQ(stopped.text, free_run.text.substr(0, free_run.text.find(stop)));
}

TEST_F(GenerateTest, CancelsWhenTheCallbackSaysSo) {
  Session session(*model_, pool_, {.n_ctx = 256});
  Generator gen(session, *tokenizer_);
  int calls = 0;
  const GenerationResult r = gen.generate(request("Tell me", 50), [&](int32_t, std::string_view) { return ++calls < 3; });
  if (r.finish != FinishReason::kEndOfGeneration) {
    EXPECT_EQ(r.finish, FinishReason::kCancelled);
    EXPECT_EQ(r.tokens.size(), 3u);
  }
}

// The second prompt extends the first: its shared part is not run again, and the output is
// what a fresh session produces.
TEST_F(GenerateTest, ReusesTheCachedPrefix) {
  Session session(*model_, pool_, {.n_ctx = 256});
  Generator gen(session, *tokenizer_);
  const GenerationRequest first = request("A long shared beginning of a conversation", 8);
  const GenerationResult r1 = gen.generate(first);
  GenerationRequest second = first;
  second.prompt.insert(second.prompt.end(), r1.tokens.begin(), r1.tokens.end());
  const std::vector<int32_t> more = tokenizer_->encode(" and then?", {.add_special = false});
  second.prompt.insert(second.prompt.end(), more.begin(), more.end());
  const GenerationResult r2 = gen.generate(second);
  EXPECT_GE(r2.reused_tokens, int(first.prompt.size()));

  Session fresh_session(*model_, pool_, {.n_ctx = 256});
  Generator fresh(fresh_session, *tokenizer_);
  const GenerationResult r3 = fresh.generate(second);
  EXPECT_EQ(r3.reused_tokens, 0);
  EXPECT_EQ(r2.tokens, r3.tokens);
}

TEST_F(GenerateTest, GrammarConstrainsARandomModelToTheSchema) {
  Session session(*model_, pool_, {.n_ctx = 512});
  Generator gen(session, *tokenizer_);
  const Json schema = Json::parse(
      R"({"type":"object","properties":{"name":{"type":"string","maxLength":12},)"
      R"("age":{"type":"integer"},"ok":{"type":"boolean"}},"required":["name","age","ok"],)"
      R"("additionalProperties":false})");
  for (uint64_t seed : {1, 2, 3}) {
    GenerationRequest req = request("Answer in JSON:", 300);
    req.sampling.temperature = 1.0f;
    req.sampling.seed = seed;
    req.grammar = Grammar::parse(json_schema_to_grammar(schema));
    const GenerationResult r = gen.generate(req);
    ASSERT_EQ(r.finish, FinishReason::kEndOfGeneration) << r.text;
    const Json j = Json::parse(r.text);
    EXPECT_TRUE(j.at("name").is_string());
    EXPECT_TRUE(j.at("age").is_integer());
    EXPECT_NO_THROW(j.at("ok").as_bool());
  }
}

TEST_F(GenerateTest, RefusesAPromptLongerThanTheContext) {
  Session session(*model_, pool_, {.n_ctx = 16});
  Generator gen(session, *tokenizer_);
  GenerationRequest req = request(std::string(200, 'x') + " y z w v", 4);
  EXPECT_THROW(gen.generate(req), Error);
}

}  // namespace
}  // namespace muse

namespace muse {
namespace {

// Compact thinking on a random-weight model: the block is closed by inserting the cue and the
// close token after exactly the budget, the model then continues from the state that
// insertion implies, and budget forcing holds the close back until the minimum.
TEST_F(GenerateTest, ThinkingBudgetClosesTheBlockAtTheBudget) {
  const int32_t close = 7, cue_a = 11, cue_b = 12;
  GenerationRequest r = request("Let me think about the weather", 14);
  r.thinking.close_token = close;
  r.thinking.starts_inside = true;
  r.thinking.max_tokens = 5;
  r.thinking.cue = {cue_a, cue_b};
  r.sampling.logit_bias[close] = -INFINITY;  // the model never closes it by itself
  Session session(*model_, pool_, {.n_ctx = 256});
  Generator gen(session, *tokenizer_);
  const GenerationResult got = gen.generate(r);
  ASSERT_EQ(got.tokens.size(), 14u);
  EXPECT_EQ(got.thinking_tokens, 5);
  EXPECT_TRUE(got.thinking_cut);
  EXPECT_EQ(std::vector<int32_t>(got.tokens.begin() + 5, got.tokens.begin() + 8), (std::vector<int32_t>{cue_a, cue_b, close}));
  // What follows is what the model says after that exact text: a plain run from the prompt
  // plus the first eight tokens continues the same way.
  GenerationRequest after = request("", 6);
  after.prompt = r.prompt;
  after.prompt.insert(after.prompt.end(), got.tokens.begin(), got.tokens.begin() + 8);
  after.sampling.logit_bias[close] = -INFINITY;
  Session plain_session(*model_, pool_, {.n_ctx = 256});
  Generator plain(plain_session, *tokenizer_);
  EXPECT_EQ(plain.generate(after).tokens, std::vector<int32_t>(got.tokens.begin() + 8, got.tokens.end()));
}

TEST_F(GenerateTest, BudgetForcingHoldsTheCloseBackUntilTheMinimum) {
  const int32_t close = 7;
  GenerationRequest r = request("Let me think about the weather", 8);
  r.thinking.close_token = close;
  r.thinking.starts_inside = true;
  r.thinking.min_tokens = 4;
  r.sampling.logit_bias[close] = 100;  // the model wants to stop thinking at once
  Session session(*model_, pool_, {.n_ctx = 256});
  Generator gen(session, *tokenizer_);
  const GenerationResult got = gen.generate(r);
  ASSERT_GE(got.tokens.size(), 5u);
  for (int i = 0; i < 4; ++i) EXPECT_NE(got.tokens[size_t(i)], close) << i;
  EXPECT_EQ(got.tokens[4], close);
  EXPECT_EQ(got.thinking_tokens, 4);
  EXPECT_FALSE(got.thinking_cut);
}

}  // namespace
}  // namespace muse

namespace muse {
namespace {

TEST_F(GenerateTest, AZeroThinkingBudgetClosesTheBlockAtOnce) {
  const int32_t close = 7;
  GenerationRequest r = request("Let me think about the weather", 4);
  r.thinking.close_token = close;
  r.thinking.starts_inside = true;
  r.thinking.max_tokens = 0;
  Session session(*model_, pool_, {.n_ctx = 256});
  Generator gen(session, *tokenizer_);
  const GenerationResult got = gen.generate(r);
  ASSERT_FALSE(got.tokens.empty());
  EXPECT_EQ(got.tokens[0], close);
  EXPECT_EQ(got.thinking_tokens, 0);
  EXPECT_TRUE(got.thinking_cut);
  r.thinking.close_token = 100000;  // outside the vocabulary: refused, not written out of bounds
  EXPECT_THROW(gen.generate(r), Error);
}

}  // namespace
}  // namespace muse
