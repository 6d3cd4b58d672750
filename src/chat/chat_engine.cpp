#include "chat/chat_engine.h"

#include <algorithm>
#include <chrono>
#include <optional>

#include "model/session.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace muse {

namespace {

// Where the reasoning block of raw output ends, for counting thinking tokens; npos while open
// (or when the format has no such marker).
size_t reasoning_end(const std::string& raw, const OutputFormat& format) {
  // gpt-oss ends its analysis channel by starting the final one.
  const std::string close = format.reasoning == ReasoningSyntax::kHarmony ? "<|channel|>final"
                                                                         : reasoning_tags(format.reasoning).close;
  if (close.empty()) return std::string::npos;
  const size_t at = raw.find(close);
  return at == std::string::npos ? at : at + close.size();
}

}  // namespace

Json ChatReply::message() const {
  Json::Object m;
  m.emplace("role", Json("assistant"));
  m.emplace("content", Json(content));
  if (!reasoning.empty()) m.emplace("reasoning_content", Json(reasoning));
  if (!tool_calls.empty()) {
    Json::Array calls;
    for (const ToolCall& c : tool_calls) {
      Json::Object function;
      function.emplace("name", Json(c.name));
      // Templates iterate over arguments as a mapping; keep the text when it is not JSON.
      Json args;
      try {
        args = Json::parse(c.arguments);
      } catch (const Error&) {
        args = Json(c.arguments);
      }
      function.emplace("arguments", std::move(args));
      Json::Object call;
      call.emplace("id", Json(c.id));
      call.emplace("type", Json("function"));
      call.emplace("function", Json(std::move(function)));
      calls.push_back(Json(std::move(call)));
    }
    m.emplace("tool_calls", Json(std::move(calls)));
  }
  return Json(std::move(m));
}

ChatEngine::ChatEngine(const Tokenizer& tokenizer, const ChatTemplate& chat_template,
                       Session& session)
    : tokenizer_(tokenizer),
      template_(chat_template),
      session_(session),
      generator_(session, tokenizer),
      format_(detect_output_format(chat_template.source())) {}

int ChatEngine::n_ctx() const { return session_.n_ctx(); }

std::string render_chat_prompt(const ChatTemplate& chat_template, const ChatRequest& request) {
  ChatTemplate::Options options;
  options.tools = request.tools;
  options.add_generation_prompt = true;
  Json::Object extra;
  extra.emplace("enable_thinking", Json(request.enable_thinking));
  options.extra = Json(std::move(extra));
  return chat_template.render(request.messages, options);
}

std::vector<int32_t> chat_prompt_tokens(const Tokenizer& tokenizer, const std::string& rendered) {
  // Templates usually write the BOS text themselves; add it only when they did not.
  const bool has_bos = tokenizer.bos() >= 0 && rendered.rfind(tokenizer.text(tokenizer.bos()), 0) == 0;
  return tokenizer.encode(rendered, {.add_special = !has_bos, .parse_special = true});
}

std::string ChatEngine::render(const ChatRequest& request) const { return render_chat_prompt(template_, request); }

std::vector<int32_t> ChatEngine::prompt_tokens(const std::string& rendered) const {
  return chat_prompt_tokens(tokenizer_, rendered);
}

ThinkingBudget thinking_budget_for(const Tokenizer& tokenizer, const OutputFormat& format, int max_tokens,
                                   int min_tokens) {
  const ReasoningTags tags = reasoning_tags(format.reasoning);
  auto single_token = [&](const char* text) -> int32_t {
    if (!*text) return -1;
    const std::vector<int32_t> ids = tokenizer.encode(text, {.add_special = false, .parse_special = true});
    return ids.size() == 1 ? ids[0] : -1;
  };
  ThinkingBudget b;
  b.close_token = single_token(tags.close);
  if (b.close_token < 0)
    fail("a thinking budget needs a model whose chat template closes its reasoning with a single token (this one: ",
         *tags.close ? std::string("\"") + tags.close + "\" is several tokens" : std::string("no reasoning block"), ")");
  b.open_token = single_token(tags.open);
  b.starts_inside = format.starts_in_reasoning;
  b.max_tokens = max_tokens;
  b.min_tokens = min_tokens;
  // Qwen3's own wording for a budget that ran out.
  b.cue = tokenizer.encode("\n\nConsidering the limited time by the user, I have to give the solution based on the "
                            "thinking directly now.\n",
                            {.add_special = false, .parse_special = false});
  return b;
}

ChatReply ChatEngine::reply(const ChatRequest& request, const ChatCallback& on_delta) {
  const std::string rendered = render(request);
  GenerationRequest gen = request.generation;
  gen.prompt = prompt_tokens(rendered);
  OutputFormat format = format_;
  format.starts_in_reasoning = prompt_opens_reasoning(rendered, format.reasoning);
  OutputParser parser(format, gen.sampling.seed);
  ChatReply reply;
  // The raw output with special tokens spelled out (the parser needs the markers), and where
  // each token's text ends in it.
  std::string raw;
  std::vector<size_t> token_ends;
  if (format.starts_in_reasoning) raw = reasoning_tags(format.reasoning).open;
  bool cancelled = false;
  // When the reasoning ends: the first answer text or tool call after some reasoning.
  const auto start = std::chrono::steady_clock::now();
  std::optional<std::chrono::steady_clock::time_point> reasoning_end_at;
  auto deliver = [&](const OutputDelta& d) {
    if (!reasoning_end_at && !reply.reasoning.empty() && (!d.content.empty() || !d.tool_calls.empty()))
      reasoning_end_at = std::chrono::steady_clock::now();
    reply.reasoning += d.reasoning;
    reply.content += d.content;
    reply.tool_calls.insert(reply.tool_calls.end(), d.tool_calls.begin(), d.tool_calls.end());
    if (!d.empty() && on_delta && !on_delta(d)) cancelled = true;
  };
  if (request.thinking_budget >= 0 || request.min_thinking > 0)
    gen.thinking = thinking_budget_for(tokenizer_, format, request.thinking_budget, request.min_thinking);
  // The parser reads the generated text with special tokens rendered, stop strings removed.
  gen.render_special = true;
  reply.generation = generator_.generate(gen, [&](int32_t token, std::string_view text) {
    raw += text;
    if (token >= 0) token_ends.push_back(raw.size());
    else if (!token_ends.empty()) token_ends.back() = raw.size();  // held-back text of the last token
    deliver(parser.feed(text));
    return !cancelled;
  });
  deliver(parser.finish());
  if (const size_t end = reasoning_end(raw, format); end != std::string::npos) {
    for (size_t e : token_ends) {
      ++reply.reasoning_tokens;
      if (e >= end) break;
    }
  } else if (!reply.reasoning.empty()) {
    reply.reasoning_tokens = int(token_ends.size());  // still thinking when it stopped
  }
  reply.answer_tokens = int(reply.generation.tokens.size()) - reply.reasoning_tokens;
  const double decode = reply.generation.decode_seconds;
  if (!reply.reasoning.empty()) {
    // (The decode clock starts after the prompt; the reasoning's share is measured from there.)
    const double until_end = reasoning_end_at ? std::chrono::duration<double>(*reasoning_end_at - start).count() -
                                                    reply.generation.prompt_seconds
                                              : decode;
    reply.reasoning_seconds = std::clamp(until_end, 0.0, decode);
  }
  reply.answer_seconds = decode - reply.reasoning_seconds;
  return reply;
}

}  // namespace muse
