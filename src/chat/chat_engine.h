// A chat turn end to end: messages through the model's template to a prompt, generation on a
// session that keeps the shared history cached, and the output split into reasoning, answer and
// tool calls as it streams. The terminal chat, `muse run --chat` and the server all use this.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "chat/chat_template.h"
#include "chat/output_parser.h"
#include "runtime/generate.h"
#include "util/json.h"

namespace muse {

class Model;
class Session;
class Tokenizer;

struct ChatRequest {
  Json messages = Json(Json::Array{});  // OpenAI-style [{role, content, ...}]
  Json tools;                           // OpenAI-style tool list, or null
  bool enable_thinking = true;          // templates that know `enable_thinking` get it
  // Compact thinking (see ThinkingBudget): at most this many thinking tokens (-1: no limit),
  // and at least min_thinking before the model may close the block.
  int thinking_budget = -1, min_thinking = 0;
  GenerationRequest generation;         // sampling, max_tokens, stop, grammar (prompt is filled in)
};

struct ChatReply {
  std::string reasoning;
  std::string content;
  std::vector<ToolCall> tool_calls;
  int reasoning_tokens = 0;  // generated tokens spent inside the reasoning block
  int answer_tokens = 0;     // the rest (the answer and tool calls, end token included)
  double reasoning_seconds = 0;  // from the first generated token to the end of reasoning
  double answer_seconds = 0;     // the rest of the decoding time
  GenerationResult generation;
  // The assistant message to append to the history.
  Json message() const;
};

// The prompt a chat request renders to through a template, and its tokens (the BOS token added
// when the template did not write it). ChatEngine uses these; so do callers without a session.
std::string render_chat_prompt(const ChatTemplate& chat_template, const ChatRequest& request);
std::vector<int32_t> chat_prompt_tokens(const Tokenizer& tokenizer, const std::string& rendered);

// Compact thinking for a model's chat format: the budget in tokens (-1: none) and the minimum
// (budget forcing). The template's reasoning tags must each be one token (as in Qwen3 and the
// DeepSeek-R1 distills), so that closing the block is one inserted token; throws otherwise.
ThinkingBudget thinking_budget_for(const Tokenizer& tokenizer, const OutputFormat& format, int max_tokens,
                                   int min_tokens);

// Called with each piece of parsed output; returning false cancels the generation.
using ChatCallback = std::function<bool(const OutputDelta& delta)>;

class ChatEngine {
 public:
  ChatEngine(const Tokenizer& tokenizer, const ChatTemplate& chat_template, Session& session);

  // The prompt the model sees for these messages, as text and as tokens.
  std::string render(const ChatRequest& request) const;
  std::vector<int32_t> prompt_tokens(const std::string& rendered) const;

  ChatReply reply(const ChatRequest& request, const ChatCallback& on_delta = {});

  const OutputFormat& format() const { return format_; }
  int n_ctx() const;
  // Tokens the session holds (history kept for the next turn).
  int cached_tokens() const { return int(generator_.cached().size()); }
  void reset() { generator_.reset(); }

 private:
  const Tokenizer& tokenizer_;
  const ChatTemplate& template_;
  Session& session_;
  Generator generator_;
  OutputFormat format_;
};

}  // namespace muse
