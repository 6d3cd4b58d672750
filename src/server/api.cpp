#include "server/api.h"

#include <cmath>

#include "runtime/json_schema.h"

namespace muse {

ApiError::ApiError(int status, std::string type, const std::string& message, std::string param, std::string code)
    : Error(message), status_(status), type_(std::move(type)), param_(std::move(param)), code_(std::move(code)) {}

Json ApiError::body() const {
  Json::Object e{{"message", Json(std::string(what()))},
                 {"type", Json(type_)},
                 {"param", param_.empty() ? Json() : Json(param_)},
                 {"code", code_.empty() ? Json() : Json(code_)}};
  return Json(Json::Object{{"error", Json(std::move(e))}});
}

void bad_request(const std::string& message, const std::string& param, const std::string& code) {
  throw ApiError(400, "invalid_request_error", message, param, code);
}

namespace {

const Json* field(const Json& body, const char* name) {
  const Json* f = body.find(name);
  return f && !f->is_null() ? f : nullptr;
}

double number_in(const Json& body, const char* name, double fallback, double lo, double hi) {
  const Json* f = field(body, name);
  if (!f) return fallback;
  if (!f->is_number() || !std::isfinite(f->as_number()))
    bad_request(std::string("'") + name + "' must be a number", name);
  const double v = f->as_number();
  if (v < lo || v > hi) {
    char msg[160];
    std::snprintf(msg, sizeof msg, "'%s' must be between %g and %g (got %g)", name, lo, hi, v);
    bad_request(msg, name);
  }
  return v;
}

long long integer_in(const Json& body, const char* name, long long fallback, long long lo, long long hi) {
  const Json* f = field(body, name);
  if (!f) return fallback;
  if (!f->is_integer()) bad_request(std::string("'") + name + "' must be an integer", name);
  const long long v = f->as_int();
  if (v < lo || v > hi)
    bad_request(std::string("'") + name + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                    " (got " + std::to_string(v) + ")",
                name);
  return v;
}

bool boolean(const Json& body, const char* name, bool fallback) {
  const Json* f = field(body, name);
  if (!f) return fallback;
  if (f->kind() != Json::Kind::kBool) bad_request(std::string("'") + name + "' must be a boolean", name);
  return f->as_bool();
}

std::string string_of(const Json& body, const char* name, const std::string& fallback) {
  const Json* f = field(body, name);
  if (!f) return fallback;
  if (!f->is_string()) bad_request(std::string("'") + name + "' must be a string", name);
  return f->as_string();
}

// The settings both endpoints share.
void parse_sampling(const Json& body, SamplingParams& s, std::vector<std::string>& stop) {
  // OpenAI's defaults: temperature 1, top_p 1, no top-k or min-p cut.
  s.temperature = float(number_in(body, "temperature", 1.0, 0, 2));
  s.top_p = float(number_in(body, "top_p", 1.0, 0, 1));
  if (s.top_p <= 0) bad_request("'top_p' must be above 0", "top_p");
  s.top_k = int(integer_in(body, "top_k", 0, 0, 1 << 20));
  s.min_p = float(number_in(body, "min_p", 0, 0, 1));
  s.presence_penalty = float(number_in(body, "presence_penalty", 0, -2, 2));
  s.frequency_penalty = float(number_in(body, "frequency_penalty", 0, -2, 2));
  s.repeat_penalty = float(number_in(body, "repeat_penalty", 1, 0.01, 10));
  s.repeat_last_n = -1;
  s.seed = uint64_t(integer_in(body, "seed", 0, INT64_MIN, INT64_MAX));
  if (const Json* bias = field(body, "logit_bias")) {
    if (!bias->is_object()) bad_request("'logit_bias' must be an object of token id to bias", "logit_bias");
    for (const auto& [key, value] : bias->as_object()) {
      char* end = nullptr;
      const long id = std::strtol(key.c_str(), &end, 10);
      if (key.empty() || *end || id < 0 || id > INT32_MAX)
        bad_request("'logit_bias' keys must be token ids (got \"" + key + "\")", "logit_bias");
      if (!value.is_number() || value.as_number() < -100 || value.as_number() > 100)
        bad_request("'logit_bias' values must be numbers from -100 to 100", "logit_bias");
      // OpenAI: -100 bans a token in practice.
      s.logit_bias[int32_t(id)] = value.as_number() <= -100 ? -INFINITY : float(value.as_number());
    }
  }
  if (const Json* st = field(body, "stop")) {
    if (st->is_string()) {
      stop.push_back(st->as_string());
    } else if (st->is_array() && st->as_array().size() <= 4) {
      for (const Json& x : st->as_array()) {
        if (!x.is_string()) bad_request("'stop' must be a string or an array of up to 4 strings", "stop");
        stop.push_back(x.as_string());
      }
    } else {
      bad_request("'stop' must be a string or an array of up to 4 strings", "stop");
    }
  }
}

std::string text_of_content(const Json& content, size_t message) {
  const std::string param = "messages[" + std::to_string(message) + "].content";
  if (content.is_null()) return "";
  if (content.is_string()) return content.as_string();
  if (!content.is_array()) bad_request("message content must be a string or an array of content parts", param);
  std::string text;
  for (const Json& part : content.as_array()) {
    const Json* type = part.is_object() ? part.find("type") : nullptr;
    if (!type || !type->is_string()) bad_request("every content part needs a 'type'", param);
    const std::string& t = type->as_string();
    if (t == "text") {
      const Json* s = part.find("text");
      if (!s || !s->is_string()) bad_request("a text content part needs 'text' as a string", param);
      text += s->as_string();
    } else if (t == "image_url" || t == "input_audio" || t == "file") {
      bad_request("content parts of type '" + t + "' are not supported by this model (text only)", param);
    } else {
      bad_request("unknown content part type '" + t + "'", param);
    }
  }
  return text;
}

Json normalize_messages(const Json* messages) {
  if (!messages || !messages->is_array() || messages->as_array().empty())
    bad_request("'messages' must be a non-empty array", "messages");
  Json::Array out;
  size_t i = 0;
  for (const Json& m : messages->as_array()) {
    const std::string param = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) bad_request("every message must be an object", param);
    const Json* role = m.find("role");
    if (!role || !role->is_string()) bad_request("every message needs a 'role'", param + ".role");
    std::string r = role->as_string();
    if (r == "developer") r = "system";  // OpenAI's newer name for it
    if (r != "system" && r != "user" && r != "assistant" && r != "tool")
      bad_request("unknown role '" + role->as_string() + "'", param + ".role");
    Json::Object n;
    n.emplace("role", Json(r));
    const Json* content = m.find("content");
    n.emplace("content", Json(text_of_content(content ? *content : Json(), i)));
    if (r == "assistant") {
      if (const Json* rc = m.find("reasoning_content"); rc && rc->is_string()) n.emplace("reasoning_content", *rc);
      if (const Json* calls = m.find("tool_calls"); calls && !calls->is_null()) {
        if (!calls->is_array()) bad_request("'tool_calls' must be an array", param + ".tool_calls");
        Json::Array fixed;
        for (const Json& c : calls->as_array()) {
          const Json* f = c.is_object() ? c.find("function") : nullptr;
          if (!f || !f->is_object() || !f->find("name") || !f->at("name").is_string())
            bad_request("every tool call needs function.name", param + ".tool_calls");
          Json::Object fn{{"name", f->at("name")}};
          // Templates iterate over arguments as a mapping; OpenAI sends them as JSON text.
          Json args = f->find("arguments") ? f->at("arguments") : Json(Json::Object{});
          if (args.is_string()) {
            try {
              args = Json::parse(args.as_string());
            } catch (const Error&) {
            }
          }
          fn.emplace("arguments", args);
          Json::Object call{{"type", Json("function")}, {"function", Json(std::move(fn))}};
          if (const Json* id = c.find("id"); id && id->is_string()) call.emplace("id", *id);
          fixed.push_back(Json(std::move(call)));
        }
        n.emplace("tool_calls", Json(std::move(fixed)));
      }
    }
    if (r == "tool") {
      if (const Json* id = m.find("tool_call_id"); id && id->is_string()) n.emplace("tool_call_id", *id);
      if (const Json* name = m.find("name"); name && name->is_string()) n.emplace("name", *name);
    }
    out.push_back(Json(std::move(n)));
    ++i;
  }
  return Json(std::move(out));
}

Json validate_tools(const Json* tools) {
  if (!tools) return Json();
  if (!tools->is_array()) bad_request("'tools' must be an array", "tools");
  for (size_t i = 0; i < tools->as_array().size(); ++i) {
    const Json& t = tools->as_array()[i];
    const std::string param = "tools[" + std::to_string(i) + "]";
    const Json* type = t.is_object() ? t.find("type") : nullptr;
    if (!type || !type->is_string() || type->as_string() != "function")
      bad_request("every tool must be {\"type\": \"function\", \"function\": {...}}", param);
    const Json* f = t.find("function");
    if (!f || !f->is_object() || !f->find("name") || !f->at("name").is_string() || f->at("name").as_string().empty())
      bad_request("every tool needs function.name", param + ".function.name");
    if (const Json* p = f->find("parameters"); p && !p->is_null() && !p->is_object())
      bad_request("function.parameters must be a JSON schema object", param + ".function.parameters");
  }
  return tools->as_array().empty() ? Json() : *tools;
}

std::string grammar_for_response_format(const Json* format) {
  if (!format) return "";
  const Json* type = format->is_object() ? format->find("type") : nullptr;
  if (!type || !type->is_string()) bad_request("'response_format' needs a 'type'", "response_format");
  const std::string& t = type->as_string();
  if (t == "text") return "";
  if (t == "json_object") return json_object_grammar();
  if (t != "json_schema") bad_request("unknown response_format type '" + t + "'", "response_format.type");
  const Json* js = format->find("json_schema");
  const Json* schema = js && js->is_object() ? js->find("schema") : nullptr;
  if (!schema || !schema->is_object())
    bad_request("response_format json_schema needs a 'schema' object", "response_format.json_schema.schema");
  try {
    return json_schema_to_grammar(*schema);
  } catch (const ApiError&) {
    throw;
  } catch (const Error& e) {
    bad_request(std::string("response_format schema: ") + e.what(), "response_format.json_schema.schema");
  }
}

void parse_muse_options(const Json* muse, ChatParams& p) {
  if (!muse) return;
  if (!muse->is_object()) bad_request("'muse' must be an object", "muse");
  p.thinking_budget = int(integer_in(*muse, "thinking_budget", p.thinking_budget, -1, 1 << 20));
  p.min_thinking = int(integer_in(*muse, "min_thinking", 0, 0, 1 << 20));
  p.enable_thinking = boolean(*muse, "think", p.enable_thinking);
  if (const Json* c = field(*muse, "contemplate")) {
    if (!c->is_object()) bad_request("'muse.contemplate' must be an object", "muse.contemplate");
    ContemplateOptions& o = p.contemplate;
    o.enabled = true;
    o.agents = int(integer_in(*c, "agents", 4, 1, 16));
    o.join = string_of(*c, "join", "vote");
    if (o.join != "vote" && o.join != "synthesis")
      bad_request("'muse.contemplate.join' must be \"vote\" or \"synthesis\"", "muse.contemplate.join");
    o.stop_below = float(number_in(*c, "stop_below", 0, 0, 100));
    o.mode = string_of(*c, "mode", "vote");
    if (o.mode != "vote" && o.mode != "tool" && o.mode != "markup")
      bad_request("'muse.contemplate.mode' must be \"vote\", \"tool\" or \"markup\"", "muse.contemplate.mode");
    o.depth = int(integer_in(*c, "depth", 1, 0, 4));
    o.max_total_tokens = int(integer_in(*c, "max_total_tokens", 0, 0, 1 << 22));
    o.timeout = number_in(*c, "timeout", 0, 0, 3600);
  }
}

}  // namespace

int thinking_budget_for_effort(const std::string& effort) {
  if (effort == "minimal") return 0;
  if (effort == "low") return 256;
  if (effort == "medium") return 1024;
  if (effort == "high") return -1;
  bad_request("'reasoning_effort' must be minimal, low, medium or high", "reasoning_effort");
}

ChatParams parse_chat_params(const Json& body, const ServerLimits& limits) {
  if (!body.is_object()) bad_request("the request body must be a JSON object");
  ChatParams p;
  p.model = string_of(body, "model", "");
  p.messages = normalize_messages(body.find("messages"));
  p.stream = boolean(body, "stream", false);
  if (const Json* so = field(body, "stream_options")) {
    if (!so->is_object()) bad_request("'stream_options' must be an object", "stream_options");
    if (!p.stream) bad_request("'stream_options' is only allowed with stream: true", "stream_options");
    p.include_usage = boolean(*so, "include_usage", false);
  }
  p.n = int(integer_in(body, "n", 1, 1, limits.max_n));
  const long long legacy = integer_in(body, "max_tokens", -1, 1, limits.max_tokens);
  p.max_tokens = int(integer_in(body, "max_completion_tokens", legacy > 0 ? legacy : limits.default_max_tokens, 1,
                                limits.max_tokens));
  parse_sampling(body, p.sampling, p.stop);
  p.logprobs = boolean(body, "logprobs", false);
  p.top_logprobs = int(integer_in(body, "top_logprobs", 0, 0, 20));
  if (p.top_logprobs > 0 && !p.logprobs) bad_request("'top_logprobs' needs 'logprobs': true", "top_logprobs");
  p.tools = validate_tools(field(body, "tools"));
  if (const Json* choice = field(body, "tool_choice")) {
    if (choice->is_string() && choice->as_string() == "none") {
      p.tools = Json();
    } else if (!(choice->is_string() && choice->as_string() == "auto")) {
      // Forcing a call needs the call's opening marker in a grammar, and most templates mark
      // calls with control tokens that grammars cannot produce.
      bad_request("tool_choice must be \"auto\" or \"none\" (forcing a tool call is not supported)", "tool_choice");
    }
  }
  p.grammar = grammar_for_response_format(field(body, "response_format"));
  if (!p.grammar.empty()) p.enable_thinking = false;  // the grammar shapes the whole output
  if (const Json* effort = field(body, "reasoning_effort")) {
    if (!effort->is_string()) bad_request("'reasoning_effort' must be a string", "reasoning_effort");
    p.thinking_budget = thinking_budget_for_effort(effort->as_string());
    if (p.thinking_budget == 0) p.enable_thinking = false;
  }
  parse_muse_options(field(body, "muse"), p);
  if (p.contemplate.enabled && (p.n > 1 || !p.tools.is_null() || !p.grammar.empty() || p.logprobs || !p.stop.empty()))
    bad_request("contemplate mode does not combine with n > 1, tools, response_format, logprobs or stop",
                "muse.contemplate");
  return p;
}

CompletionParams parse_completion_params(const Json& body, const ServerLimits& limits) {
  if (!body.is_object()) bad_request("the request body must be a JSON object");
  CompletionParams p;
  p.model = string_of(body, "model", "");
  const Json* prompt = field(body, "prompt");
  if (!prompt) bad_request("'prompt' is required", "prompt");
  if (prompt->is_string()) {
    p.prompt = prompt->as_string();
  } else if (prompt->is_array() && !prompt->as_array().empty() && prompt->as_array()[0].is_integer()) {
    for (const Json& t : prompt->as_array()) {
      if (!t.is_integer() || t.as_int() < 0 || t.as_int() > INT32_MAX)
        bad_request("'prompt' token ids must be non-negative integers", "prompt");
      p.prompt_ids.push_back(int32_t(t.as_int()));
    }
  } else if (prompt->is_array() && prompt->as_array().size() == 1 && prompt->as_array()[0].is_string()) {
    p.prompt = prompt->as_array()[0].as_string();
  } else {
    bad_request("'prompt' must be a string, one string in an array, or an array of token ids", "prompt");
  }
  if (p.prompt.empty() && p.prompt_ids.empty()) bad_request("'prompt' is empty", "prompt");
  p.stream = boolean(body, "stream", false);
  if (const Json* so = field(body, "stream_options")) {
    if (!so->is_object() || !p.stream) bad_request("'stream_options' is only allowed with stream: true", "stream_options");
    p.include_usage = boolean(*so, "include_usage", false);
  }
  p.echo = boolean(body, "echo", false);
  p.n = int(integer_in(body, "n", 1, 1, limits.max_n));
  p.max_tokens = int(integer_in(body, "max_tokens", 16, 1, limits.max_tokens));
  p.logprobs = int(integer_in(body, "logprobs", -1, 0, 5));
  if (field(body, "suffix")) bad_request("'suffix' is not supported", "suffix");
  if (field(body, "best_of") && integer_in(body, "best_of", 1, 1, 1) != 1) bad_request("'best_of' is not supported", "best_of");
  parse_sampling(body, p.sampling, p.stop);
  return p;
}

}  // namespace muse
