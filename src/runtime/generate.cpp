#include "runtime/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "model/session.h"
#include "runtime/speculative.h"
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

void ThinkingBudget::validate(int n_vocab) const {
  for (int32_t t : {open_token, close_token})
    if (t >= n_vocab) fail("thinking budget: token ", t, " is outside the vocabulary");
  for (int32_t t : cue)
    if (t < 0 || t >= n_vocab) fail("thinking budget: cue token ", t, " is outside the vocabulary");
}

ThinkingState::ThinkingState(const ThinkingBudget& budget)
    : budget_(budget), inside_(budget.close_token >= 0 && budget.starts_inside) {}

void ThinkingState::mask(float* logits) const {
  if (inside_ && tokens_ < budget_.min_tokens) logits[budget_.close_token] = -INFINITY;
}

bool ThinkingState::must_close() const {
  return inside_ && budget_.max_tokens >= 0 && tokens_ >= budget_.max_tokens;
}

std::vector<int32_t> ThinkingState::accept(int32_t token) {
  if (budget_.close_token < 0) return {};
  if (inside_ && token == budget_.close_token) {
    cut_ |= must_close();
    inside_ = false;
  } else if (inside_) {
    ++tokens_;
    if (must_close()) return close_now(budget_.cue);
  } else if (token == budget_.open_token) {
    inside_ = true;
  }
  return {};
}

void ThinkingState::accept_inserted(int32_t token) {
  if (token == budget_.close_token) cut_ = true;  // the close is in: the budget did it
}

std::vector<int32_t> ThinkingState::close_now(const std::vector<int32_t>& cue) {
  if (!inside_) return {};
  inside_ = false;
  std::vector<int32_t> inserted = cue;
  inserted.push_back(budget_.close_token);
  return inserted;
}

std::shared_ptr<const GrammarVocab> make_grammar_vocab(const Tokenizer& tokenizer) {
  std::vector<std::string> pieces;
  pieces.reserve(size_t(tokenizer.n_vocab()));
  // Control tokens have no text a grammar could match.
  for (int32_t id = 0; id < tokenizer.n_vocab(); ++id) pieces.emplace_back(tokenizer.piece(id, false));
  return std::make_shared<GrammarVocab>(std::move(pieces), tokenizer.eog_ids());
}

Generator::Generator(Session& session, const Tokenizer& tokenizer)
    : session_(session), tokenizer_(tokenizer) {
  session_.reset();
}

void Generator::set_drafter(Drafter* drafter, int max_guesses) {
  drafter_ = drafter;
  max_guesses_ = drafter ? std::max(0, max_guesses) : 0;
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
  // Rows of logits are the model's vocabulary wide; tokens are sampled among those the
  // tokenizer knows (a model may pad its vocabulary).
  const int stride = session_.n_vocab(), n_vocab = std::min(stride, tokenizer_.n_vocab());
  logits_.resize(size_t(stride) * size_t(1 + max_guesses_));
  request.sampling.validate(n_vocab);
  // A previous call that failed part-way may have noted tokens the session never stored.
  cached_.resize(std::min(cached_.size(), size_t(session_.n_past())));

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
    if (!grammar_vocab_) grammar_vocab_ = make_grammar_vocab(tokenizer_);
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
  // Row `row` of logits_ holds the logits that follow the cached tokens up to it. After a
  // speculative pass, guesses[row] is the guess cached after that row: if the sampled token
  // equals it, its keys and values are already in place and row + 1 is next, with no pass.
  std::vector<int32_t> guesses, batch;
  size_t row = 0;
  int pass_start = 0;  // guess k of the last pass sits at position pass_start + 1 + k
  int guess_budget = std::min(max_guesses_, 2);
  auto drop_rejected = [&] {
    if (row >= guesses.size()) return;
    const int valid = pass_start + 1 + int(row);
    session_.truncate(valid);
    cached_.resize(size_t(valid));
    guesses.clear();
  };
  request.thinking.validate(n_vocab);
  ThinkingState thinking(request.thinking);
  std::vector<int32_t> forced;  // tokens inserted after `next` (the budget's cue and close)
  for (int i = 0; i < request.max_tokens; ++i) {
    float* row_logits = logits_.data() + row * size_t(stride);
    thinking.mask(row_logits);
    // A budget spent before anything was sampled (a budget of 0): the close comes first.
    const int32_t next = thinking.must_close() ? thinking.close_token() : sampler.sample(row_logits, n_vocab);
    sampler.accept(next);
    result.tokens.push_back(next);
    forced = thinking.accept(next);
    if (tokenizer_.is_eog(next)) {
      result.finish = FinishReason::kEndOfGeneration;
      break;
    }
    StopMatcher::Result step = stops.feed(decoder.push(next));
    if (!emit(next, step.text)) {
      result.finish = FinishReason::kCancelled;
      break;
    }
    // Inserted tokens stream like generated ones (the limit counts them too).
    bool ended = false;
    for (int32_t t : forced) {
      if (step.reason == StopMatcher::Reason::kStopString || i + 1 == request.max_tokens) break;
      ++i;
      sampler.accept(t);
      result.tokens.push_back(t);
      step = stops.feed(decoder.push(t));
      thinking.accept_inserted(t);
      if (!emit(t, step.text)) {
        result.finish = FinishReason::kCancelled;
        ended = true;
        break;
      }
    }
    if (ended) break;
    if (step.reason == StopMatcher::Reason::kStopString) {
      result.finish = FinishReason::kStopString;
      break;
    }
    if (i + 1 == request.max_tokens) break;
    if (forced.empty() && row < guesses.size() && guesses[row] == next) {
      ++row;
      ++result.accepted_tokens;
      continue;
    }
    // A pass over k + 1 tokens costs more than a plain step, so the number of guesses follows
    // how many were right: doubling after a pass that kept them all, back to one more than
    // were kept otherwise.
    if (!guesses.empty())
      guess_budget = row == guesses.size() ? std::min(max_guesses_, 2 * guess_budget) : std::max(1, int(row) + 1);
    drop_rejected();
    if (session_.n_past() >= session_.n_ctx()) {
      result.finish = FinishReason::kContextFull;
      break;
    }
    // The forced tokens go in with `next`, as far as the context holds them.
    batch.assign(1, next);
    for (int32_t t : forced)
      if (session_.n_past() + int(batch.size()) < session_.n_ctx()) batch.push_back(t);
    if (batch.size() < forced.size() + 1) {
      result.finish = FinishReason::kContextFull;
      break;
    }
    cached_.insert(cached_.end(), batch.begin(), batch.end());
    // Guesses only for tokens that can still be emitted and positions the cache can hold.
    const int budget = std::min({guess_budget, request.max_tokens - i - 2,
                                 session_.n_ctx() - session_.n_past() - int(batch.size())});
    guesses = drafter_ && budget > 0 ? drafter_->propose(cached_, budget) : std::vector<int32_t>();
    if (int(guesses.size()) > budget) guesses.resize(size_t(std::max(0, budget)));
    batch.insert(batch.end(), guesses.begin(), guesses.end());
    pass_start = session_.n_past() + int(forced.size());
    const size_t first_row = batch.size() - guesses.size() - 1;
    if (logits_.size() < batch.size() * size_t(stride)) logits_.resize(batch.size() * size_t(stride));
    session_.forward(batch.data(), int(batch.size()), logits_.data(), /*all_logits=*/true);
    if (first_row > 0)  // rows before the last inserted token are not needed
      std::memmove(logits_.data(), logits_.data() + first_row * size_t(stride), (guesses.size() + 1) * size_t(stride) * 4);
    cached_.insert(cached_.end(), guesses.begin(), guesses.end());
    result.drafted_tokens += int(guesses.size());
    row = 0;
  }
  drop_rejected();  // the cache keeps only what was emitted
  result.thinking_tokens = thinking.tokens();
  result.thinking_cut = thinking.cut();
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
