#include "reasoning/parallel_thinking.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <limits>
#include <map>
#include <mutex>

#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/utf8.h"

namespace muse {

std::string answer_after_thinking(const std::string& text) {
  const size_t close = text.rfind("</think>");
  const size_t open = text.rfind("<think>");
  if (open != std::string::npos && (close == std::string::npos || close < open))
    return "";  // still thinking
  std::string a = close == std::string::npos ? text : text.substr(close + 8);
  const size_t b = a.find_first_not_of(" \t\r\n"), e = a.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? std::string() : a.substr(b, e - b + 1);
}

Json synthesis_messages(const Json& messages, const std::vector<TraceResult>& traces) {
  if (!messages.is_array() || messages.as_array().empty()) fail("synthesis: no messages");
  Json out = messages;
  Json::Array& list = out.mutable_array();
  const auto last_user = std::find_if(list.rbegin(), list.rend(), [](const Json& m) {
    const Json* role = m.is_object() ? m.find("role") : nullptr;
    return role && role->is_string() && role->as_string() == "user";
  });
  if (last_user == list.rend()) fail("synthesis: no user message to extend");
  std::string text = last_user->at("content").is_string() ? last_user->at("content").as_string() : "";
  text += "\n\nIndependent attempts at this problem gave these answers:\n";
  int shown = 0;
  for (const TraceResult& t : traces) {
    if (t.answer.empty()) continue;
    char head[64];
    std::snprintf(head, sizeof head, "\nAttempt %d (confidence %.2f):\n", ++shown, double(t.confidence));
    text += head + (t.answer.size() > 2000 ? t.answer.substr(0, 2000) + " [...]" : t.answer) + "\n";
  }
  if (shown == 0) text += "\n(none of the attempts reached an answer)\n";
  text += "\nCompare them, settle any disagreement by checking the work, and give the final answer.";
  last_user->mutable_object().insert_or_assign("content", Json(text));
  return out;
}

std::string confidence_weighted_vote(const std::vector<TraceResult>& traces, double* share) {
  std::vector<std::string> order;  // answers in the order first seen
  std::map<std::string, double> weight;
  double total = 0;
  for (const TraceResult& t : traces) {
    if (t.answer.empty()) continue;
    if (!weight.count(t.answer)) order.push_back(t.answer);
    weight[t.answer] += t.confidence;
    total += t.confidence;
  }
  std::string best;
  double best_weight = -1;
  for (const std::string& a : order)
    if (weight[a] > best_weight) {
      best = a;
      best_weight = weight[a];
    }
  if (share) *share = best.empty() || total <= 0 ? 0 : best_weight / total;
  return best;
}

struct ParallelThinking::State {
  struct Live {
    TraceResult result;
    FinishReason finish = FinishReason::kCancelled;
    bool done = false;
    std::deque<float> window;
    double window_sum = 0;
    int seen = 0;
    int thinking_tokens = 0;
  };
  Scheduler& scheduler;
  const Tokenizer& tokenizer;
  ParallelThinkingParams params;
  mutable std::mutex mu;  // callbacks run on the stepping thread
  std::vector<Live> live;
  int open = 0;
  bool abandoned = false;

  State(Scheduler& s, const Tokenizer& t, const ParallelThinkingParams& p) : scheduler(s), tokenizer(t), params(p) {}

  void on_event(int i, const TokenEvent& e) {
    std::lock_guard<std::mutex> lock(mu);
    Live& t = live[size_t(i)];
    if (e.done) {
      t.finish = e.finish;
      t.done = t.result.finished = true;
      --open;
      try {
        t.thinking_tokens = scheduler.stats(e.id).thinking_tokens;
        t.result.cached_prompt_tokens = scheduler.stats(e.id).cached_tokens;
        scheduler.forget(e.id);
      } catch (const Error&) {
      }
    }
    if (e.token < 0 || abandoned) return;
    t.result.tokens.push_back(e.token);
    t.window.push_back(e.confidence);
    t.window_sum += e.confidence;
    if (int(t.window.size()) > params.window) {
      t.window_sum -= t.window.front();
      t.window.pop_front();
    }
    if (++t.seen < std::max(params.warmup, params.window) || e.done) return;
    const float group = float(t.window_sum / double(t.window.size()));
    t.result.confidence = std::min(t.result.confidence, group);
    if (params.stop_below > 0 && group < params.stop_below && !t.result.stopped_early) {
      t.result.stopped_early = true;
      scheduler.cancel(t.result.id);
    }
  }
};

ParallelThinking::ParallelThinking(Scheduler& scheduler, const Tokenizer& tokenizer,
                                   const std::vector<int32_t>& prompt, const ParallelThinkingParams& params) {
  if (params.traces < 1 || params.traces > 256) fail("parallel thinking: traces must be 1..256");
  if (params.window < 1 || params.warmup < 0 || params.top_k < 1)
    fail("parallel thinking: bad window, warmup or top_k");
  state_ = std::make_shared<State>(scheduler, tokenizer, params);
  State& st = *state_;
  st.live.resize(size_t(params.traces));
  for (State::Live& l : st.live) l.result.confidence = std::numeric_limits<float>::infinity();
  try {
    for (int i = 0; i < params.traces; ++i) {
      Request r;
      r.prompt = prompt;
      r.max_tokens = params.max_tokens;
      r.sampling = params.sampling;
      r.sampling.seed = params.sampling.seed + uint64_t(i);
      r.confidence_top_k = params.top_k;
      r.thinking = params.thinking;
      // The callbacks keep the state alive until each trace's last event.
      const RequestId id = scheduler.submit(std::move(r), [self = state_, i](const TokenEvent& e) { self->on_event(i, e); });
      std::lock_guard<std::mutex> lock(st.mu);
      st.live[size_t(i)].result.id = id;
      ++st.open;
    }
  } catch (...) {
    abandon();
    throw;
  }
}

ParallelThinking::~ParallelThinking() { abandon(); }

void ParallelThinking::abandon() {
  std::lock_guard<std::mutex> lock(state_->mu);
  if (state_->open == 0) return;
  state_->abandoned = true;
  for (const State::Live& l : state_->live)
    if (l.result.id >= 0 && !l.done) state_->scheduler.cancel(l.result.id);
}

bool ParallelThinking::done() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->open == 0;
}

std::vector<TraceResult> ParallelThinking::traces() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  std::vector<TraceResult> out;
  for (const State::Live& l : state_->live) out.push_back(l.result);
  return out;
}

ParallelThinkingResult ParallelThinking::result() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  const State& st = *state_;
  if (st.open > 0) fail("parallel thinking: the traces have not all ended");
  ParallelThinkingResult out;
  const auto& extract = st.params.extract_answer ? st.params.extract_answer : answer_after_thinking;
  for (const State::Live& l : st.live) {
    TraceResult t = l.result;
    if (!std::isfinite(t.confidence))  // too short for a full window: the mean of what it had
      t.confidence = l.window.empty() ? 0.0f : float(l.window_sum / double(l.window.size()));
    std::vector<int32_t> text_tokens;
    for (int32_t tok : t.tokens)
      if (!st.tokenizer.is_eog(tok)) text_tokens.push_back(tok);
    append_valid_utf8(st.tokenizer.decode(text_tokens, true), t.text, true);  // (a cut-off trace may end mid-character)
    // Only a trace that ended by itself votes: one stopped for low confidence, or cut off by
    // its token limit, may be mid-thought.
    if (!t.stopped_early && l.finish == FinishReason::kEndOfGeneration) t.answer = extract(t.text);
    t.thinking_tokens = l.thinking_tokens;
    out.generated_tokens += int(t.tokens.size());
    out.thinking_tokens += l.thinking_tokens;
    out.traces.push_back(std::move(t));
  }
  out.answer = confidence_weighted_vote(out.traces, &out.answer_weight);
  return out;
}

ParallelThinkingResult think_in_parallel(Scheduler& scheduler, const Tokenizer& tokenizer,
                                         const std::vector<int32_t>& prompt,
                                         const ParallelThinkingParams& params,
                                         const TracesCallback& on_step) {
  ParallelThinking run(scheduler, tokenizer, prompt, params);
  while (!run.done()) {
    if (!scheduler.step() && !run.done()) fail("parallel thinking: the scheduler stopped with traces unfinished");
    if (on_step) on_step(run.traces());
  }
  return run.result();
}

}  // namespace muse
