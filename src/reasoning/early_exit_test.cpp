// Early exit (DEER) on a random-weight model: with a threshold no trial can reach, the reply is
// exactly the plain generation (held tokens released in order); with a threshold every trial
// reaches, thinking ends at the first boundary and the trial's greedy answer is the reply.
#include "reasoning/early_exit.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "model/model.h"
#include "model/session.h"
#include "testing/test_support.h"
#include "tokenizer/tokenizer.h"
#include "util/thread_pool.h"

namespace muse {
namespace {

class EarlyExitTest : public testing::SynthModelTest<testing::SmallQwen3> {
 protected:
  static constexpr int32_t kClose = 7;
  static SchedulerConfig config() { return testing::small_scheduler_config(); }
  static Request request() {
    Request r;
    for (int i = 0; i < 30; ++i) r.prompt.push_back((i * 41 + 3) % 690);
    r.max_tokens = 30;
    r.sampling.temperature = 0;
    r.sampling.logit_bias[kClose] = -INFINITY;  // it never stops thinking by itself
    return r;
  }
  std::vector<int32_t> alone(const std::vector<int32_t>& prompt, int max_tokens) {
    SamplingParams s = testing::greedy_sampling();
    s.logit_bias[kClose] = -INFINITY;
    return testing::generate_alone(*model_, *tokenizer_, pool_, prompt, max_tokens, s);
  }
  EarlyExitResult run(const EarlyExitParams& params, std::vector<int32_t>* streamed) {
    Scheduler s(*model_, *tokenizer_, pool_, config());
    bool ended = false;
    EarlyExit exit(s, request(), params, [&](const TokenEvent& e) {
      EXPECT_FALSE(ended);
      if (e.token >= 0) streamed->push_back(e.token);
      ended |= e.done;
    });
    s.run_until_idle();
    EXPECT_TRUE(exit.done());
    EXPECT_TRUE(ended);
    EXPECT_EQ(s.running(), 0);
    return exit.result();
  }
  ThreadPool pool_{2};
};

TEST_F(EarlyExitTest, UnconfidentTrialsLeaveTheReplyUnchanged) {
  const std::vector<int32_t> plain = alone(request().prompt, 30);
  EarlyExitParams p;
  p.close_token = kClose;
  p.boundaries = {plain[3], plain[9], plain[15]};
  p.trial_cue = {11, 12};
  p.trial_tokens = 4;
  p.min_gap = 2;
  p.threshold = 1.5f;  // above any probability
  std::vector<int32_t> streamed;
  const EarlyExitResult r = run(p, &streamed);
  EXPECT_EQ(r.tokens, plain);
  EXPECT_EQ(streamed, plain);
  EXPECT_GE(r.trials, 1);
  EXPECT_FALSE(r.exited);
  EXPECT_EQ(r.thinking_tokens, 30);
}

TEST_F(EarlyExitTest, AConfidentTrialEndsTheThinkingAtItsBoundary) {
  const std::vector<int32_t> plain = alone(request().prompt, 30);
  EarlyExitParams p;
  p.close_token = kClose;
  p.boundaries = {plain[6]};
  p.trial_cue = {11, 12};
  p.trial_tokens = 3;
  p.min_gap = 0;
  p.threshold = 0;  // any trial is confident enough
  const size_t at = size_t(std::find(plain.begin(), plain.end(), plain[6]) - plain.begin());
  std::vector<int32_t> streamed;
  const EarlyExitResult r = run(p, &streamed);
  EXPECT_TRUE(r.exited);
  EXPECT_EQ(r.trials, 1);
  EXPECT_EQ(r.thinking_tokens, int(at) + 1);
  // The reply: the thinking up to the boundary, the close and cue, then the model's greedy
  // answer from exactly there, to the token limit.
  std::vector<int32_t> expected(plain.begin(), plain.begin() + long(at) + 1);
  expected.insert(expected.end(), {kClose, 11, 12});
  std::vector<int32_t> prompt = request().prompt;
  prompt.insert(prompt.end(), expected.begin(), expected.end());
  const std::vector<int32_t> answer = alone(prompt, 30 - int(expected.size()));
  expected.insert(expected.end(), answer.begin(), answer.end());
  EXPECT_EQ(r.tokens, expected);
  EXPECT_EQ(streamed, expected);
  EXPECT_EQ(r.tokens.size(), 30u);
}

TEST_F(EarlyExitTest, BoundaryTokensAreParagraphBreaksAndNewSteps) {
  const std::vector<int32_t> ids = reasoning_boundary_tokens(*tokenizer_);
  for (int32_t id : ids) {
    const std::string piece(tokenizer_->piece(id, false));
    EXPECT_TRUE(piece.find("\n\n") != std::string::npos || piece.find("Wait") != std::string::npos ||
                piece.find("But") != std::string::npos || piece.find("Alternatively") != std::string::npos)
        << piece;
  }
}

}  // namespace
}  // namespace muse
