// `muse eval`'s engine on a random-weight model: answers scripted by grammars are extracted,
// checked and counted; every mode runs to the end with several questions in flight; modes parse.
#include "evals/eval_runner.h"

#include <gtest/gtest.h>

#include "chat/chat_template.h"
#include "runtime/grammar.h"
#include "runtime/scheduler.h"
#include "testing/test_support.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace muse {
namespace {

TEST(EvalModes, ParseAndRefuse) {
  EXPECT_EQ(parse_eval_mode("no-think").kind, EvalModeKind::kNoThink);
  EXPECT_EQ(parse_eval_mode("think").kind, EvalModeKind::kThink);
  EXPECT_EQ(parse_eval_mode("budget:256").budget, 256);
  EXPECT_FLOAT_EQ(parse_eval_mode("deer").threshold, 0.95f);
  EXPECT_FLOAT_EQ(parse_eval_mode("deer:0.8").threshold, 0.8f);
  EXPECT_EQ(parse_eval_mode("contemplate:4").agents, 4);
  EXPECT_TRUE(parse_eval_mode("contemplate:3:synth").synthesis);
  EXPECT_FALSE(parse_eval_mode("contemplate:3").synthesis);
  for (const char* bad : {"", "thinking", "budget", "budget:-1", "budget:x", "deer:2", "contemplate:0", "think:1", "contemplate:synth"})
    EXPECT_THROW(parse_eval_mode(bad), Error) << bad;
}

class EvalRunnerTest : public testing::SynthModelTest<testing::SmallQwen3> {
 protected:
  void SetUp() override { chat_template_ = ChatTemplate::from_gguf(model_->file()); }
  std::unique_ptr<ChatTemplate> chat_template_;
  ThreadPool pool_{2};
};

TEST_F(EvalRunnerTest, ScriptedAnswersAreCheckedAndCounted) {
  const std::vector<EvalItem> items = generate_arithmetic(4, 11);
  Scheduler s(*model_, *tokenizer_, pool_, testing::small_scheduler_config());
  EvalSettings settings;
  settings.max_tokens = 40;
  settings.concurrency = 3;
  settings.sampling.temperature = 0;
  std::map<std::string, int> seen;
  // The first two answer right, the others wrong (the model writes what the grammar allows).
  settings.configure = [&](const EvalItem& item, Request& r) {
    ++seen[item.id];
    const bool right = item.id == items[0].id || item.id == items[1].id;
    r.grammar = Grammar::parse("root ::= \"Working.\\nAnswer: " + (right ? item.answer : std::string("-1")) + "\"");
  };
  int last_answered = -1;
  const ModeReport r = run_eval(s, *tokenizer_, *chat_template_, items, parse_eval_mode("no-think"), settings,
                                [&](int answered, int total, long long) {
                                  EXPECT_EQ(total, 4);
                                  EXPECT_GE(answered, last_answered);
                                  last_answered = answered;
                                });
  EXPECT_EQ(last_answered, 4);
  EXPECT_EQ(seen.size(), 4u);
  ASSERT_EQ(r.items.size(), 4u);
  EXPECT_DOUBLE_EQ(r.accuracy, 0.5);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(r.items[i].id, items[i].id);
    EXPECT_EQ(r.items[i].given, i < 2 ? items[i].answer : "-1");
    EXPECT_EQ(r.items[i].correct, i < 2);
    EXPECT_GT(r.items[i].total_tokens, 3);
    EXPECT_EQ(r.items[i].reasoning_tokens, 0);
  }
  EXPECT_GT(r.tokens_per_second, 0);
  const std::string table = eval_table({r});
  EXPECT_NE(table.find("| no-think | 50.0% | 0.0 |"), std::string::npos) << table;
  const Json j = Json::parse(eval_json({r}).dump());
  EXPECT_EQ(j.at("modes")[0].at("items").as_array().size(), 4u);
  EXPECT_EQ(eval_plot({r}, "t").series.size(), 1u);
  EXPECT_EQ(s.running(), 0);
}

// Every mode runs every question to the end with several in flight, and leaves the scheduler
// idle; contemplate spends its traces' tokens.
TEST_F(EvalRunnerTest, EveryModeFinishes) {
  const std::vector<EvalItem> items = generate_countdown(3, 5);
  Scheduler s(*model_, *tokenizer_, pool_, testing::small_scheduler_config());
  EvalSettings settings;
  settings.max_tokens = 12;
  settings.concurrency = 2;
  settings.sampling.temperature = 0.8f;
  for (const char* name : {"no-think", "think", "budget:4", "deer:0.5", "contemplate:3", "contemplate:2:synth"}) {
    const EvalMode mode = parse_eval_mode(name);
    check_eval_mode(*tokenizer_, *chat_template_, mode);
    const ModeReport r = run_eval(s, *tokenizer_, *chat_template_, items, mode, settings);
    ASSERT_EQ(r.items.size(), 3u) << name;
    const int per_question = mode.kind != EvalModeKind::kContemplate ? 12 : (mode.agents + mode.synthesis) * 12;
    for (const ItemOutcome& o : r.items) {
      EXPECT_GT(o.total_tokens, 0) << name;
      EXPECT_LE(o.total_tokens, per_question) << name;
    }
    EXPECT_EQ(s.running(), 0) << name;
    EXPECT_EQ(s.waiting(), 0) << name;
  }
}

}  // namespace
}  // namespace muse
