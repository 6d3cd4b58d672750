// Speculative decoding changes how many tokens a forward pass yields, never which tokens come
// out: every test compares against plain decoding on the same random-weight model.
#include "runtime/speculative.h"

#include <gtest/gtest.h>

#include "model/model.h"
#include "model/session.h"
#include "runtime/generate.h"
#include "testing/test_support.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace muse {
namespace {

TEST(PromptLookup, ProposesWhatFollowedTheLatestLongestMatch) {
  PromptLookupDrafter d(1, 3);
  // "1 2 3" last occurred at the start, followed by 9 2 3.
  EXPECT_EQ(d.propose({1, 2, 3, 9, 2, 3, 4, 1, 2, 3}, 3), (std::vector<int32_t>{9, 2, 3}));
  // The latest of several matches: "5 6" is followed by 8 the second time.
  EXPECT_EQ(d.propose({5, 6, 7, 5, 6, 8, 5, 6}, 2), (std::vector<int32_t>{8, 5}));
  // Shorter n-grams when longer ones never occurred; fewer guesses near the end.
  EXPECT_EQ(d.propose({4, 1, 2, 7, 3, 2}, 8), (std::vector<int32_t>{7, 3, 2}));
  EXPECT_TRUE(d.propose({1, 2, 3, 4}, 4).empty());
  EXPECT_TRUE(d.propose({1}, 4).empty());
  EXPECT_TRUE(d.propose({1, 1}, 0).empty());
}

class SpeculativeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* dims = "embd=128,layers=2,heads=4,kv_heads=2,head_dim=32,ff=256,vocab=700,ctx=512";
    target_ = testing::synth_model(Arch::kLlama, dims, "q8_0").release();
    draft_ = testing::synth_model(Arch::kLlama, dims, "q4_0").release();  // same weights, coarser
    tokenizer_ = Tokenizer::from_gguf(target_->file()).release();
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    delete draft_;
    delete target_;
  }
  GenerationRequest request(const std::string& prompt, int max_tokens,
                            float temperature = 0) const {
    GenerationRequest r;
    r.prompt = tokenizer_->encode(prompt);
    r.max_tokens = max_tokens;
    r.sampling.temperature = temperature;
    r.sampling.seed = 7;
    return r;
  }
  GenerationResult plain(const GenerationRequest& r) {
    Session session(*target_, pool_, {.n_ctx = 256});
    Generator gen(session, *tokenizer_);
    return gen.generate(r);
  }
  static Model *target_, *draft_;
  static Tokenizer* tokenizer_;
  ThreadPool pool_{2};
};
Model* SpeculativeTest::target_ = nullptr;
Model* SpeculativeTest::draft_ = nullptr;
Tokenizer* SpeculativeTest::tokenizer_ = nullptr;

TEST_F(SpeculativeTest, PromptLookupGivesPlainDecodingsTokens) {
  const std::string text = "one two three four one two three four one two three four one two";
  for (float temperature : {0.0f, 0.8f}) {  // greedy, and a seeded sampler's draws
    const GenerationRequest r = request(text, 60, temperature);
    const GenerationResult want = plain(r);
    Session session(*target_, pool_, {.n_ctx = 256});
    Generator gen(session, *tokenizer_);
    PromptLookupDrafter drafter;
    gen.set_drafter(&drafter, 5);
    const GenerationResult got = gen.generate(r);
    EXPECT_EQ(got.tokens, want.tokens) << "temperature " << temperature;
    EXPECT_EQ(got.text, want.text);
    EXPECT_GT(got.drafted_tokens, 0);
    EXPECT_LE(got.accepted_tokens, got.drafted_tokens);
    // The cache holds exactly what was emitted: a second run reuses the prompt and agrees.
    const GenerationResult again = gen.generate(r);
    EXPECT_EQ(again.tokens, want.tokens);
    EXPECT_EQ(again.reused_tokens, int(r.prompt.size()) - 1);
  }
}

TEST_F(SpeculativeTest, DraftModelGuessesAreCheckedAndTheSameModelIsAlwaysRight) {
  const GenerationRequest r = request("The history of the city begins", 40);
  const GenerationResult want = plain(r);
  {
    // The target drafting for itself: every guess is what the target then picks.
    Session session(*target_, pool_, {.n_ctx = 256});
    Generator gen(session, *tokenizer_);
    DraftModelDrafter drafter(*target_, *target_, pool_, 256);
    gen.set_drafter(&drafter, 4);
    const GenerationResult got = gen.generate(r);
    EXPECT_EQ(got.tokens, want.tokens);
    EXPECT_GT(got.drafted_tokens, 0);
    EXPECT_EQ(got.accepted_tokens, got.drafted_tokens);
  }
  for (int max_guesses : {1, 3, 8}) {
    Session session(*target_, pool_, {.n_ctx = 256});
    Generator gen(session, *tokenizer_);
    DraftModelDrafter drafter(*draft_, *target_, pool_, 256);
    gen.set_drafter(&drafter, max_guesses);
    const GenerationResult got = gen.generate(r);
    EXPECT_EQ(got.tokens, want.tokens) << max_guesses << " guesses";
    EXPECT_EQ(got.text, want.text);
  }
}

TEST_F(SpeculativeTest, LimitsHoldWithGuessesInFlight) {
  // Exact token limits, and a context that fills up mid-guess.
  const GenerationRequest r = request("one two one two one two one two", 7);
  Session session(*target_, pool_, {.n_ctx = 256});
  Generator gen(session, *tokenizer_);
  DraftModelDrafter drafter(*target_, *target_, pool_, 256);
  gen.set_drafter(&drafter, 8);
  const GenerationResult got = gen.generate(r);
  EXPECT_EQ(got.tokens, plain(r).tokens);

  const GenerationRequest longer = request("one two one two one two one two", 200);
  Session small(*target_, pool_, {.n_ctx = 40});
  Session small_plain(*target_, pool_, {.n_ctx = 40});
  Generator spec(small, *tokenizer_), base(small_plain, *tokenizer_);
  spec.set_drafter(&drafter, 8);
  const GenerationResult a = spec.generate(longer), b = base.generate(longer);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.finish, b.finish);
}

TEST_F(SpeculativeTest, DraftVocabularyMustMatch) {
  const auto other = testing::synth_model(
      Arch::kLlama, "embd=64,layers=1,heads=2,kv_heads=1,head_dim=32,ff=128,vocab=600,ctx=128",
      "f32");
  EXPECT_THROW(DraftModelDrafter(*other, *target_, pool_, 128), Error);
}

}  // namespace
}  // namespace muse
