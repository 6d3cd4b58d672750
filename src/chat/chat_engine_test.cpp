// Chat turns end to end on a random-weight model whose output a grammar forces into a known
// shape: reasoning is split off and counted in tokens, tool calls come back OpenAI-style, and
// the history a second turn shares with the first stays cached.
#include "chat/chat_engine.h"

#include <gtest/gtest.h>

#include <cmath>

#include "model/model.h"
#include "model/session.h"
#include "synth/synth.h"
#include "testing/test_support.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace muse {
namespace {

class ChatEngineTest : public testing::SynthModelTest<testing::SmallQwen3> {
 protected:
  static void SetUpTestSuite() {
    SynthModelTest::SetUpTestSuite();
    template_ = ChatTemplate::from_gguf(model_->file());
  }
  static void TearDownTestSuite() {
    template_.reset();
    SynthModelTest::TearDownTestSuite();
  }
  static ChatRequest ask(const std::string& text, const std::string& grammar) {
    ChatRequest r;
    r.messages = Json(Json::Array{Json(Json::Object{{"role", Json("user")}, {"content", Json(text)}})});
    r.generation.max_tokens = 200;
    r.generation.sampling.seed = 5;
    r.generation.grammar = Grammar::parse(grammar);
    return r;
  }
  static inline std::unique_ptr<ChatTemplate> template_;
  ThreadPool pool_{2};
};

TEST_F(ChatEngineTest, SplitsReasoningAndCountsItsTokens) {
  Session session(*model_, pool_, {.n_ctx = 1024});
  ChatEngine engine(*tokenizer_, *template_, session);
  EXPECT_EQ(engine.format().reasoning, ReasoningSyntax::kThink);
  std::string streamed_reasoning, streamed_content;
  const ChatReply reply = engine.reply(
      ask("What is 2+2?", R"(root ::= "<think>" [a-z ]{4,30} "</think>" "\n\n" [a-z ]{2,20})"),
      [&](const OutputDelta& d) {
        streamed_reasoning += d.reasoning;
        streamed_content += d.content;
        return true;
      });
  ASSERT_EQ(reply.generation.finish, FinishReason::kEndOfGeneration);
  EXPECT_FALSE(reply.reasoning.empty());
  EXPECT_FALSE(reply.content.empty());
  EXPECT_EQ(reply.reasoning, streamed_reasoning);
  EXPECT_EQ(reply.content, streamed_content);
  EXPECT_EQ(reply.content.find("think"), std::string::npos);
  // Reasoning tokens: everything up to the token that completes "</think>" (one token or, as a
  // random model may well choose, several).
  int expected = 0;
  std::string text;
  for (int32_t t : reply.generation.tokens) {
    ++expected;
    text += tokenizer_->piece(t);
    if (text.find("</think>") != std::string::npos) break;
  }
  EXPECT_EQ(reply.reasoning_tokens, expected);
  EXPECT_LT(reply.reasoning_tokens, int(reply.generation.tokens.size()));
  // Reasoning and answer split the generated tokens and the decoding time between them.
  EXPECT_EQ(reply.reasoning_tokens + reply.answer_tokens, int(reply.generation.tokens.size()));
  EXPECT_GT(reply.reasoning_seconds, 0);
  EXPECT_GE(reply.answer_seconds, 0);
  EXPECT_NEAR(reply.reasoning_seconds + reply.answer_seconds, reply.generation.decode_seconds, 1e-9);
  const Json message = reply.message();
  EXPECT_EQ(message.at("role").as_string(), "assistant");
  EXPECT_EQ(message.at("reasoning_content").as_string(), reply.reasoning);
}

// Stop strings end the reply: neither the stop string nor what follows reaches the content.
TEST_F(ChatEngineTest, StopStringsAreNotInTheReply) {
  Session session(*model_, pool_, {.n_ctx = 1024});
  ChatEngine engine(*tokenizer_, *template_, session);
  ChatRequest request = ask("Count", R"(root ::= "<think>\n\n</think>\n\n" [a-z]{2,6} " STOP " [a-z]{2,6})");
  request.generation.stop = {"STOP"};
  const ChatReply reply = engine.reply(request);
  EXPECT_EQ(reply.generation.finish, FinishReason::kStopString);
  EXPECT_EQ(reply.content.find("STOP"), std::string::npos) << reply.content;
  EXPECT_FALSE(reply.content.empty());
}

TEST_F(ChatEngineTest, ParsesToolCallsAndKeepsHistoryCached) {
  Session session(*model_, pool_, {.n_ctx = 1024});
  ChatEngine engine(*tokenizer_, *template_, session);
  ChatRequest request = ask("Weather in Paris?",
                            R"(root ::= "<think>\n\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", )"
                            R"(\"arguments\": {\"city\": \"" [A-Z] [a-z]{2,8} "\"}}\n</tool_call>")");
  request.enable_thinking = false;
  request.tools = Json::parse(
      R"([{"type":"function","function":{"name":"get_weather","parameters":{"type":"object",)"
      R"("properties":{"city":{"type":"string"}},"required":["city"]}}}])");
  const ChatReply reply = engine.reply(request);
  ASSERT_EQ(reply.tool_calls.size(), 1u) << reply.content;
  EXPECT_EQ(reply.tool_calls[0].name, "get_weather");
  EXPECT_TRUE(Json::parse(reply.tool_calls[0].arguments).at("city").is_string());
  EXPECT_EQ(reply.tool_calls[0].id.rfind("call_", 0), 0u);
  EXPECT_EQ(reply.content, "");

  // The second turn: history + tool result. The rendered history is a prefix of the new prompt
  // up to the assistant turn, so most of it is reused.
  Json::Array messages = request.messages.as_array();
  messages.push_back(reply.message());
  messages.push_back(Json(Json::Object{{"role", Json("tool")}, {"content", Json("{\"temp\": 21}")}}));
  request.messages = Json(std::move(messages));
  request.generation.grammar = Grammar::parse(R"(root ::= [a-z ]{1,10})");
  const ChatReply second = engine.reply(request);
  EXPECT_GT(second.generation.reused_tokens, reply.generation.prompt_tokens / 2);
}

}  // namespace
}  // namespace muse

namespace muse {
namespace {

// A thinking budget through the chat template: the model opens its reasoning, is cut off
// after the budget with Qwen3's cue and the close, and the reply counts the block in tokens.
TEST_F(ChatEngineTest, ThinkingBudgetCutsTheReasoningAtTheBudget) {
  Session session(*model_, pool_, {.n_ctx = 1024});
  ChatEngine engine(*tokenizer_, *template_, session);
  ChatRequest r;
  r.messages = Json(Json::Array{Json(Json::Object{{"role", Json("user")}, {"content", Json("What is 2+2?")}})});
  r.generation.max_tokens = 200;
  r.generation.sampling.temperature = 0;
  r.thinking_budget = 6;
  const auto open = tokenizer_->encode("<think>", {.add_special = false, .parse_special = true});
  const auto close = tokenizer_->encode("</think>", {.add_special = false, .parse_special = true});
  if (open.size() != 1 || close.size() != 1) {
    EXPECT_THROW(engine.reply(r), Error);  // the budget needs single-token tags
    return;
  }
  r.generation.sampling.logit_bias[open[0]] = 100;       // open the block at once
  r.generation.sampling.logit_bias[close[0]] = -INFINITY;  // and never close it alone
  const ChatReply reply = engine.reply(r);
  EXPECT_TRUE(reply.generation.thinking_cut);
  EXPECT_GE(reply.generation.thinking_tokens, 6);
  EXPECT_NE(reply.reasoning.find("I have to give the solution based on the thinking directly now."), std::string::npos);
  // The block: the opening tag, six thinking tokens, the cue and the close. (This model, told
  // to open blocks, opens another right after; a real one answers.)
  const int cue = int(tokenizer_->encode("\n\nConsidering the limited time by the user, I have to give the solution based "
                                         "on the thinking directly now.\n", {.add_special = false, .parse_special = false}).size());
  EXPECT_EQ(reply.reasoning_tokens, 1 + 6 + cue + 1);
  EXPECT_LT(reply.reasoning_tokens, int(reply.generation.tokens.size()));
}

}  // namespace
}  // namespace muse
