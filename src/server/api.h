// The OpenAI-compatible protocol: request bodies parsed and validated into Muse's settings, and
// errors in OpenAI's shape ({"error": {"message", "type", "param", "code"}}) with their HTTP
// status. Nothing here touches the engine.
#pragma once
#include <string>
#include <vector>

#include "runtime/sampler.h"
#include "util/error.h"
#include "util/json.h"

namespace muse {

// An error a client caused (or the server's state, for 429/503): status, OpenAI's error type and
// code, and the request field it concerns.
class ApiError : public Error {
 public:
  ApiError(int status, std::string type, const std::string& message, std::string param = "", std::string code = "");
  int status() const { return status_; }
  Json body() const;

 private:
  int status_;
  std::string type_, param_, code_;
};
[[noreturn]] void bad_request(const std::string& message, const std::string& param = "", const std::string& code = "");

struct ServerLimits {
  size_t max_body_bytes = size_t(4) << 20;
  int max_context = 4096;      // prompt plus completion tokens of one request
  int max_tokens = 4096;       // completion tokens one request may ask for
  int default_max_tokens = 1024;
  int max_n = 8;               // choices per request
  int max_concurrent_per_key = 8;
  double requests_per_minute_per_key = 0;  // 0: no rate limit
};

// Contemplating mode, through the request's "muse" object (see docs/server.md).
struct ContemplateOptions {
  bool enabled = false;
  // "vote": parallel thinking traces; "tool": sub-agents through a spawn_agent tool call;
  // "markup": sub-agents through native <spawn>/<join> markup.
  std::string mode = "vote";
  int agents = 4;             // traces, or sub-agents per join
  int depth = 1;              // sub-agent levels (tool, markup)
  int max_total_tokens = 0;   // all agents together (tool, markup); 0: agents x max tokens
  double timeout = 0;         // seconds (tool, markup); 0: none
  std::string join = "vote";  // "vote" | "synthesis" (vote mode)
  float stop_below = 0;       // DeepConf early stop threshold; 0: never
};

struct ChatParams {
  std::string model;
  Json messages;  // normalized: roles system/user/assistant/tool, content as text
  Json tools;     // null when none (or tool_choice "none")
  bool stream = false, include_usage = false;
  int n = 1;
  int max_tokens = 0;
  SamplingParams sampling;
  std::vector<std::string> stop;
  bool logprobs = false;
  int top_logprobs = 0;
  std::string grammar;  // GBNF from response_format; "" for free text
  bool enable_thinking = true;
  int thinking_budget = -1;  // -1: none
  int min_thinking = 0;
  ContemplateOptions contemplate;
};

// POST /v1/chat/completions. Throws ApiError (400) naming the offending field.
ChatParams parse_chat_params(const Json& body, const ServerLimits& limits);

struct CompletionParams {
  std::string model;
  std::string prompt;              // text, or
  std::vector<int32_t> prompt_ids; // token ids
  bool stream = false, include_usage = false, echo = false;
  int n = 1;
  int max_tokens = 16;
  SamplingParams sampling;
  std::vector<std::string> stop;
  int logprobs = -1;  // legacy: the number of top tokens, -1 off
};

// POST /v1/completions.
CompletionParams parse_completion_params(const Json& body, const ServerLimits& limits);

// reasoning_effort -> a thinking budget (-1: unbounded): minimal 0, low 256, medium 1024, high
// unbounded.
int thinking_budget_for_effort(const std::string& effort);

}  // namespace muse
