// `muse serve`: the OpenAI-compatible API and the web app. SIGTERM or SIGINT drains: new
// requests get 503, those in flight finish (up to --drain seconds), then the process exits.
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <thread>

#include "chat/chat_template.h"
#include "cli/args.h"
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "model/model.h"
#include "runtime/scheduler.h"
#include "server/server.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace muse {

int cmd_serve(const Argv& argv) {
  const Args a(argv,
               {"-m", "-t", "-c", "--host", "--port", "--api-key-file", "--name", "--kv-budget-mb", "--max-tokens",
                "--max-body-kb", "--max-n", "--max-concurrent-per-key", "--rate-limit", "--drain", "--http-threads"},
               {"--quiet"});
  // Signals are taken by one thread (below), so every other thread must have them blocked:
  // block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const std::string path = model_path(a);
  const auto model = Model::load(path);
  const auto tokenizer = Tokenizer::from_gguf(model->file());
  const auto chat_template = ChatTemplate::from_gguf(model->file());
  ServeOptions o;
  o.host = a.get("--host", "127.0.0.1");
  o.port = int(a.get_int("--port", 8080));
  if (o.port < 0 || o.port > 65535) fail("--port must be 0..65535");
  o.api_key_file = a.get("--api-key-file");
  o.limits.max_context = int(std::min<long long>(a.get_int("-c", 4096), model->config().n_ctx_train));
  o.limits.max_tokens = int(a.get_int("--max-tokens", o.limits.max_context));
  o.limits.default_max_tokens = std::min(o.limits.default_max_tokens, o.limits.max_tokens);
  o.limits.max_body_bytes = size_t(a.get_int("--max-body-kb", 4096)) << 10;
  o.limits.max_n = int(a.get_int("--max-n", 8));
  o.limits.max_concurrent_per_key = int(a.get_int("--max-concurrent-per-key", 16));
  o.limits.requests_per_minute_per_key = a.get_double("--rate-limit", 0);
  o.http_threads = int(a.get_int("--http-threads", 64));
  o.log_requests = !a.has("--quiet");
  if (o.limits.max_tokens < 1 || o.limits.max_n < 1 || o.http_threads < 1 || o.limits.max_concurrent_per_key < 1)
    fail("--max-tokens, --max-n, --http-threads and --max-concurrent-per-key must be positive");
  const double drain = a.get_double("--drain", 30);

  ThreadPool pool(thread_count(a));
  SchedulerConfig sc;
  sc.max_context = o.limits.max_context;
  sc.kv_budget_bytes = size_t(a.get_int("--kv-budget-mb", 1024)) << 20;
  o.kv_budget_bytes = sc.kv_budget_bytes;
  Scheduler scheduler(*model, *tokenizer, pool, sc);
  std::string name = a.get("--name");
  if (name.empty()) {
    name = path.substr(path.find_last_of('/') + 1);
    if (name.size() > 5 && name.compare(name.size() - 5, 5, ".gguf") == 0) name.resize(name.size() - 5);
  }
  Engine engine(*model, *tokenizer, *chat_template, scheduler, name, o.limits);
  Server server(engine, o);
  const int port = server.bind();
  scheduler.start();
  std::fprintf(stderr, "muse serve: %s on http://%s:%d/ (OpenAI API at /v1, web app at /)%s\n", name.c_str(),
               o.host.c_str(), port, o.api_key_file.empty() ? "" : ", API keys required");
  std::fflush(stderr);

  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    std::fprintf(stderr, "muse serve: %s: draining %d request(s)\n", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                 server.in_flight());
    server.shutdown(drain);
  });
  server.run();
  // (run() returns after shutdown(); if the listener failed instead, wake the waiter.)
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  scheduler.stop();
  std::fprintf(stderr, "muse serve: stopped\n");
  return 0;
}

}  // namespace muse
