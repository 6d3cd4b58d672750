#include "chat/output_parser.h"

#include <gtest/gtest.h>

#include <random>
#include <set>

namespace muse {
namespace {

OutputFormat format(ToolCallSyntax tools, ReasoningSyntax reasoning = ReasoningSyntax::kNone,
                    bool starts_in_reasoning = false) {
  OutputFormat f;
  f.tool_calls = tools;
  f.reasoning = reasoning;
  f.starts_in_reasoning = starts_in_reasoning;
  return f;
}

// Parses text in one piece and one byte at a time; both must agree exactly.
OutputDelta parse(const OutputFormat& f, const std::string& text) {
  OutputParser whole(f, 99);
  whole.feed(text);
  whole.finish();
  OutputParser bytes(f, 99);
  for (char c : text) bytes.feed(std::string_view(&c, 1));
  bytes.finish();
  const OutputDelta& a = whole.total();
  const OutputDelta& b = bytes.total();
  EXPECT_EQ(a.reasoning, b.reasoning) << text;
  EXPECT_EQ(a.content, b.content) << text;
  EXPECT_EQ(a.tool_calls.size(), b.tool_calls.size()) << text;
  for (size_t i = 0; i < std::min(a.tool_calls.size(), b.tool_calls.size()); ++i) {
    EXPECT_EQ(a.tool_calls[i].id, b.tool_calls[i].id);
    EXPECT_EQ(a.tool_calls[i].name, b.tool_calls[i].name);
    EXPECT_EQ(a.tool_calls[i].arguments, b.tool_calls[i].arguments);
  }
  return a;
}

void expect_call(const OutputDelta& d, size_t i, const std::string& name, const std::string& args) {
  ASSERT_LT(i, d.tool_calls.size());
  EXPECT_EQ(d.tool_calls[i].name, name);
  EXPECT_EQ(d.tool_calls[i].arguments, args);
}

TEST(OutputParserTest, PlainTextPassesThrough) {
  const OutputDelta d = parse(format(ToolCallSyntax::kNone), "Hello <b>world</b>\n");
  EXPECT_EQ(d.content, "Hello <b>world</b>");
  EXPECT_EQ(d.reasoning, "");
  EXPECT_TRUE(d.tool_calls.empty());
}

TEST(OutputParserTest, HermesToolCalls) {
  const auto f = format(ToolCallSyntax::kHermes);
  OutputDelta d = parse(f,
                        "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
                        "{\"city\": \"Paris\"}}\n</tool_call>");
  EXPECT_EQ(d.content, "Let me check.");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  expect_call(d, 0, "get_weather", R"({"city":"Paris"})");
  EXPECT_EQ(d.tool_calls[0].id.rfind("call_", 0), 0u);
  EXPECT_EQ(d.tool_calls[0].id.size(), 29u);

  d = parse(f,
            "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>\n<tool_call>\n{\"name\": "
            "\"b\", \"arguments\": {\"x\": [1, \"</tool_call>\"]}}\n</tool_call>\nDone.");
  // A closing tag inside a JSON string ends the call too early: that call is then malformed.
  ASSERT_EQ(d.tool_calls.size(), 1u);
  expect_call(d, 0, "a", "{}");

  d = parse(f,
            "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>\n<tool_call>\n{\"name\": "
            "\"b\", \"arguments\": {\"x\": [1, 2]}}\n</tool_call>\nDone.");
  ASSERT_EQ(d.tool_calls.size(), 2u);
  expect_call(d, 1, "b", R"({"x":[1,2]})");
  EXPECT_NE(d.tool_calls[0].id, d.tool_calls[1].id);
  EXPECT_EQ(d.content, "Done.");

  // Generation stopped before the closing tag: a complete call still counts.
  d = parse(f, "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"q\": \"x\"}}\n");
  expect_call(d, 0, "f", R"({"q":"x"})");
}

TEST(OutputParserTest, MalformedToolCallsStayText) {
  const auto f = format(ToolCallSyntax::kHermes);
  OutputDelta d = parse(f, "A <tool_call>{not json}</tool_call> B");
  EXPECT_TRUE(d.tool_calls.empty());
  EXPECT_EQ(d.content, "A <tool_call>{not json}</tool_call> B");
  d = parse(f, "<tool_call>{\"arguments\": {}}</tool_call>");  // no name
  EXPECT_TRUE(d.tool_calls.empty());
  EXPECT_EQ(d.content, "<tool_call>{\"arguments\": {}}</tool_call>");
  d = parse(f, "text <tool_call>{\"name\": \"f\", \"argu");
  EXPECT_TRUE(d.tool_calls.empty());
  EXPECT_EQ(d.content, "text <tool_call>{\"name\": \"f\", \"argu");
}

TEST(OutputParserTest, PartialMarkersAreHeldBack) {
  OutputParser p(format(ToolCallSyntax::kHermes, ReasoningSyntax::kThink), 1);
  OutputDelta d = p.feed("<thi");
  EXPECT_TRUE(d.empty());
  d = p.feed("nk>Plan");
  EXPECT_EQ(d.reasoning, "Plan");
  d = p.feed(" more</th");
  EXPECT_EQ(d.reasoning, " more");
  d = p.feed("ink>\n\nHello <tool_");
  EXPECT_EQ(d.reasoning, "");
  EXPECT_EQ(d.content, "Hello");  // the space waits: it may end the text before a call
  d = p.feed("call>{\"name\": \"f\", \"arguments\": {}}</tool_call>");
  EXPECT_EQ(d.content, "");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  d = p.feed(" <tool");
  EXPECT_TRUE(d.empty());
  d = p.feed("box> ok");
  EXPECT_EQ(d.content, "<toolbox> ok");
  EXPECT_TRUE(p.finish().empty());
  EXPECT_EQ(p.total().content, "Hello<toolbox> ok");
}

TEST(OutputParserTest, ThinkTags) {
  const auto f = format(ToolCallSyntax::kHermes, ReasoningSyntax::kThink);
  OutputDelta d = parse(f,
                        "<think>\nI should call it.\n</think>\n\n<tool_call>\n{\"name\": \"f\", "
                        "\"arguments\": {\"a\": 1}}\n</tool_call>");
  EXPECT_EQ(d.reasoning, "I should call it.");
  EXPECT_EQ(d.content, "");
  expect_call(d, 0, "f", R"({"a":1})");

  d = parse(f, "<think></think>\n\nHello");  // empty reasoning
  EXPECT_EQ(d.reasoning, "");
  EXPECT_EQ(d.content, "Hello");
  d = parse(f, "<think>\nstill thinking when the limit hit");  // never closed
  EXPECT_EQ(d.reasoning, "still thinking when the limit hit");
  EXPECT_EQ(d.content, "");
  d = parse(f, "Answer first <think>not reasoning</think>");  // only at the start
  EXPECT_EQ(d.reasoning, "");
  EXPECT_EQ(d.content, "Answer first <think>not reasoning</think>");
  d = parse(f, "<thinking>x");
  EXPECT_EQ(d.content, "<thinking>x");
}

TEST(OutputParserTest, ReasoningOpenedByThePrompt) {
  const auto f = format(ToolCallSyntax::kNone, ReasoningSyntax::kThink, true);
  OutputDelta d = parse(f, "\nLet me think.\n</think>\n\nThe answer is 4.");
  EXPECT_EQ(d.reasoning, "Let me think.");
  EXPECT_EQ(d.content, "The answer is 4.");
  d = parse(f, "<think>\nrepeated tag</think>ok");  // the model opened it again anyway
  EXPECT_EQ(d.reasoning, "repeated tag");
  EXPECT_EQ(d.content, "ok");
  d = parse(f, "cut off");
  EXPECT_EQ(d.reasoning, "cut off");
  EXPECT_EQ(d.content, "");

  EXPECT_TRUE(prompt_opens_reasoning("<|im_start|>assistant\n<think>\n", ReasoningSyntax::kThink));
  EXPECT_FALSE(prompt_opens_reasoning("<|im_start|>assistant\n<think>\n\n</think>\n\n",
                                      ReasoningSyntax::kThink));
  EXPECT_FALSE(prompt_opens_reasoning("<|im_start|>assistant\n", ReasoningSyntax::kThink));
  EXPECT_FALSE(prompt_opens_reasoning("<think>", ReasoningSyntax::kNone));
  EXPECT_TRUE(prompt_opens_reasoning("[INST]q[/INST][THINK]", ReasoningSyntax::kMistral));
}

TEST(OutputParserTest, Llama3JsonAndPythonTag) {
  const auto f = format(ToolCallSyntax::kLlama3);
  OutputDelta d = parse(f, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}");
  expect_call(d, 0, "get_weather", R"({"city":"Paris"})");
  EXPECT_EQ(d.content, "");
  d = parse(f,
            " {\"type\": \"function\", \"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", "
            "\"parameters\": {\"s\": \"}{\"}}\nThat is all.");
  ASSERT_EQ(d.tool_calls.size(), 2u);
  expect_call(d, 1, "b", R"({"s":"}{"})");
  EXPECT_EQ(d.content, "That is all.");
  d = parse(f, "{\"answer\": 42}");  // JSON, but not a call
  EXPECT_TRUE(d.tool_calls.empty());
  EXPECT_EQ(d.content, "{\"answer\": 42}");
  d = parse(f, "Use {\"name\": \"x\", \"parameters\": {}} like this");  // not at the start
  EXPECT_TRUE(d.tool_calls.empty());
  d = parse(f, "<|python_tag|>brave_search.call(query=\"weather in Paris\", n=3, safe=True)");
  expect_call(d, 0, "brave_search", R"({"query":"weather in Paris","n":3,"safe":true})");
  d = parse(f, "<|python_tag|>print(1 + 1)<|eom_id|>");
  expect_call(d, 0, "python", R"j({"code":"print(1 + 1)"})j");
  d = parse(f, "<|python_tag|>{\"name\": \"f\", \"parameters\": {\"k\": null}}");
  expect_call(d, 0, "f", R"({"k":null})");
}

TEST(OutputParserTest, MistralFormats) {
  const auto f = format(ToolCallSyntax::kMistral, ReasoningSyntax::kMistral);
  OutputDelta d =
      parse(f,
            "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {\"x\": 1}, \"id\": \"abc123DEF\"}, "
            "{\"name\": \"b\", \"arguments\": {}}]");
  ASSERT_EQ(d.tool_calls.size(), 2u);
  EXPECT_EQ(d.tool_calls[0].id, "abc123DEF");
  expect_call(d, 0, "a", R"({"x":1})");
  expect_call(d, 1, "b", "{}");
  d = parse(f,
            "Sure.[TOOL_CALLS]get_weather[ARGS]{\"city\": "
            "\"Paris\"}[TOOL_CALLS]get_time[CALL_ID]x9Y8z7W6v[ARGS]{}");
  EXPECT_EQ(d.content, "Sure.");
  ASSERT_EQ(d.tool_calls.size(), 2u);
  expect_call(d, 0, "get_weather", R"({"city":"Paris"})");
  expect_call(d, 1, "get_time", "{}");
  EXPECT_EQ(d.tool_calls[1].id, "x9Y8z7W6v");
  d = parse(f, "[THINK]Check the weather.[/THINK]It is sunny.");
  EXPECT_EQ(d.reasoning, "Check the weather.");
  EXPECT_EQ(d.content, "It is sunny.");
  d = parse(f, "[TOOL_CALLS]bad name[ARGS]{}");
  EXPECT_TRUE(d.tool_calls.empty());
  EXPECT_EQ(d.content, "[TOOL_CALLS]bad name[ARGS]{}");
}

TEST(OutputParserTest, DeepSeekR1) {
  const auto f = format(ToolCallSyntax::kDeepSeekR1, ReasoningSyntax::kThink);
  OutputDelta d = parse(
      f,
      "<think>\nNeed two tools.\n</think>\n\n<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>"
      "function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Paris\"}\n```"
      "<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{}\n```"
      "<｜tool▁call▁end｜><｜tool▁calls▁end｜>");
  EXPECT_EQ(d.reasoning, "Need two tools.");
  EXPECT_EQ(d.content, "");
  ASSERT_EQ(d.tool_calls.size(), 2u);
  expect_call(d, 0, "get_weather", R"({"city":"Paris"})");
  expect_call(d, 1, "get_time", "{}");
  // DeepSeek V3.1 drops the type and the code fence.
  d = parse(
      f,
      "Calling.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": "
      "\"Oslo\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜> Done.");
  expect_call(d, 0, "get_weather", R"({"city":"Oslo"})");
  EXPECT_EQ(d.content, "Calling.Done.");
  d = parse(f,
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{oops}\n`"
            "``<｜tool▁call▁end｜>");
  EXPECT_TRUE(d.tool_calls.empty());
  EXPECT_NE(d.content.find("{oops}"), std::string::npos);
}

TEST(OutputParserTest, Granite) {
  const auto f = format(ToolCallSyntax::kGranite, ReasoningSyntax::kGranite);
  OutputDelta d = parse(f, "<think>Plan it.</think><response>Hi there.</response>");
  EXPECT_EQ(d.reasoning, "Plan it.");
  EXPECT_EQ(d.content, "Hi there.");
  d = parse(f, "<|tool_call|>[{\"name\": \"f\", \"arguments\": {\"a\": true}}]");
  expect_call(d, 0, "f", R"({"a":true})");
}

TEST(OutputParserTest, HarmonyChannels) {
  const auto f = format(ToolCallSyntax::kHarmony, ReasoningSyntax::kHarmony);
  OutputDelta d = parse(f,
                        "<|channel|>analysis<|message|>Think about it.<|end|><|start|>assistant"
                        "<|channel|>final<|message|>The answer.<|return|>");
  EXPECT_EQ(d.reasoning, "Think about it.");
  EXPECT_EQ(d.content, "The answer.");
  d = parse(
      f,
      "<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>commentary "
      "to=functions.get_weather <|constrain|>json<|message|>{\"city\":\"Paris\"}<|call|>");
  EXPECT_EQ(d.reasoning, "Need weather.");
  expect_call(d, 0, "get_weather", R"({"city":"Paris"})");
  d = parse(f,
            "<|start|>assistant to=functions.lookup<|channel|>commentary json<|message|>{\"q\": "
            "1}<|call|>");
  expect_call(d, 0, "lookup", R"({"q":1})");
  d = parse(f, "<|channel|>final<|message|>Answer.<|end|> and more");
  EXPECT_EQ(d.content, "Answer. and more");
  d = parse(f, "Just text.");
  EXPECT_EQ(d.content, "Just text.");
  d = parse(f, "<|channel|>analysis<|message|>cut off mid-thought");
  EXPECT_EQ(d.reasoning, "cut off mid-thought");
}

TEST(OutputParserTest, IdsAreUniqueAndReproducible) {
  std::string text;
  for (int i = 0; i < 20; ++i)
    text += "<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>";
  const OutputDelta d = parse(format(ToolCallSyntax::kHermes), text);
  std::set<std::string> ids;
  for (const ToolCall& c : d.tool_calls) ids.insert(c.id);
  EXPECT_EQ(ids.size(), 20u);
  OutputParser other(format(ToolCallSyntax::kHermes), 100);
  other.feed(text);
  other.finish();
  EXPECT_NE(other.total().tool_calls[0].id, d.tool_calls[0].id);
}

// Random mixtures of marker pieces, JSON and text: never a crash, and any way of cutting the
// text into pieces gives the same result.
TEST(OutputParserTest, RandomTextAndChunkingAgree) {
  const std::vector<std::string> parts = {"<think>",
                                          "</think>",
                                          "<tool_call>",
                                          "</tool_call>",
                                          "{\"name\": \"f\", \"arguments\": {}}",
                                          "{",
                                          "}",
                                          "[",
                                          "]",
                                          "\"",
                                          " ",
                                          "\n",
                                          "text",
                                          "<",
                                          "<tool",
                                          "[TOOL_CALLS]",
                                          "[ARGS]",
                                          "f",
                                          "<|python_tag|>",
                                          "<｜tool▁calls▁begin｜>",
                                          "<｜tool▁call▁begin｜>",
                                          "<｜tool▁sep｜>",
                                          "<｜tool▁call▁end｜>",
                                          "<|channel|>",
                                          "analysis",
                                          "final",
                                          "<|message|>",
                                          "<|end|>",
                                          "<|call|>",
                                          " to=functions.g",
                                          "<|tool_call|>",
                                          "<response>",
                                          "[THINK]",
                                          "[/THINK]",
                                          "\\"};
  const std::vector<OutputFormat> formats = {
      format(ToolCallSyntax::kHermes, ReasoningSyntax::kThink),
      format(ToolCallSyntax::kLlama3),
      format(ToolCallSyntax::kMistral, ReasoningSyntax::kMistral),
      format(ToolCallSyntax::kDeepSeekR1, ReasoningSyntax::kThink, true),
      format(ToolCallSyntax::kGranite, ReasoningSyntax::kGranite),
      format(ToolCallSyntax::kHarmony, ReasoningSyntax::kHarmony),
  };
  std::mt19937 rng(5);
  for (int i = 0; i < 3000; ++i) {
    std::string text;
    const int n = 1 + int(rng() % 12);
    for (int j = 0; j < n; ++j) text += parts[rng() % parts.size()];
    const OutputFormat& f = formats[rng() % formats.size()];
    OutputParser whole(f, 3), chunks(f, 3);
    whole.feed(text);
    whole.finish();
    for (size_t at = 0; at < text.size();) {
      const size_t len = 1 + rng() % 7;
      chunks.feed(std::string_view(text).substr(at, len));
      at += len;
    }
    chunks.finish();
    ASSERT_EQ(whole.total().reasoning, chunks.total().reasoning) << text;
    ASSERT_EQ(whole.total().content, chunks.total().content) << text;
    ASSERT_EQ(whole.total().tool_calls.size(), chunks.total().tool_calls.size()) << text;
    for (size_t k = 0; k < whole.total().tool_calls.size(); ++k) {
      ASSERT_EQ(whole.total().tool_calls[k].arguments, chunks.total().tool_calls[k].arguments)
          << text;
    }
  }
}

TEST(OutputParserTest, DetectsFormatFromTemplate) {
  auto detect = detect_output_format;
  EXPECT_EQ(detect("{% for m in messages %}<|im_start|>{{ m.content }}{% endfor %}").tool_calls,
            ToolCallSyntax::kNone);
  const OutputFormat qwen3 = detect(
      "<tool_call>\\n{{ tool_call | tojson }}\\n</tool_call>{% if '</think>' in c %}<think>");
  EXPECT_EQ(qwen3.tool_calls, ToolCallSyntax::kHermes);
  EXPECT_EQ(qwen3.reasoning, ReasoningSyntax::kThink);
  EXPECT_EQ(detect("<|start_header_id|>ipython<|end_header_id|>").tool_calls,
            ToolCallSyntax::kLlama3);
  EXPECT_EQ(detect("{{- '<|python_tag|>' + tool_call.name }}").tool_calls, ToolCallSyntax::kLlama3);
  EXPECT_EQ(detect("[TOOL_CALLS] [THINK]").tool_calls, ToolCallSyntax::kMistral);
  EXPECT_EQ(detect("[TOOL_CALLS] [THINK]").reasoning, ReasoningSyntax::kMistral);
  EXPECT_EQ(detect("<｜tool▁calls▁begin｜></think>").tool_calls, ToolCallSyntax::kDeepSeekR1);
  EXPECT_EQ(detect("<｜tool▁calls▁begin｜></think>").reasoning, ReasoningSyntax::kThink);
  EXPECT_EQ(detect("<|tool_call|> <think> <response>").reasoning, ReasoningSyntax::kGranite);
  EXPECT_EQ(detect("<|channel|>final<|message|>").tool_calls, ToolCallSyntax::kHarmony);
}

}  // namespace
}  // namespace muse
