// Contemplating mode on a random-weight model, its output scripted by per-agent grammars: spawn,
// fork, join and resume; width and depth limits; a failed or cancelled sub-agent never hangs its
// parent; token and time limits stop everything. The tool protocol on scripted text.
#include "reasoning/contemplation.h"

#include <gtest/gtest.h>

#include <map>

#include "chat/chat_template.h"
#include "model/model.h"
#include "runtime/grammar.h"
#include "testing/test_support.h"
#include "tokenizer/tokenizer.h"
#include "util/thread_pool.h"

namespace muse {
namespace {

class ContemplationTest : public testing::SynthModelTest<testing::SmallQwen3> {
 protected:
  static SchedulerConfig config() { return testing::small_scheduler_config(); }
  static std::vector<int32_t> prompt() { return testing::fixed_prompt(); }
  static std::shared_ptr<const Grammar> literal(const std::string& text) {
    return Grammar::parse("root ::= \"" + text + "\"");
  }
  // Scripts: the root's segments in order, and each task's reply.
  static ContemplationParams scripted(std::vector<std::string> root, std::map<std::string, std::string> replies) {
    ContemplationParams p;
    p.sampling.temperature = 0;
    p.max_tokens_per_agent = 200;
    p.configure = [root = std::move(root), replies = std::move(replies)](const AgentView& a, Request& r) {
      if (a.parent < 0) {
        if (size_t(a.segments) < root.size()) r.grammar = literal(root[size_t(a.segments)]);
      } else if (auto it = replies.find(a.task); it != replies.end()) {
        r.grammar = literal(it->second);
      }
    };
    return p;
  }
  ThreadPool pool_{2};
};

TEST_F(ContemplationTest, MarkupSpawnsForksJoinsAndResumes) {
  Scheduler s(*model_, *tokenizer_, pool_, config());
  MarkupProtocol protocol(*tokenizer_);
  const ContemplationParams params = scripted({"Plan: <spawn>alpha</spawn><spawn>beta</spawn><join>", " so 7"},
                                              {{"alpha", "A1"}, {"beta", "B2"}});
  int steps = 0;
  const ContemplationResult r = contemplate(s, *tokenizer_, protocol, prompt(), params,
                                            [&](const std::vector<AgentView>&) { ++steps; });
  ASSERT_EQ(r.agents.size(), 3u);
  EXPECT_EQ(r.agents[0].status, AgentStatus::kDone);
  EXPECT_EQ(r.agents[0].children, (std::vector<int>{1, 2}));
  EXPECT_EQ(r.agents[1].task, "alpha");
  EXPECT_EQ(r.agents[1].result, "A1");
  EXPECT_EQ(r.agents[2].result, "B2");
  EXPECT_EQ(r.agents[1].depth, 1);
  EXPECT_NE(r.agents[0].text.find("<join><result>A1</result><result>B2</result> so 7"), std::string::npos)
      << r.agents[0].text;
  EXPECT_EQ(r.answer, "so 7");
  EXPECT_EQ(r.agents[0].segments, 2);
  // Sub-agents are forks: everything before their task came from the parent's blocks, and the
  // parent resumed from its own held sequence.
  for (int i = 1; i <= 2; ++i) EXPECT_GE(r.agents[size_t(i)].cached_tokens, 40 + 10) << i;
  EXPECT_GE(r.agents[0].cached_tokens, 40 + 10);
  EXPECT_TRUE(r.limit.empty());
  EXPECT_GT(steps, 0);
  EXPECT_EQ(s.running(), 0);
  EXPECT_EQ(s.waiting(), 0);
}

TEST_F(ContemplationTest, NestedSubAgentsJoinBottomUp) {
  Scheduler s(*model_, *tokenizer_, pool_, config());
  MarkupProtocol protocol(*tokenizer_);
  ContemplationParams params = scripted({"<spawn>outer</spawn><join>", "done"}, {});
  params.limits.max_depth = 2;
  params.configure = [base = params.configure](const AgentView& a, Request& r) {
    base(a, r);
    if (a.task == "outer") r.grammar = literal(a.segments == 0 ? "<spawn>inner</spawn><join>" : "outer ok");
    if (a.task == "inner") r.grammar = literal("inner ok");
  };
  const ContemplationResult r = contemplate(s, *tokenizer_, protocol, prompt(), params);
  ASSERT_EQ(r.agents.size(), 3u);
  EXPECT_EQ(r.agents[2].depth, 2);
  EXPECT_EQ(r.agents[2].result, "inner ok");
  EXPECT_EQ(r.agents[1].result, "outer ok");
  EXPECT_NE(r.agents[0].text.find("<result>outer ok</result>"), std::string::npos);
  EXPECT_EQ(r.answer, "done");
}

TEST_F(ContemplationTest, WidthAndDepthLimitsAnswerWithANote) {
  Scheduler s(*model_, *tokenizer_, pool_, config());
  MarkupProtocol protocol(*tokenizer_);
  ContemplationParams params = scripted({"<spawn>a</spawn><spawn>b</spawn><join>", "end"}, {{"a", "x"}, {"b", "y"}});
  params.limits.max_width = 1;
  ContemplationResult r = contemplate(s, *tokenizer_, protocol, prompt(), params);
  ASSERT_EQ(r.agents.size(), 2u);  // "b" was not run
  EXPECT_NE(r.agents[0].text.find("<result>x</result><result>[not run: at most 1 sub-agents per join]</result>"),
            std::string::npos)
      << r.agents[0].text;
  params.limits.max_depth = 0;  // no sub-agents at all
  r = contemplate(s, *tokenizer_, protocol, prompt(), params);
  ASSERT_EQ(r.agents.size(), 1u);
  EXPECT_NE(r.agents[0].text.find("[not run: no sub-agents at this depth]"), std::string::npos);
  EXPECT_EQ(r.answer, "end");
}

TEST_F(ContemplationTest, AFailedSubAgentDoesNotHangItsParent) {
  Scheduler s(*model_, *tokenizer_, pool_, config());
  MarkupProtocol protocol(*tokenizer_);
  ContemplationParams params = scripted({"<spawn>ok</spawn><spawn>bad</spawn><join>", "fine"}, {{"ok", "good"}});
  params.configure = [base = params.configure](const AgentView& a, Request& r) {
    base(a, r);
    if (a.task == "bad") r.sampling.logit_bias[1 << 20] = 1;  // refused at submit
  };
  const ContemplationResult r = contemplate(s, *tokenizer_, protocol, prompt(), params);
  ASSERT_EQ(r.agents.size(), 3u);
  EXPECT_EQ(r.agents[2].status, AgentStatus::kFailed);
  EXPECT_FALSE(r.agents[2].note.empty());
  EXPECT_EQ(r.agents[2].result, "none");  // the markup's no-answer word, what the model reads
  EXPECT_NE(r.agents[0].text.find("<result>good</result><result>none</result>fine"), std::string::npos)
      << r.agents[0].text;
  EXPECT_EQ(r.agents[1].result, "good");
  EXPECT_EQ(r.answer, "fine");
  // Markup without a no-answer word returns a note saying why.
  SpawnMarkup noted;
  noted.no_answer = "";
  MarkupProtocol noting(*tokenizer_, noted);
  const ContemplationResult n = contemplate(s, *tokenizer_, noting, prompt(), params);
  EXPECT_EQ(n.agents[2].result.rfind("[sub-agent failed: ", 0), 0u) << n.agents[2].result;
}

// A sub-agent stopped mid-thought by its token limit returns the no-answer result, not its
// unfinished reasoning.
TEST_F(ContemplationTest, ASubAgentStoppedWhileThinkingReturnsNoAnswer) {
  Scheduler s(*model_, *tokenizer_, pool_, config());
  MarkupProtocol protocol(*tokenizer_);
  ContemplationParams params = scripted({"<spawn>deep</spawn><join>", "done"}, {});
  // The grammar also lets "<think>" be spelled in pieces; which one a random-weight model picks
  // depends on the kernels' rounding (AVX2 picked "<"), so the tag token is favoured.
  const int32_t think = tokenizer_->find("<think>");
  params.configure = [base = params.configure, think](const AgentView& a, Request& r) {
    base(a, r);
    if (a.parent >= 0) {
      r.grammar = literal("<think>step step step step step step step step");
      r.sampling.logit_bias[think] = 100;
      r.max_tokens = 6;  // stops it mid-thought
    }
  };
  params.thinking.open_token = think;
  params.thinking.close_token = tokenizer_->find("</think>");
  ASSERT_GE(params.thinking.open_token, 0);
  ASSERT_GE(params.thinking.close_token, 0);
  const ContemplationResult r = contemplate(s, *tokenizer_, protocol, prompt(), params);
  ASSERT_EQ(r.agents.size(), 2u);
  EXPECT_EQ(r.agents[1].status, AgentStatus::kDone);
  EXPECT_EQ(r.agents[1].result, "none");
  EXPECT_NE(r.agents[0].text.find("<result>none</result>done"), std::string::npos) << r.agents[0].text;
  EXPECT_EQ(r.answer, "done");
}

TEST_F(ContemplationTest, TokenAndTimeLimitsStopEveryAgent) {
  Scheduler s(*model_, *tokenizer_, pool_, config());
  MarkupProtocol protocol(*tokenizer_);
  // The sub-agents ramble (no script, no end): the total limit cancels them and the root.
  ContemplationParams params = scripted({"<spawn>a</spawn><spawn>b</spawn><join>", "never"}, {});
  params.sampling.logit_bias[tokenizer_->eos()] = -INFINITY;
  for (int32_t id : tokenizer_->eog_ids()) params.sampling.logit_bias[id] = -INFINITY;
  params.limits.max_total_tokens = 60;
  ContemplationResult r = contemplate(s, *tokenizer_, protocol, prompt(), params);
  EXPECT_EQ(r.limit, "total token limit (60)");
  ASSERT_EQ(r.agents.size(), 3u);
  for (const AgentView& a : r.agents) EXPECT_EQ(a.status, AgentStatus::kCancelled) << a.index;
  EXPECT_EQ(r.answer, "");
  EXPECT_LE(r.total_tokens, 60 + 3);  // at most one step past the limit
  EXPECT_EQ(s.running(), 0);
  params.limits.max_total_tokens = 100000;
  params.limits.max_seconds = 1e-9;
  r = contemplate(s, *tokenizer_, protocol, prompt(), params);
  EXPECT_EQ(r.limit, "time limit");
  EXPECT_EQ(s.running(), 0);
  EXPECT_EQ(s.waiting(), 0);
}

// The spawn_agent tool on scripted model text: calls become tasks, each sub-agent continues the
// conversation with its task as the next user turn, and results come back as tool messages.
TEST_F(ContemplationTest, ToolProtocolTurnsCallsIntoTasksAndResultsIntoToolMessages) {
  const auto chat_template = ChatTemplate::from_gguf(model_->file());
  Json messages = Json::parse(R"([{"role":"user","content":"What is (2+3)*(4+5)?"}])");
  Json tools = Json(Json::Array{spawn_agent_tool()});
  ToolProtocol protocol(*tokenizer_, *chat_template, messages, tools, /*enable_thinking=*/true);
  const std::vector<int32_t> root = protocol.root_prompt();
  EXPECT_NE(tokenizer_->decode(root, true).find("spawn_agent"), std::string::npos);
  AgentView parent;
  const std::string said =
      "<think>two parts</think>Splitting.<tool_call>\n{\"name\": \"spawn_agent\", \"arguments\": {\"task\": \"2+3\"}}\n"
      "</tool_call><tool_call>\n{\"name\": \"spawn_agent\", \"arguments\": {\"task\": \"4+5\"}}\n</tool_call>";
  EXPECT_FALSE(protocol.spawn_request(parent, said, /*ended=*/false));  // only at the end of the turn
  const auto tasks = protocol.spawn_request(parent, said, true);
  ASSERT_TRUE(tasks);
  EXPECT_EQ(*tasks, (std::vector<std::string>{"2+3", "4+5"}));
  AgentView child;
  child.index = 1;
  child.parent = 0;
  child.task = "2+3";
  const Continuation c = protocol.child_start(parent, child);
  EXPECT_FALSE(c.fork);
  const std::string child_prompt = tokenizer_->decode(c.tokens, true);
  EXPECT_EQ(child_prompt.rfind(tokenizer_->decode(root, true).substr(0, 60), 0), 0u);  // the same conversation
  EXPECT_NE(child_prompt.find("Your task: 2+3"), std::string::npos);
  const Continuation back = protocol.parent_resume(parent, {"5", "9"});
  const std::string resumed = tokenizer_->decode(back.tokens, true);
  EXPECT_NE(resumed.find("<tool_response>\n5\n</tool_response>"), std::string::npos) << resumed;
  EXPECT_NE(resumed.find("<tool_response>\n9\n</tool_response>"), std::string::npos);
  // A reply without spawn calls is the agent's answer.
  AgentView sub;
  sub.index = 1;
  EXPECT_FALSE(protocol.spawn_request(sub, "<think>easy</think>5", true));
  EXPECT_EQ(protocol.answer(sub), "5");
}

}  // namespace
}  // namespace muse

namespace muse {
namespace {

// With the scheduler stepping on its own thread (as in the server), the run waits for its
// events instead of stepping, gives the same result, and a stop request cancels every agent.
TEST_F(ContemplationTest, RunsOnASchedulerThatStepsItself) {
  Scheduler s(*model_, *tokenizer_, pool_, config());
  MarkupProtocol protocol(*tokenizer_);
  const ContemplationParams params = scripted({"<spawn>alpha</spawn><spawn>beta</spawn><join>", " so 7"},
                                              {{"alpha", "A1"}, {"beta", "B2"}});
  s.start();
  const ContemplationResult r = contemplate(s, *tokenizer_, protocol, prompt(), params);
  EXPECT_EQ(r.answer, "so 7");
  EXPECT_EQ(r.agents[1].result, "A1");
  ContemplationParams stopped = scripted({"<spawn>a</spawn><join>", "x"}, {});
  stopped.sampling.logit_bias[tokenizer_->eos()] = -INFINITY;
  for (int32_t id : tokenizer_->eog_ids()) stopped.sampling.logit_bias[id] = -INFINITY;
  // Stopped while its sub-agent runs (it has 200 tokens to go, with its end banned).
  bool spawned = false;
  stopped.should_stop = [&] { return spawned; };
  const ContemplationResult c = contemplate(s, *tokenizer_, protocol, prompt(), stopped,
                                            [&](const std::vector<AgentView>& agents) { spawned = agents.size() > 1; });
  EXPECT_EQ(c.limit, "cancelled");
  EXPECT_EQ(c.answer, "");
  s.stop();
  EXPECT_EQ(s.running(), 0);
}

}  // namespace
}  // namespace muse
