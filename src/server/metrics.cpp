#include "server/metrics.h"

#include <cstdio>

#include "runtime/scheduler.h"

namespace muse {

Metrics::Metrics() {
  const std::vector<double> bounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
  for (Histogram* h : {&latency_, &ttft_}) {
    h->bounds = bounds;
    h->counts.assign(bounds.size() + 1, 0);
  }
}

void Metrics::Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds.size() && v > bounds[i]) ++i;
  ++counts[i];
  sum += v;
  ++count;
}

void Metrics::Histogram::render(const std::string& name, const std::string& help, std::string& out) const {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
  unsigned long long cumulative = 0;
  char line[160];
  for (size_t i = 0; i <= bounds.size(); ++i) {
    cumulative += counts[i];
    if (i < bounds.size()) std::snprintf(line, sizeof line, "%s_bucket{le=\"%g\"} %llu\n", name.c_str(), bounds[i], cumulative);
    else std::snprintf(line, sizeof line, "%s_bucket{le=\"+Inf\"} %llu\n", name.c_str(), cumulative);
    out += line;
  }
  std::snprintf(line, sizeof line, "%s_sum %.6f\n%s_count %llu\n", name.c_str(), sum, name.c_str(), count);
  out += line;
}

void Metrics::request_done(const std::string& endpoint, int status, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{endpoint, status}];
  latency_.observe(seconds);
}

void Metrics::first_token(double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  ttft_.observe(seconds);
}

void Metrics::tokens(long long prompt, long long completion) {
  std::lock_guard<std::mutex> lock(mu_);
  prompt_tokens_ += prompt;
  completion_tokens_ += completion;
}

void Metrics::started() {
  std::lock_guard<std::mutex> lock(mu_);
  ++in_flight_;
}

void Metrics::finished() {
  std::lock_guard<std::mutex> lock(mu_);
  --in_flight_;
}

std::string Metrics::render(const Scheduler& scheduler, size_t kv_budget_bytes) const {
  // The scheduler's gauges first: its lock waits out a forward pass, which must not hold up
  // every request's bookkeeping behind this one.
  const int running = scheduler.running(), waiting = scheduler.waiting(), cached = scheduler.cached_blocks();
  const size_t kv = scheduler.kv_bytes();
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  char line[256];
  out += "# HELP muse_requests_total HTTP requests by endpoint and status.\n# TYPE muse_requests_total counter\n";
  for (const auto& [key, n] : requests_) {
    std::snprintf(line, sizeof line, "muse_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n", key.first.c_str(),
                  key.second, n);
    out += line;
  }
  auto value = [&](const char* name, const char* type, const char* help, double v) {
    std::snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
    out += line;
  };
  value("muse_prompt_tokens_total", "counter", "Prompt tokens of finished requests.", double(prompt_tokens_));
  value("muse_completion_tokens_total", "counter", "Generated tokens of finished requests.", double(completion_tokens_));
  value("muse_requests_in_flight", "gauge", "Requests generating now.", in_flight_);
  value("muse_scheduler_running", "gauge", "Sequences the scheduler advances together.", running);
  value("muse_scheduler_waiting", "gauge", "Sequences queued for admission.", waiting);
  value("muse_kv_bytes_used", "gauge", "KV cache bytes in use (shared blocks counted once).", double(kv));
  value("muse_kv_bytes_budget", "gauge", "KV cache budget in bytes.", double(kv_budget_bytes));
  value("muse_prefix_cache_blocks", "gauge", "KV blocks the prefix cache holds.", cached);
  latency_.render("muse_request_duration_seconds", "Time from request to its last byte.", out);
  ttft_.render("muse_time_to_first_token_seconds", "Time from request to its first generated token.", out);
  return out;
}

}  // namespace muse
