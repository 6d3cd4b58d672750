#include "chat/output_parser.h"

#include <algorithm>
#include <cctype>

#include "util/error.h"
#include "util/json.h"

namespace muse {
namespace {

constexpr std::string_view kDsCallsBegin = "<｜tool▁calls▁begin｜>";
constexpr std::string_view kDsCallsEnd = "<｜tool▁calls▁end｜>";
constexpr std::string_view kDsCallBegin = "<｜tool▁call▁begin｜>";
constexpr std::string_view kDsCallEnd = "<｜tool▁call▁end｜>";
constexpr std::string_view kDsSep = "<｜tool▁sep｜>";
constexpr std::string_view kHermesOpen = "<tool_call>";
constexpr std::string_view kHermesClose = "</tool_call>";
constexpr std::string_view kPythonTag = "<|python_tag|>";
constexpr std::string_view kMistralCalls = "[TOOL_CALLS]";
constexpr std::string_view kMistralArgs = "[ARGS]";
constexpr std::string_view kMistralCallId = "[CALL_ID]";
constexpr std::string_view kGraniteCall = "<|tool_call|>";
constexpr std::string_view kGraniteResponseOpen = "<response>";
constexpr std::string_view kGraniteResponseClose = "</response>";
constexpr std::string_view kHarmonyChannel = "<|channel|>";
constexpr std::string_view kHarmonyStart = "<|start|>";
constexpr std::string_view kHarmonyMessage = "<|message|>";
// Longest a Mistral function name or a harmony header may get before the text is taken as
// plain content.
constexpr size_t kMaxHeader = 1024;
constexpr int kMaxJsonDepth = 512;

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

size_t skip_space(std::string_view s, size_t i = 0) {
  while (i < s.size() && is_space(s[i])) ++i;
  return i;
}

std::string_view trim(std::string_view s) {
  const size_t b = skip_space(s);
  size_t e = s.size();
  while (e > b && is_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

// The earliest occurrence of any marker: {position, marker index}, position npos if none.
std::pair<size_t, size_t> find_marker(std::string_view s, const std::vector<std::string>& markers) {
  std::pair<size_t, size_t> best{std::string::npos, 0};
  for (size_t m = 0; m < markers.size(); ++m) {
    const size_t at = s.find(markers[m]);
    if (at < best.first) best = {at, m};
  }
  return best;
}

// Length of the longest end of s that some marker starts with (and is not the whole marker).
size_t partial_marker(std::string_view s, const std::vector<std::string>& markers) {
  size_t hold = 0;
  for (const std::string& m : markers) {
    for (size_t len = std::min(m.size() - 1, s.size()); len > hold; --len) {
      if (s.substr(s.size() - len) == std::string_view(m).substr(0, len)) {
        hold = len;
        break;
      }
    }
  }
  return hold;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool contains(std::string_view s, std::string_view what) {
  return s.find(what) != std::string::npos;
}

// Python keyword arguments as Llama 3's built-in tools write them: name.call(key="v", n=3).
bool parse_python_call(std::string_view text, std::string& name, std::string& arguments) {
  text = trim(text);
  const size_t open = text.find(".call(");
  if (open == std::string::npos || open == 0 || text.back() != ')') return false;
  name = std::string(text.substr(0, open));
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.')) return false;
  }
  const std::string_view inner = text.substr(open + 6, text.size() - open - 7);
  Json::Object args;
  size_t i = 0;
  for (;;) {
    i = skip_space(inner, i);
    if (i >= inner.size()) break;
    const size_t key_start = i;
    while (i < inner.size() &&
           (std::isalnum(static_cast<unsigned char>(inner[i])) || inner[i] == '_'))
      ++i;
    if (i == key_start) return false;
    const std::string key(inner.substr(key_start, i - key_start));
    i = skip_space(inner, i);
    if (i >= inner.size() || inner[i] != '=') return false;
    i = skip_space(inner, i + 1);
    if (i >= inner.size()) return false;
    if (inner[i] == '"' || inner[i] == '\'') {
      const char quote = inner[i++];
      std::string value;
      for (;; ++i) {
        if (i >= inner.size()) return false;
        if (inner[i] == quote) break;
        if (inner[i] == '\\' && i + 1 < inner.size()) {
          const char e = inner[++i];
          value += e == 'n' ? '\n' : e == 't' ? '\t' : e;
        } else {
          value += inner[i];
        }
      }
      ++i;
      args[key] = Json(value);
    } else {
      const size_t start = i;
      while (i < inner.size() && inner[i] != ',') ++i;
      const std::string_view token = trim(inner.substr(start, i - start));
      if (token == "True")
        args[key] = Json(true);
      else if (token == "False")
        args[key] = Json(false);
      else if (token == "None")
        args[key] = Json();
      else {
        try {
          const Json number = Json::parse(token);
          if (!number.is_number()) return false;
          args[key] = number;
        } catch (const Error&) {
          return false;
        }
      }
    }
    i = skip_space(inner, i);
    if (i < inner.size()) {
      if (inner[i] != ',') return false;
      ++i;
    }
  }
  arguments = Json(std::move(args)).dump();
  return true;
}

}  // namespace

OutputFormat detect_output_format(std::string_view tmpl) {
  OutputFormat f;
  if (contains(tmpl, kHarmonyChannel) && contains(tmpl, kHarmonyMessage)) {
    f.tool_calls = ToolCallSyntax::kHarmony;
    f.reasoning = ReasoningSyntax::kHarmony;
    return f;
  }
  if (contains(tmpl, kDsCallsBegin) || contains(tmpl, kDsCallBegin)) {
    f.tool_calls = ToolCallSyntax::kDeepSeekR1;
  } else if (contains(tmpl, kMistralCalls)) {
    f.tool_calls = ToolCallSyntax::kMistral;
  } else if (contains(tmpl, kGraniteCall)) {
    f.tool_calls = ToolCallSyntax::kGranite;
  } else if (contains(tmpl, kHermesOpen)) {
    f.tool_calls = ToolCallSyntax::kHermes;
  } else if (contains(tmpl, kPythonTag) ||
             (contains(tmpl, "<|start_header_id|>") && contains(tmpl, "ipython"))) {
    f.tool_calls = ToolCallSyntax::kLlama3;
  }
  if (contains(tmpl, "[THINK]")) {
    f.reasoning = ReasoningSyntax::kMistral;
  } else if (contains(tmpl, "<think>") || contains(tmpl, "</think>")) {
    f.reasoning =
        contains(tmpl, kGraniteResponseOpen) ? ReasoningSyntax::kGranite : ReasoningSyntax::kThink;
  }
  return f;
}

bool prompt_opens_reasoning(std::string_view prompt, ReasoningSyntax reasoning) {
  std::string_view open = "<think>", close = "</think>";
  if (reasoning == ReasoningSyntax::kMistral) {
    open = "[THINK]";
    close = "[/THINK]";
  } else if (reasoning != ReasoningSyntax::kThink && reasoning != ReasoningSyntax::kGranite) {
    return false;
  }
  const size_t at = prompt.rfind(open);
  return at != std::string::npos && prompt.find(close, at) == std::string::npos;
}

void OutputParser::Sink::put(std::string_view text, std::string& out) {
  if (at_start) {
    text.remove_prefix(skip_space(text));
    if (text.empty()) return;
    at_start = false;
  }
  size_t end = text.size();
  while (end > 0 && is_space(text[end - 1])) --end;
  if (end == 0) {
    pending_space.append(text);
    return;
  }
  out += pending_space;
  out.append(text.substr(0, end));
  pending_space.assign(text.substr(end));
}

ReasoningTags reasoning_tags(ReasoningSyntax reasoning) {
  switch (reasoning) {
    case ReasoningSyntax::kThink:
    case ReasoningSyntax::kGranite:
      return {"<think>", "</think>"};
    case ReasoningSyntax::kMistral:
      return {"[THINK]", "[/THINK]"};
    case ReasoningSyntax::kNone:
    case ReasoningSyntax::kHarmony:
      break;
  }
  return {};
}

OutputParser::OutputParser(OutputFormat format, uint64_t id_seed)
    : format_(format), id_rng_(id_seed) {
  const ReasoningTags tags = reasoning_tags(format_.reasoning);
  open_tag_ = tags.open;
  close_tag_ = tags.close;
  switch (format_.tool_calls) {
    case ToolCallSyntax::kHermes:
      content_markers_ = {std::string(kHermesOpen)};
      break;
    case ToolCallSyntax::kLlama3:
      content_markers_ = {std::string(kPythonTag)};
      break;
    case ToolCallSyntax::kMistral:
      content_markers_ = {std::string(kMistralCalls)};
      break;
    case ToolCallSyntax::kDeepSeekR1:
      content_markers_ = {std::string(kDsCallsBegin), std::string(kDsCallBegin)};
      break;
    case ToolCallSyntax::kGranite:
      content_markers_ = {std::string(kGraniteCall)};
      break;
    default:
      break;
  }
  if (format_.reasoning == ReasoningSyntax::kGranite) {
    content_markers_.push_back(std::string(kGraniteResponseOpen));
    content_markers_.push_back(std::string(kGraniteResponseClose));
  }
}

OutputDelta OutputParser::feed(std::string_view text) {
  OutputDelta d;
  buf_.append(text);
  while (step(d, false)) {
  }
  total_.reasoning += d.reasoning;
  total_.content += d.content;
  total_.tool_calls.insert(total_.tool_calls.end(), d.tool_calls.begin(), d.tool_calls.end());
  return d;
}

OutputDelta OutputParser::finish() {
  OutputDelta d;
  while (step(d, true)) {
  }
  buf_.clear();
  reasoning_.begin();  // trailing whitespace at the very end is dropped
  content_.begin();
  total_.reasoning += d.reasoning;
  total_.content += d.content;
  total_.tool_calls.insert(total_.tool_calls.end(), d.tool_calls.begin(), d.tool_calls.end());
  return d;
}

std::string OutputParser::new_id() {
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += kChars[id_rng_() % 62];
  return id;
}

void OutputParser::enter_content() {
  mode_ = Mode::kContent;
  content_.begin();
  json_call_allowed_ = true;
}

void OutputParser::enter_json(JsonUse use, std::string raw_prefix) {
  mode_ = Mode::kJson;
  json_use_ = use;
  raw_prefix_ = std::move(raw_prefix);
  json_scanned_ = 0;
  json_depth_ = 0;
  json_in_string_ = json_escape_ = false;
}

void OutputParser::give_up(std::string_view raw, OutputDelta& d) {
  content_.put(raw, d.content);
  mode_ = Mode::kContent;
  json_call_allowed_ = false;
}

bool OutputParser::add_call(std::string name, std::string_view arguments_json, std::string id,
                            OutputDelta& d) {
  if (name.empty()) return false;
  Json args;
  try {
    args = Json::parse(trim(arguments_json));
  } catch (const Error&) {
    return false;
  }
  if (!args.is_object()) return false;
  d.tool_calls.push_back({id.empty() ? new_id() : std::move(id), std::move(name), args.dump()});
  return true;
}

bool OutputParser::add_calls(std::string_view json, JsonUse use, OutputDelta& d) {
  Json value;
  try {
    value = Json::parse(trim(json));
  } catch (const Error&) {
    return false;
  }
  std::vector<const Json*> objects;
  if (use == JsonUse::kCallArray && value.is_array()) {
    for (const Json& v : value.as_array()) objects.push_back(&v);
  } else {
    objects.push_back(&value);
  }
  std::vector<ToolCall> calls;
  for (const Json* obj : objects) {
    if (!obj->is_object()) return false;
    const Json* fn = obj;
    if (const Json* f = obj->find("function"); f && f->is_object()) fn = f;  // OpenAI's shape
    const Json* name = fn->find("name");
    if (!name || !name->is_string() || name->as_string().empty()) return false;
    const Json* args = fn->find("arguments");
    if (!args) args = fn->find("parameters");
    std::string arguments = "{}";
    if (args && args->is_string()) {
      arguments = args->as_string();  // already JSON text
    } else if (args && !args->is_null()) {
      arguments = args->dump();
    }
    const Json* id = obj->find("id");
    calls.push_back({id && id->is_string() ? id->as_string() : "", name->as_string(), arguments});
  }
  if (calls.empty()) return false;
  for (ToolCall& c : calls) {
    if (c.id.empty()) c.id = new_id();
    d.tool_calls.push_back(std::move(c));
  }
  return true;
}

bool OutputParser::step(OutputDelta& d, bool final) {
  switch (mode_) {
    case Mode::kStart: {
      const size_t i = skip_space(buf_);
      const std::string_view rest = std::string_view(buf_).substr(i);
      if (format_.tool_calls == ToolCallSyntax::kHarmony ||
          format_.reasoning == ReasoningSyntax::kHarmony) {
        if (rest.empty() && !final) return false;
        if (starts_with(rest, kHarmonyChannel) || starts_with(rest, kHarmonyStart)) {
          buf_.erase(0, i);
          mode_ = Mode::kHarmonyHeader;
          return true;
        }
        if (!final && (starts_with(kHarmonyChannel, rest) || starts_with(kHarmonyStart, rest)))
          return false;
        enter_content();  // plain text without channels
        return true;
      }
      if (!open_tag_.empty()) {
        if (rest.empty() && !final) return false;
        if (starts_with(rest, open_tag_)) {
          buf_.erase(0, i + open_tag_.size());
          mode_ = Mode::kReasoning;
          reasoning_.begin();
          return true;
        }
        if (!final && starts_with(open_tag_, rest)) return false;
        if (format_.starts_in_reasoning) {
          mode_ = Mode::kReasoning;
          reasoning_.begin();
          return true;
        }
      }
      enter_content();
      return true;
    }

    case Mode::kReasoning: {
      const size_t pos = buf_.find(close_tag_);
      if (pos != std::string::npos) {
        reasoning_.put(std::string_view(buf_).substr(0, pos), d.reasoning);
        reasoning_.begin();
        buf_.erase(0, pos + close_tag_.size());
        enter_content();
        return true;
      }
      const size_t keep = final ? 0 : partial_marker(buf_, {close_tag_});
      reasoning_.put(std::string_view(buf_).substr(0, buf_.size() - keep), d.reasoning);
      buf_.erase(0, buf_.size() - keep);
      return false;
    }

    case Mode::kContent:
      return step_content(d, final);

    case Mode::kHermesCall: {
      const size_t pos = buf_.find(kHermesClose);
      if (pos == std::string::npos && !final) return false;
      const std::string body = buf_.substr(0, pos);
      buf_.erase(0, pos == std::string::npos ? buf_.size() : pos + kHermesClose.size());
      if (add_calls(body, JsonUse::kCallObject, d)) {
        enter_content();
      } else {
        give_up(raw_prefix_ + body + (pos == std::string::npos ? "" : std::string(kHermesClose)),
                d);
      }
      return true;
    }

    case Mode::kJson:
      return step_json(d, final);

    case Mode::kLlama3Next: {
      // More bare JSON calls may follow, separated by ';' or whitespace.
      size_t i = 0;
      while (i < buf_.size() && (is_space(buf_[i]) || buf_[i] == ';')) ++i;
      if (i == buf_.size()) {
        if (final) buf_.clear();
        return false;
      }
      buf_.erase(0, i);
      if (buf_[0] == '{') {
        enter_json(JsonUse::kCallObject, "");
      } else {
        enter_content();
        json_call_allowed_ = false;
      }
      return true;
    }

    case Mode::kPythonTag: {
      // Everything up to the end of the message is the call.
      const size_t end = std::min(buf_.find("<|eom_id|>"), buf_.find("<|eot_id|>"));
      if (end == std::string::npos && !final) return false;
      const std::string body(trim(std::string_view(buf_).substr(0, end)));
      buf_.erase(0, end == std::string::npos ? buf_.size() : end + 10);
      std::string name, arguments;
      bool ok = !body.empty() && body[0] == '{' && add_calls(body, JsonUse::kCallObject, d);
      if (!ok && parse_python_call(body, name, arguments)) ok = add_call(name, arguments, "", d);
      if (!ok && !body.empty()) {
        Json::Object code;
        code["code"] = Json(body);
        ok = add_call("python", Json(std::move(code)).dump(), "", d);
      }
      enter_content();
      return true;
    }

    case Mode::kMistralStart: {
      const size_t i = skip_space(buf_);
      if (i == buf_.size()) {
        if (!final) return false;
        give_up(raw_prefix_ + buf_, d);
        buf_.clear();
        return true;
      }
      raw_prefix_ += buf_.substr(0, i);
      buf_.erase(0, i);
      if (buf_[0] == '[') {
        enter_json(JsonUse::kCallArray, raw_prefix_);
      } else {
        mode_ = Mode::kMistralName;
      }
      return true;
    }

    case Mode::kMistralName: {
      const size_t pos = buf_.find(kMistralArgs);
      if (pos == std::string::npos) {
        if (!final && buf_.size() <= kMaxHeader) return false;
        give_up(raw_prefix_, d);
        return true;
      }
      const std::string head = buf_.substr(0, pos);
      const size_t id_at = head.find(kMistralCallId);
      const std::string name(trim(std::string_view(head).substr(0, id_at)));
      const std::string id =
          id_at == std::string::npos
              ? ""
              : std::string(trim(std::string_view(head).substr(id_at + kMistralCallId.size())));
      const bool valid = !name.empty() && std::none_of(name.begin(), name.end(), is_space);
      if (!valid) {
        give_up(raw_prefix_, d);
        return true;
      }
      call_name_ = name;
      call_id_ = id;
      const std::string raw = raw_prefix_ + head + std::string(kMistralArgs);
      buf_.erase(0, pos + kMistralArgs.size());
      enter_json(JsonUse::kMistralArgs, raw);
      return true;
    }

    case Mode::kDeepSeekBlock: {
      const size_t i = skip_space(buf_);
      if (i == buf_.size()) {
        if (final) buf_.clear();
        return false;
      }
      const std::string_view rest = std::string_view(buf_).substr(i);
      if (starts_with(rest, kDsCallBegin)) {
        buf_.erase(0, i + kDsCallBegin.size());
        mode_ = Mode::kDeepSeekCall;
        return true;
      }
      if (starts_with(rest, kDsCallsEnd)) {
        buf_.erase(0, i + kDsCallsEnd.size());
        enter_content();
        return true;
      }
      if (!final && (starts_with(kDsCallBegin, rest) || starts_with(kDsCallsEnd, rest)))
        return false;
      buf_.erase(0, i);
      enter_content();
      return true;
    }

    case Mode::kDeepSeekCall: {
      const size_t pos = buf_.find(kDsCallEnd);
      if (pos == std::string::npos && !final) return false;
      const std::string body = buf_.substr(0, pos);
      buf_.erase(0, pos == std::string::npos ? buf_.size() : pos + kDsCallEnd.size());
      bool ok = false;
      const size_t sep = body.find(kDsSep);
      if (sep != std::string::npos) {
        const std::string_view left = trim(std::string_view(body).substr(0, sep));
        std::string_view right = std::string_view(body).substr(sep + kDsSep.size());
        std::string name;
        if (left == "function") {  // R1: type, then the name on its own line and ```json args```
          const size_t nl = right.find('\n');
          name = std::string(trim(right.substr(0, nl)));
          right = nl == std::string::npos ? std::string_view() : right.substr(nl + 1);
        } else {  // V3.1: the name, then the arguments
          name = std::string(left);
        }
        right = trim(right);
        if (starts_with(right, "```")) {
          const size_t nl = right.find('\n');
          const size_t close = right.rfind("```");
          if (nl != std::string::npos && close > nl) right = right.substr(nl + 1, close - nl - 1);
        }
        ok = add_call(name, right, "", d);
      }
      if (ok) {
        mode_ = Mode::kDeepSeekBlock;
      } else {
        give_up(std::string(kDsCallBegin) + body +
                    (pos == std::string::npos ? "" : std::string(kDsCallEnd)),
                d);
      }
      return true;
    }

    case Mode::kHarmonyHeader: {
      const size_t pos = buf_.find(kHarmonyMessage);
      if (pos == std::string::npos) {
        if (final) {
          // An unfinished header carries no text; anything else is plain text.
          if (buf_.find("<|") == std::string::npos) content_.put(buf_, d.content);
          buf_.clear();
          return false;
        }
        if (buf_.size() <= kMaxHeader) return false;
        enter_content();
        return true;
      }
      const std::string header = buf_.substr(0, pos);
      buf_.erase(0, pos + kHarmonyMessage.size());
      channel_.clear();
      recipient_.clear();
      auto word_after = [&](std::string_view marker) {
        const size_t at = header.find(marker);
        if (at == std::string::npos) return std::string();
        size_t b = skip_space(header, at + marker.size()), e = b;
        while (e < header.size() && !is_space(header[e]) && header[e] != '<') ++e;
        return header.substr(b, e - b);
      };
      channel_ = word_after(kHarmonyChannel);
      recipient_ = word_after("to=");
      raw_prefix_.clear();  // collects a tool call's arguments
      mode_ = Mode::kHarmonyBody;
      if (channel_ == "analysis") {
        reasoning_.begin();
      } else {
        content_.begin();
      }
      return true;
    }

    case Mode::kHarmonyBody:
      return step_harmony_body(d, final);
  }
  return false;
}

bool OutputParser::step_content(OutputDelta& d, bool final) {
  if (format_.tool_calls == ToolCallSyntax::kLlama3 && json_call_allowed_) {
    const size_t i = skip_space(buf_);
    if (i == buf_.size()) {
      if (final) {
        content_.put(buf_, d.content);
        buf_.clear();
      }
      return false;
    }
    if (buf_[i] == '{') {
      content_.put(std::string_view(buf_).substr(0, i), d.content);
      buf_.erase(0, i);
      enter_json(JsonUse::kCallObject, "");
      return true;
    }
    json_call_allowed_ = false;
  }
  const auto [pos, which] = find_marker(buf_, content_markers_);
  if (pos == std::string::npos) {
    const size_t keep = final ? 0 : partial_marker(buf_, content_markers_);
    content_.put(std::string_view(buf_).substr(0, buf_.size() - keep), d.content);
    buf_.erase(0, buf_.size() - keep);
    return false;
  }
  content_.put(std::string_view(buf_).substr(0, pos), d.content);
  const std::string marker = content_markers_[which];
  buf_.erase(0, pos + marker.size());
  json_call_allowed_ = false;
  if (marker == kGraniteResponseOpen || marker == kGraniteResponseClose) return true;
  raw_prefix_ = marker;
  switch (format_.tool_calls) {
    case ToolCallSyntax::kHermes:
      mode_ = Mode::kHermesCall;
      break;
    case ToolCallSyntax::kLlama3:
      mode_ = Mode::kPythonTag;
      break;
    case ToolCallSyntax::kMistral:
      mode_ = Mode::kMistralStart;
      break;
    case ToolCallSyntax::kDeepSeekR1:
      mode_ = marker == kDsCallsBegin ? Mode::kDeepSeekBlock : Mode::kDeepSeekCall;
      break;
    case ToolCallSyntax::kGranite:
      enter_json(JsonUse::kCallArray, marker);
      break;
    default:
      break;
  }
  return true;
}

// Collects one JSON value (balanced braces and brackets, strings skipped) before parsing it.
bool OutputParser::step_json(OutputDelta& d, bool final) {
  for (; json_scanned_ < buf_.size(); ++json_scanned_) {
    const char c = buf_[json_scanned_];
    if (json_depth_ == 0) {
      if (is_space(c)) continue;
      if (c != '{' && c != '[') {
        give_up(raw_prefix_, d);
        return true;
      }
      json_depth_ = 1;
      continue;
    }
    if (json_in_string_) {
      if (json_escape_)
        json_escape_ = false;
      else if (c == '\\')
        json_escape_ = true;
      else if (c == '"')
        json_in_string_ = false;
      continue;
    }
    if (c == '"') {
      json_in_string_ = true;
    } else if (c == '{' || c == '[') {
      if (++json_depth_ > kMaxJsonDepth) {
        give_up(raw_prefix_, d);
        return true;
      }
    } else if ((c == '}' || c == ']') && --json_depth_ == 0) {
      const std::string text = buf_.substr(0, json_scanned_ + 1);
      buf_.erase(0, json_scanned_ + 1);
      bool ok = false;
      if (json_use_ == JsonUse::kMistralArgs)
        ok = add_call(call_name_, text, call_id_, d);
      else
        ok = add_calls(text, json_use_, d);
      if (!ok) {
        give_up(raw_prefix_ + text, d);
      } else if (json_use_ == JsonUse::kCallObject) {
        mode_ = Mode::kLlama3Next;
      } else {
        enter_content();
      }
      return true;
    }
  }
  if (!final) return false;
  give_up(raw_prefix_ + buf_, d);
  buf_.clear();
  return true;
}

bool OutputParser::step_harmony_body(OutputDelta& d, bool final) {
  static const std::vector<std::string> kEnds = {"<|end|>", "<|call|>", "<|return|>",
                                                 std::string(kHarmonyStart),
                                                 std::string(kHarmonyChannel)};
  const bool is_call = starts_with(recipient_, "functions.");
  auto put = [&](std::string_view text) {
    if (is_call)
      raw_prefix_.append(text);
    else if (channel_ == "analysis")
      reasoning_.put(text, d.reasoning);
    else
      content_.put(text, d.content);
  };
  const auto [pos, which] = find_marker(buf_, kEnds);
  if (pos == std::string::npos && !final) {
    const size_t keep = partial_marker(buf_, kEnds);
    put(std::string_view(buf_).substr(0, buf_.size() - keep));
    buf_.erase(0, buf_.size() - keep);
    return false;
  }
  put(std::string_view(buf_).substr(0, pos));
  if (pos == std::string::npos) {
    buf_.clear();
  } else {
    // A new header may start without an end marker: leave it for the header.
    const bool header_next = which >= 3;
    buf_.erase(0, header_next ? pos : pos + kEnds[which].size());
  }
  if (is_call && !add_call(recipient_.substr(10), raw_prefix_, "", d)) {
    content_.begin();
    content_.put(raw_prefix_, d.content);
  }
  if (channel_ == "analysis") reasoning_.begin();
  mode_ = Mode::kHarmonyHeader;
  return pos != std::string::npos;
}

}  // namespace muse
