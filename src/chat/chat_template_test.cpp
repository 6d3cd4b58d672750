#include "chat/chat_template.h"

#include <gtest/gtest.h>

#include "io/gguf.h"
#include "testing/test_support.h"
#include "util/error.h"

namespace muse {
namespace {

ChatTemplate::Options with_generation_prompt(bool add) {
  ChatTemplate::Options o;
  o.add_generation_prompt = add;
  o.now = jinja::DateTime::parse("2026-11-22T12:00:00");
  return o;
}

// A GGUF file in memory with a vocabulary, BOS/EOS ids and optionally a template.
std::string gguf_bytes(const std::string& chat_template, const std::string& tool_use = "") {
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string_array("tokenizer.ggml.tokens", {"<unk>", "<|begin|>", "<|end|>", "hello"});
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("tokenizer.ggml.eos_token_id", 2);
  if (!chat_template.empty()) w.set_string("tokenizer.chat_template", chat_template);
  if (!tool_use.empty()) w.set_string("tokenizer.chat_template.tool_use", tool_use);
  return w.to_bytes();
}

TEST(ChatTemplateTest, DefaultIsChatML) {
  const std::string bytes = gguf_bytes("");
  const auto file =
      GgufFile::from_memory(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  const auto t = ChatTemplate::from_gguf(*file);
  EXPECT_TRUE(t->is_default());
  const Json messages = Json::parse(R"([
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "image"},
                                   {"type": "text", "text": "there"}]},
      {"role": "assistant", "content": null, "tool_calls": []}])");
  EXPECT_EQ(t->render(messages, with_generation_prompt(true)),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
            "<|im_start|>assistant\n<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(t->render(Json::parse(R"([{"role": "user", "content": "x"}])"),
                      with_generation_prompt(false)),
            "<|im_start|>user\nx<|im_end|>\n");
}

TEST(ChatTemplateTest, ModelTemplateGetsTokensToolsAndExtraVariables) {
  const std::string source =
      "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}{% "
      "endfor %}"
      "{% if tools %}tools={{ tools|map(attribute='function.name')|join(',') }}{% endif %}"
      "{% if enable_thinking is defined and not enable_thinking %}/no_think{% endif %}"
      "{% if add_generation_prompt %}[assistant]{% endif %}";
  const std::string bytes = gguf_bytes(source);
  const auto file =
      GgufFile::from_memory(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  const auto t = ChatTemplate::from_gguf(*file);
  EXPECT_FALSE(t->is_default());
  EXPECT_EQ(t->bos_token(), "<|begin|>");
  EXPECT_EQ(t->eos_token(), "<|end|>");
  EXPECT_EQ(t->source(), source);
  const Json messages = Json::parse(R"([{"role": "user", "content": "hi"}])");
  ChatTemplate::Options o = with_generation_prompt(true);
  EXPECT_EQ(t->render(messages, o), "<|begin|>[user] hi<|end|>[assistant]");
  o.tools = Json::parse(R"([{"type": "function", "function": {"name": "get_weather"}},
                            {"type": "function", "function": {"name": "search"}}])");
  o.extra = Json::parse(R"({"enable_thinking": false})");
  EXPECT_EQ(t->render(messages, o),
            "<|begin|>[user] hi<|end|>tools=get_weather,search/no_think[assistant]");
  // Extra variables override the standard ones.
  o.extra = Json::parse(R"({"bos_token": "BOS"})");
  EXPECT_EQ(t->render(messages, o).substr(0, 3), "BOS");
  EXPECT_THROW(t->render(Json::parse(R"({"role": "user"})"), o), Error);
}

TEST(ChatTemplateTest, ToolUseVariantIsUsedWhenToolsAreGiven) {
  const std::string bytes = gguf_bytes("plain", "with {{ tools|length }} tools");
  const auto file =
      GgufFile::from_memory(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  const auto t = ChatTemplate::from_gguf(*file);
  ChatTemplate::Options o = with_generation_prompt(true);
  EXPECT_EQ(t->render(Json(Json::Array{}), o), "plain");
  o.tools = Json::parse(R"([{"type": "function", "function": {"name": "f"}}])");
  EXPECT_EQ(t->render(Json(Json::Array{}), o), "with 1 tools");
}

TEST(ChatTemplateTest, ErrorsAreOneLineAndRaiseExceptionKeepsItsMessage) {
  try {
    ChatTemplate("{% for m in messages %}", "", "");
    FAIL() << "a broken template must not parse";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("chat template: template syntax error (line 1)", 0), 0u)
        << e.what();
  }
  const ChatTemplate t(
      "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% "
      "endif %}ok",
      "", "");
  EXPECT_EQ(
      t.render(Json::parse(R"([{"role": "user", "content": "x"}])"), with_generation_prompt(true)),
      "ok");
  try {
    t.render(Json::parse(R"([{"role": "system", "content": "x"}])"), with_generation_prompt(true));
    FAIL() << "the template raises";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "System role not supported");
  }
}

// The reference models' own templates (from their GGUF metadata) match Hugging Face's rendering.
TEST(ChatTemplateReferenceTest, ModelTemplatesMatchTheReference) {
  MUSE_REQUIRE_REFERENCE(ref);
  const Json data = Json::parse(testing::read_file(ref + "/templates/chat-templates.json"));
  const struct {
    const char* model;
    const char* reference_template;
  } models[] = {
      {"tiny-qwen2-f16.gguf", "Qwen-Qwen2.5-7B-Instruct.jinja"},
      {"tiny-qwen3-q4_k_m.gguf", "Qwen-Qwen3-0.6B.jinja"},
  };
  for (const auto& m : models) {
    const auto file = GgufFile::open(ref + "/models/" + m.model);
    const auto t = ChatTemplate::from_gguf(*file);
    EXPECT_FALSE(t->is_default()) << m.model;
    for (const Json& c : data.at("cases").as_array()) {
      if (c.at("template").as_string() != m.reference_template) continue;
      const Json& ctx = c.at("context");
      // The reference contexts use "<s>"/"</s>"; these templates do not print the BOS/EOS texts.
      ChatTemplate::Options o = with_generation_prompt(ctx.at("add_generation_prompt").as_bool());
      if (const Json* tools = ctx.find("tools")) o.tools = *tools;
      if (const Json* thinking = ctx.find("enable_thinking"))
        o.extra = Json(Json::Object{{"enable_thinking", *thinking}});
      const std::string name = std::string(m.model) + " / " + c.at("case").as_string();
      EXPECT_EQ(t->render(ctx.at("messages"), o), c.at("expected").as_string()) << name;
    }
  }
}

}  // namespace
}  // namespace muse
