// Splits a model's output into reasoning, answer text and OpenAI-style tool calls, incrementally
// while it streams. Markers that arrive in pieces ("<tool_" then "call>") are held back until they
// are certain, so no half tag ever reaches the answer text.
//
// The parser reads text with special tokens rendered (e.g. "<tool_call>", "<|python_tag|>",
// "[TOOL_CALLS]", "<|channel|>"): decode generated tokens with their special text for it.
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace muse {

enum class ToolCallSyntax {
  kNone,
  kHermes,   // Qwen 2.5/3, Hermes: <tool_call>{"name":..,"arguments":..}</tool_call>
  kLlama3,   // Llama 3.x: a bare {"name":..,"parameters":..} or <|python_tag|>...
  kMistral,  // [TOOL_CALLS][{...}] or [TOOL_CALLS]name[ARGS]{...} ([CALL_ID]id optional)
  kDeepSeekR1,  // <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>name...
  kGranite,  // <|tool_call|>[{...}]
  kHarmony,  // gpt-oss: <|channel|>commentary to=functions.name ...<|message|>{...}<|call|>
};

enum class ReasoningSyntax {
  kNone,
  kThink,    // <think>...</think> (Qwen3, DeepSeek-R1, QwQ, ...)
  kMistral,  // [THINK]...[/THINK] (Magistral)
  kGranite,  // <think>...</think> then the answer in <response>...</response>
  kHarmony,  // gpt-oss: the analysis channel
};

struct OutputFormat {
  ToolCallSyntax tool_calls = ToolCallSyntax::kNone;
  ReasoningSyntax reasoning = ReasoningSyntax::kNone;
  // The prompt already opened the reasoning block (the template ends with "<think>\n"), so the
  // output starts inside it; see prompt_opens_reasoning().
  bool starts_in_reasoning = false;
};

// The text that opens and closes a reasoning block ("<think>", "</think>"); empty for
// syntaxes without such tags (none; gpt-oss, which uses channels).
struct ReasoningTags {
  const char* open = "";
  const char* close = "";
};
ReasoningTags reasoning_tags(ReasoningSyntax reasoning);

// The output format a chat template's source text implies (by the markers it mentions).
OutputFormat detect_output_format(std::string_view chat_template);
// Whether a rendered prompt ends inside an open reasoning block.
bool prompt_opens_reasoning(std::string_view prompt, ReasoningSyntax reasoning);

struct ToolCall {
  std::string id;  // the model's own id (Mistral) or a generated "call_..." one
  std::string name;
  std::string arguments;  // JSON text, as OpenAI's function.arguments
};

struct OutputDelta {
  std::string reasoning;
  std::string content;
  std::vector<ToolCall> tool_calls;  // complete calls only
  bool empty() const { return reasoning.empty() && content.empty() && tool_calls.empty(); }
};

class OutputParser {
 public:
  // id_seed makes the generated tool call ids reproducible.
  explicit OutputParser(OutputFormat format, uint64_t id_seed = std::random_device{}());

  // The next piece of output; returns what became certain.
  OutputDelta feed(std::string_view text);
  // The end of the output: everything still held back. A tool call that does not parse is
  // returned as answer text.
  OutputDelta finish();

  // Everything returned so far.
  const OutputDelta& total() const { return total_; }

 private:
  enum class Mode {
    kStart,
    kReasoning,
    kContent,
    kHermesCall,
    kJson,
    kLlama3Next,
    kPythonTag,
    kMistralStart,
    kMistralName,
    kDeepSeekBlock,
    kDeepSeekCall,
    kHarmonyHeader,
    kHarmonyBody,
  };
  enum class JsonUse { kCallObject, kCallArray, kMistralArgs };
  // Text going to reasoning or content: leading whitespace of a block is dropped and trailing
  // whitespace held until more text shows it is not trailing.
  struct Sink {
    bool at_start = true;
    std::string pending_space;
    void begin() {
      at_start = true;
      pending_space.clear();
    }
    void put(std::string_view text, std::string& out);
  };

  bool step(OutputDelta& d, bool final);
  bool step_content(OutputDelta& d, bool final);
  bool step_json(OutputDelta& d, bool final);
  bool step_harmony_body(OutputDelta& d, bool final);
  void enter_content();
  void enter_json(JsonUse use, std::string raw_prefix);
  // Adds the call in `json` (an object, or an array of objects for kCallArray) or returns false.
  bool add_calls(std::string_view json, JsonUse use, OutputDelta& d);
  bool add_call(std::string name, std::string_view arguments_json, std::string id, OutputDelta& d);
  void give_up(std::string_view raw, OutputDelta& d);  // a malformed call becomes content
  std::string new_id();

  OutputFormat format_;
  std::string open_tag_, close_tag_;
  std::vector<std::string> content_markers_;
  Mode mode_ = Mode::kStart;
  std::string buf_;  // received, not yet decided
  Sink reasoning_, content_;
  bool json_call_allowed_ = true;  // Llama 3: a bare JSON call may start here
  // A tool call being collected.
  std::string raw_prefix_;
  std::string call_name_, call_id_;
  JsonUse json_use_ = JsonUse::kCallObject;
  size_t json_scanned_ = 0;
  int json_depth_ = 0;
  bool json_in_string_ = false, json_escape_ = false;
  // Harmony: the current message's channel and recipient.
  std::string channel_, recipient_;
  std::mt19937_64 id_rng_;
  OutputDelta total_;
};

}  // namespace muse
