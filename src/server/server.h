// `muse serve`: the OpenAI-compatible HTTP API and the web app, on cpp-httplib, driving one
// batched scheduler so that concurrent requests share the engine.
//
// Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health,
// GET /metrics, and the web app at /. With API keys every endpoint but /health and the web app's
// static files needs one. SSE streams end with "data: [DONE]"; a client that goes away cancels
// its generation (streams notice at the next token, other requests within a second).
#pragma once
#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "server/api.h"
#include "server/auth.h"
#include "server/generation.h"
#include "server/metrics.h"

namespace httplib {
class Server;
}

namespace muse {

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port
  std::string api_key_file;  // empty: no keys
  ServerLimits limits;
  int http_threads = 64;  // connections served at once
  size_t kv_budget_bytes = 0;  // for /metrics
  bool log_requests = true;
};

class Server {
 public:
  Server(Engine& engine, const ServeOptions& options);
  ~Server();
  // Binds the socket (a one-line error when it cannot) and returns the port.
  int bind();
  // Serves until shutdown(); call after bind().
  void run();
  // Refuses new requests (503), waits up to `drain_seconds` for those in flight, then stops.
  void shutdown(double drain_seconds);
  int in_flight() const { return in_flight_.load(); }
  bool draining() const { return draining_.load(); }

 private:
  struct Call;
  void routes();
  bool authorize(const std::string& path, const std::string& authorization, int* key, std::string* error) const;

  Engine& engine_;
  ServeOptions options_;
  std::optional<ApiKeys> keys_;
  KeyLimiter limiter_;
  Metrics metrics_;
  std::unique_ptr<httplib::Server> http_;
  std::atomic<bool> draining_{false};
  std::atomic<bool> aborting_{false};  // the drain's time is up: cancel what still runs
  std::atomic<int> in_flight_{0};
  std::atomic<long long> next_id_{0};
};

// The web app's files, built into the binary: the body and content type of `path` (either may
// be null, to ask only whether it exists), or false.
bool web_asset(const std::string& path, std::string* body, std::string* content_type);

}  // namespace muse
