#include "reasoning/parallel_thinking.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <map>

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

ParallelThinkingResult think_in_parallel(Scheduler& scheduler, const Tokenizer& tokenizer,
                                         const std::vector<int32_t>& prompt,
                                         const ParallelThinkingParams& params,
                                         const TracesCallback& on_step) {
  if (params.traces < 1 || params.traces > 256) fail("parallel thinking: traces must be 1..256");
  if (params.window < 1 || params.warmup < 0 || params.top_k < 1)
    fail("parallel thinking: bad window, warmup or top_k");
  struct Live {
    TraceResult result;
    FinishReason finish = FinishReason::kCancelled;
    std::deque<float> window;
    double window_sum = 0;
    int seen = 0;
  };
  std::vector<Live> live(size_t(params.traces));
  try {
    for (int i = 0; i < params.traces; ++i) {
      Request r;
      r.prompt = prompt;
      r.max_tokens = params.max_tokens;
      r.sampling = params.sampling;
      r.sampling.seed = params.sampling.seed + uint64_t(i);
      r.confidence_top_k = params.top_k;
      Live& l = live[size_t(i)];
      l.result.confidence = std::numeric_limits<float>::infinity();
      // Callbacks run on this thread (it steps the scheduler), after each step.
      l.result.id = scheduler.submit(std::move(r), [&, i](const TokenEvent& e) {
        Live& t = live[size_t(i)];
        if (e.done) t.finish = e.finish;
        if (e.token < 0) return;
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
      });
    }
    std::vector<TraceResult> snapshot;
    while (scheduler.step()) {
      if (!on_step) continue;
      snapshot.clear();
      for (const Live& l : live) snapshot.push_back(l.result);
      on_step(snapshot);
    }
  } catch (...) {
    // The callbacks point into this frame: end every trace before it goes.
    try {
      for (const Live& l : live)
        if (l.result.id >= 0) scheduler.cancel(l.result.id);
      while (scheduler.step()) {
      }
      for (const Live& l : live)
        if (l.result.id >= 0) scheduler.forget(l.result.id);
    } catch (...) {  // the first error is the one to report
    }
    throw;
  }
  ParallelThinkingResult out;
  const auto& extract = params.extract_answer ? params.extract_answer : answer_after_thinking;
  for (Live& l : live) {
    TraceResult& t = l.result;
    if (!std::isfinite(t.confidence))  // too short for a full window: the mean of what it had
      t.confidence = l.window.empty() ? 0.0f : float(l.window_sum / double(l.window.size()));
    std::vector<int32_t> text_tokens;
    for (int32_t tok : t.tokens)
      if (!tokenizer.is_eog(tok)) text_tokens.push_back(tok);
    append_valid_utf8(tokenizer.decode(text_tokens, true), t.text,
                      true);  // (a cut-off trace may end mid-character)
    // Only a trace that ended by itself votes: one stopped for low confidence, or cut off by
    // its token limit, may be mid-thought.
    if (!t.stopped_early && l.finish == FinishReason::kEndOfGeneration) t.answer = extract(t.text);
    const RequestStats st = scheduler.stats(t.id);
    t.cached_prompt_tokens = st.cached_tokens;
    out.generated_tokens += int(t.tokens.size());
    scheduler.forget(t.id);
    out.traces.push_back(std::move(t));
  }
  out.answer = confidence_weighted_vote(out.traces, &out.answer_weight);
  return out;
}

}  // namespace muse
