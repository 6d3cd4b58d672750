#include "runtime/generate.h"

#include <algorithm>
#include <chrono>

#include "model/session.h"
#include "runtime/stop.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace muse {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kEndOfGeneration:
    case FinishReason::kStopString:
      return "stop";
    case FinishReason::kLength:
    case FinishReason::kContextFull:
      return "length";
    case FinishReason::kCancelled:
      return "cancelled";
  }
  return "?";
}

double GenerationResult::prompt_rate() const {
  const int ran = prompt_tokens - reused_tokens;
  return prompt_seconds > 0 ? ran / prompt_seconds : 0;
}

double GenerationResult::decode_rate() const {
  // The first token comes from the prompt's logits; each later one costs a forward pass.
  return decode_seconds > 0 && tokens.size() > 1 ? double(tokens.size() - 1) / decode_seconds : 0;
}

Generator::Generator(Session& session, const Tokenizer& tokenizer)
    : session_(session), tokenizer_(tokenizer) {
  session_.reset();
}

void Generator::reset() {
  session_.reset();
  cached_.clear();
}

GenerationResult Generator::generate(const GenerationRequest& request, const TokenCallback& on_token) {
  using Clock = std::chrono::steady_clock;
  auto seconds = [](Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  };
  const std::vector<int32_t>& prompt = request.prompt;
  if (prompt.empty()) fail("the prompt is empty");
  if (int(prompt.size()) >= session_.n_ctx())
    fail("the prompt (", prompt.size(), " tokens) does not fit the context of ", session_.n_ctx(), " tokens");
  const int n_vocab = tokenizer_.n_vocab();
  logits_.resize(size_t(n_vocab));

  GenerationResult result;
  result.prompt_tokens = int(prompt.size());
  // Reuse the cached prefix; at least the last prompt token runs, for its logits.
  size_t keep = 0;
  while (keep < cached_.size() && keep + 1 < prompt.size() && cached_[keep] == prompt[keep]) ++keep;
  result.reused_tokens = int(keep);
  session_.truncate(int(keep));
  cached_.resize(keep);
  const auto t0 = Clock::now();
  session_.forward(prompt.data() + keep, int(prompt.size() - keep), logits_.data(), false);
  cached_.assign(prompt.begin(), prompt.end());
  result.prompt_seconds = seconds(t0);

  Sampler sampler(request.sampling);
  if (request.grammar) {
    if (!grammar_vocab_) {
      std::vector<std::string> pieces;
      pieces.reserve(size_t(n_vocab));
      // Control tokens have no text a grammar could match.
      for (int32_t id = 0; id < n_vocab; ++id) pieces.emplace_back(tokenizer_.piece(id, false));
      grammar_vocab_ = std::make_shared<GrammarVocab>(std::move(pieces), tokenizer_.eog_ids());
    }
    sampler.set_grammar(request.grammar, grammar_vocab_);
  }
  for (int32_t id : prompt) sampler.accept(id, /*apply_grammar=*/false);  // penalties see it
  StreamDecoder decoder(tokenizer_, request.render_special);
  StopMatcher stops(request.stop);
  auto emit = [&](int32_t token, const std::string& text) {
    result.text += text;
    return !on_token || on_token(token, text);
  };
  const auto t1 = Clock::now();
  result.finish = FinishReason::kLength;
  for (int i = 0; i < request.max_tokens; ++i) {
    const int32_t next = sampler.sample(logits_.data(), n_vocab);
    sampler.accept(next);
    result.tokens.push_back(next);
    if (tokenizer_.is_eog(next)) {
      result.finish = FinishReason::kEndOfGeneration;
      break;
    }
    const StopMatcher::Result step = stops.feed(decoder.push(next));
    if (!emit(next, step.text)) {
      result.finish = FinishReason::kCancelled;
      break;
    }
    if (step.reason == StopMatcher::Reason::kStopString) {
      result.finish = FinishReason::kStopString;
      break;
    }
    if (i + 1 == request.max_tokens) break;
    if (session_.n_past() >= session_.n_ctx()) {
      result.finish = FinishReason::kContextFull;
      break;
    }
    session_.forward(&next, 1, logits_.data(), false);
    cached_.push_back(next);
  }
  if (result.finish != FinishReason::kStopString && result.finish != FinishReason::kCancelled) {
    const StopMatcher::Result tail = stops.feed(decoder.flush());
    std::string rest = tail.text;
    if (tail.reason == StopMatcher::Reason::kStopString) result.finish = FinishReason::kStopString;
    else rest += stops.flush();
    if (!rest.empty()) emit(-1, rest);
  }
  result.decode_seconds = seconds(t1);
  return result;
}

}  // namespace muse
