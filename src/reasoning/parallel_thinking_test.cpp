// Parallel thinking on a random-weight model: traces share their prompt, stop when their
// confidence drops, and vote by confidence; the vote and the confidence measure on their own.
#include "reasoning/parallel_thinking.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "model/model.h"
#include "testing/test_support.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace muse {
namespace {

TEST(ConfidenceVote, WeighsAnswersByTheirTracesConfidence) {
  std::vector<TraceResult> t(5);
  t[0].answer = "4", t[0].confidence = 1.0f;
  t[1].answer = "5", t[1].confidence = 3.0f;
  t[2].answer = "4", t[2].confidence = 1.5f;
  t[3].answer = "", t[3].confidence = 9.0f;  // stopped or unanswered: no vote
  t[4].answer = "5", t[4].confidence = 0.5f;
  double share = 0;
  EXPECT_EQ(confidence_weighted_vote(t, &share), "5");  // 3.5 against 2.5
  EXPECT_NEAR(share, 3.5 / 6.0, 1e-12);
  t[4].confidence = -0.5f;  // a tie at 2.5 each: the answer seen first
  EXPECT_EQ(confidence_weighted_vote(t), "4");
  EXPECT_EQ(confidence_weighted_vote({}, &share), "");
  EXPECT_EQ(share, 0);
  EXPECT_EQ(answer_after_thinking("<think>hmm</think>\n\n 42 \n"), "42");
  EXPECT_EQ(answer_after_thinking("  just this "), "just this");
}

// The synthesis turn extends the last user message with every answered trace.
TEST(ConfidenceVote, SynthesisMessagesListTheAnswers) {
  std::vector<TraceResult> t(3);
  t[0].answer = "4", t[0].confidence = 2.5f;
  t[2].answer = "5", t[2].confidence = 1.0f;  // t[1] never answered: left out
  const Json messages = Json::parse(R"([{"role":"system","content":"Be brief."},{"role":"user","content":"2+2?"}])");
  const Json m = synthesis_messages(messages, t);
  ASSERT_EQ(m.as_array().size(), 2u);
  EXPECT_EQ(m[0].at("content").as_string(), "Be brief.");
  const std::string& text = m[1].at("content").as_string();
  EXPECT_EQ(text.rfind("2+2?", 0), 0u);
  EXPECT_NE(text.find("Attempt 1 (confidence 2.50):\n4"), std::string::npos) << text;
  EXPECT_NE(text.find("Attempt 2 (confidence 1.00):\n5"), std::string::npos);
  EXPECT_EQ(text.find("Attempt 3"), std::string::npos);
  EXPECT_THROW(synthesis_messages(Json::parse(R"([{"role":"system","content":"x"}])"), t), Error);
}

// -mean log p of the top k, against float64 by hand.
TEST(ConfidenceVote, TokenConfidenceIsMinusTheMeanTopKLogProbability) {
  const std::vector<float> logits = {2.0f, -1.0f, 5.0f, 0.5f, 5.0f, -3.0f};
  double z = 0;
  for (float x : logits) z += std::exp(double(x));
  const double want = -((5.0 - std::log(z)) + (5.0 - std::log(z)) + (2.0 - std::log(z))) / 3;
  EXPECT_NEAR(token_confidence(logits.data(), int(logits.size()), 3), want, 1e-5);
  // Peaked beats flat.
  const std::vector<float> peaked = {10, 0, 0, 0}, flat = {1, 1, 1, 1};
  EXPECT_GT(token_confidence(peaked.data(), 4, 2), token_confidence(flat.data(), 4, 2));
}

class ParallelThinkingTest : public testing::SynthModelTest<testing::SmallQwen3> {
 protected:
  static SchedulerConfig config() { return testing::small_scheduler_config(); }
  static std::vector<int32_t> prompt() { return testing::fixed_prompt(); }
  ThreadPool pool_{2};
};

TEST_F(ParallelThinkingTest, TracesShareThePromptDifferAndVote) {
  Scheduler s(*model_, *tokenizer_, pool_, config());
  ParallelThinkingParams p;
  p.traces = 4;
  p.max_tokens = 24;
  p.sampling.temperature = 0.9f;
  p.sampling.seed = 3;
  p.window = 4;
  p.warmup = 4;
  p.extract_answer = [](const std::string& text) {
    return text.empty() ? std::string() : text.substr(0, 1);
  };
  const ParallelThinkingResult r = think_in_parallel(s, *tokenizer_, prompt(), p);
  ASSERT_EQ(r.traces.size(), 4u);
  std::set<std::vector<int32_t>> distinct;
  int shared = 0, total = 0;
  for (const TraceResult& t : r.traces) {
    EXPECT_FALSE(t.stopped_early);
    EXPECT_GT(t.confidence, 0);
    EXPECT_TRUE(std::isfinite(t.confidence));
    distinct.insert(t.tokens);
    shared += t.cached_prompt_tokens >= int(prompt().size()) - 8 ? 1 : 0;  // all but its last block
    total += int(t.tokens.size());
  }
  EXPECT_GE(distinct.size(), 2u);  // different seeds, different traces
  EXPECT_GE(shared, 3);            // the prompt was computed once, then read from the cache
  EXPECT_EQ(r.generated_tokens, total);
  double share = 0;
  EXPECT_EQ(r.answer, confidence_weighted_vote(r.traces, &share));
  EXPECT_DOUBLE_EQ(r.answer_weight, share);
  EXPECT_EQ(s.running(), 0);
}

TEST_F(ParallelThinkingTest, LowConfidenceTracesStopAfterTheWarmup) {
  Scheduler s(*model_, *tokenizer_, pool_, config());
  ParallelThinkingParams p;
  p.traces = 3;
  p.max_tokens = 40;
  p.sampling.temperature = 0.9f;
  p.window = 4;
  p.warmup = 10;
  p.stop_below = 1e9f;  // nothing is that confident: every trace stops as soon as it may
  const ParallelThinkingResult r = think_in_parallel(s, *tokenizer_, prompt(), p);
  for (const TraceResult& t : r.traces) {
    EXPECT_TRUE(t.stopped_early);
    EXPECT_EQ(t.tokens.size(), 10u);
    EXPECT_TRUE(t.answer.empty());
  }
  EXPECT_EQ(r.answer, "");
  EXPECT_EQ(r.generated_tokens, 30);
}

// Several problems at once on one scheduler: each gives what it gives alone, and dropping one
// part-way cancels its traces without disturbing the others.
TEST_F(ParallelThinkingTest, SeveralRunTogetherAndOneCanBeDropped) {
  ParallelThinkingParams p;
  p.traces = 2;
  p.max_tokens = 16;
  p.sampling.temperature = 0.9f;
  p.sampling.seed = 5;
  std::vector<int32_t> other = prompt();
  other[3] = 77;
  Scheduler alone(*model_, *tokenizer_, pool_, config());
  const ParallelThinkingResult a_alone = think_in_parallel(alone, *tokenizer_, prompt(), p);
  const ParallelThinkingResult b_alone = think_in_parallel(alone, *tokenizer_, other, p);

  Scheduler s(*model_, *tokenizer_, pool_, config());
  ParallelThinking a(s, *tokenizer_, prompt(), p);
  ParallelThinking b(s, *tokenizer_, other, p);
  {
    ParallelThinking dropped(s, *tokenizer_, other, p);
    for (int i = 0; i < 3; ++i) s.step();
    EXPECT_FALSE(dropped.done());
  }
  s.run_until_idle();
  ASSERT_TRUE(a.done() && b.done());
  const ParallelThinkingResult ra = a.result(), rb = b.result();
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(ra.traces[size_t(i)].tokens, a_alone.traces[size_t(i)].tokens);
    EXPECT_EQ(rb.traces[size_t(i)].tokens, b_alone.traces[size_t(i)].tokens);
    EXPECT_TRUE(ra.traces[size_t(i)].finished);
  }
  EXPECT_EQ(s.running(), 0);
}

}  // namespace
}  // namespace muse
