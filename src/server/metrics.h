// Prometheus text metrics: requests by endpoint and status, tokens, requests in flight, the
// scheduler's queue and KV use, and histograms of latency and time to first token.
#pragma once
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace muse {

class Scheduler;

class Metrics {
 public:
  Metrics();
  void request_done(const std::string& endpoint, int status, double seconds);
  void first_token(double seconds);
  void tokens(long long prompt, long long completion);
  void started();   // a request began generating
  void finished();  // ... and ended
  // The exposition text, with the scheduler's gauges read now.
  std::string render(const Scheduler& scheduler, size_t kv_budget_bytes) const;

 private:
  struct Histogram {
    std::vector<double> bounds;
    std::vector<unsigned long long> counts;  // one per bound, plus +Inf
    double sum = 0;
    unsigned long long count = 0;
    void observe(double v);
    void render(const std::string& name, const std::string& help, std::string& out) const;
  };
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, unsigned long long> requests_;
  long long prompt_tokens_ = 0, completion_tokens_ = 0;
  int in_flight_ = 0;
  Histogram latency_, ttft_;
};

}  // namespace muse
