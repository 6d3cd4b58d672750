// What several `muse` commands share: the default model, thread counts, timing, and turning
// --tokens / -p / -f into token ids.
#pragma once
#include <chrono>
#include <set>
#include <cstdint>
#include <string>
#include <vector>

#include "cli/args.h"
#include "runtime/generate.h"

namespace muse {

class Tokenizer;

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t);

int thread_count(const Args& a);  // -t, default: all cores
std::string human_bytes(double bytes);

// -m, or the built-in default model (a small synthetic one written on first use).
std::string model_path(const Args& a);

// The whole file, or a one-line error naming it.
std::string read_text_file(const std::string& path);

// The prompt as ids: --tokens 1,2,3 as given, or -p TEXT / -f FILE through the tokenizer
// (with the model's BOS rule and special tokens parsed). Ids are checked against n_vocab.
// tokenizer may be null (a model without one) as long as the prompt is given as --tokens.
std::vector<int32_t> prompt_tokens(const Args& a, const Tokenizer* tokenizer, int n_vocab);

// The flags generation_from_args reads, to merge into a command's known flags.
std::set<std::string> generation_flags();
// -n, sampling (--temp --top-k --top-p --min-p --typical-p --repeat-penalty --repeat-last-n
// --presence-penalty --frequency-penalty --logit-bias ID=BIAS,... --seed), --stop (repeatable),
// and constrained decoding (--grammar FILE.gbnf | --json-schema FILE.json | --json).
GenerationRequest generation_from_args(const Args& a, int default_max_tokens);
// The usage text for those flags.
extern const char* const kGenerationUsage;

}  // namespace muse
