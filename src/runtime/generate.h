// One generation on one session: run the prompt (reusing whatever prefix the session already
// holds), then sample token by token, streaming valid UTF-8 text until an end-of-generation
// token, a stop string, the token limit or the caller says stop.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/sampler.h"

namespace muse {

class Drafter;
class Session;
class Tokenizer;

enum class FinishReason { kEndOfGeneration, kStopString, kLength, kContextFull, kCancelled };
const char* finish_reason_name(FinishReason r);  // OpenAI's words: "stop", "length", ...

// Compact thinking: a bound on the tokens a reasoning model spends inside its thinking block.
// When the budget is spent, the cue (say "\n\nTime is up; answering now.") and the closing
// token are inserted as if generated, so thinking ends at a token boundary with the model told
// why, and it goes on to answer; below min_tokens the closing token is suppressed (budget
// forcing: the model keeps thinking). Off while close_token < 0.
struct ThinkingBudget {
  int32_t open_token = -1;   // opens the block when generated (e.g. <think>); -1: none
  int32_t close_token = -1;  // closes it (e.g. </think>)
  bool starts_inside = false;  // the prompt already opened the block
  int max_tokens = -1;       // thinking tokens before the cue and close are inserted; -1: no limit
  int min_tokens = 0;
  std::vector<int32_t> cue;
  void validate(int n_vocab) const;  // throws for tokens outside the vocabulary
};

// Where one generation stands against its ThinkingBudget, token by token (the Generator and the
// Scheduler both follow it).
class ThinkingState {
 public:
  explicit ThinkingState(const ThinkingBudget& budget = {});
  // Before sampling: below the minimum, the close token is banned.
  void mask(float* logits) const;
  // The budget is already spent (a budget of 0): the close comes next, unsampled.
  bool must_close() const;
  // After `token` joined the output; returns the tokens to insert after it (the cue and the
  // close) when it spent the budget.
  std::vector<int32_t> accept(int32_t token);
  // After an inserted token joined the output.
  void accept_inserted(int32_t token);
  // Ends thinking now (an early exit): the tokens to insert (the close, after `cue`); none when
  // not thinking.
  std::vector<int32_t> close_now(const std::vector<int32_t>& cue);

  bool inside() const { return inside_; }
  int tokens() const { return tokens_; }  // generated inside the block (its close excluded)
  bool cut() const { return cut_; }       // the close was inserted by the budget
  int32_t close_token() const { return budget_.close_token; }

 private:
  ThinkingBudget budget_;
  bool inside_ = false, cut_ = false;
  int tokens_ = 0;
};

// The byte string of every token, for grammars (built once per tokenizer and shared).
std::shared_ptr<const GrammarVocab> make_grammar_vocab(const Tokenizer& tokenizer);

struct GenerationRequest {
  std::vector<int32_t> prompt;
  int max_tokens = 256;
  SamplingParams sampling;
  std::vector<std::string> stop;  // stop strings (not included in the text)
  std::shared_ptr<const Grammar> grammar;  // constrained decoding (GBNF or from a JSON schema)
  // Text of control tokens in the output (chat output parsers need "<tool_call>" and the like).
  bool render_special = false;
  ThinkingBudget thinking;
};

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated, including a final end-of-generation token
  std::string text;             // decoded, without the end token or a stop string
  FinishReason finish = FinishReason::kLength;
  int prompt_tokens = 0;
  int reused_tokens = 0;  // prompt tokens whose cache entries were already there
  int drafted_tokens = 0, accepted_tokens = 0;  // speculative decoding's guesses, and those kept
  int thinking_tokens = 0;     // generated inside the thinking block (its close token excluded)
  bool thinking_cut = false;   // the budget ran out and the close was inserted
  double prompt_seconds = 0, decode_seconds = 0;
  double prompt_rate() const;  // tokens per second of the part of the prompt that ran
  double decode_rate() const;
};

// Called after each generated token (end-of-generation tokens excepted) with the text that
// became safe to show (often empty: part of a character, or maybe the start of a stop
// string), and once more with token -1 for text still held back when generation ends;
// returning false cancels the generation.
using TokenCallback = std::function<bool(int32_t token, std::string_view text)>;

class Generator {
 public:
  Generator(Session& session, const Tokenizer& tokenizer);
  GenerationResult generate(const GenerationRequest& request, const TokenCallback& on_token = {});
  // Speculative decoding (runtime/speculative.h): each forward pass also checks up to
  // max_guesses of the drafter's guesses. The output is unchanged; null turns it off.
  void set_drafter(Drafter* drafter, int max_guesses = 8);

  // The tokens whose keys and values the session holds, in order.
  const std::vector<int32_t>& cached() const { return cached_; }
  void reset();

 private:
  Session& session_;
  const Tokenizer& tokenizer_;
  std::shared_ptr<const GrammarVocab> grammar_vocab_;  // built on first use of a grammar
  std::vector<int32_t> cached_;
  std::vector<float> logits_;  // one row per token of the last forward pass that asked
  Drafter* drafter_ = nullptr;
  int max_guesses_ = 0;
};

}  // namespace muse
