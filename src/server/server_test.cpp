// The HTTP server end to end on a random-weight model, on a free loopback port: the OpenAI
// response shapes (plain and streamed), errors with the right status, limits, API keys, stop
// strings, seeds, JSON schemas, log-probabilities, Contemplating mode, a client that goes away,
// metrics, and draining on shutdown.
#include "server/server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <fstream>
#include <thread>

#include "chat/chat_template.h"
#include "runtime/scheduler.h"
#include "testing/test_support.h"
#include "tokenizer/tokenizer.h"
#include "util/thread_pool.h"

namespace muse {
namespace {

class ServerTest : public testing::SynthModelTest<testing::SmallQwen3> {
 protected:
  void start(ServeOptions o = {}) {
    chat_template_ = ChatTemplate::from_gguf(model_->file());
    SchedulerConfig sc;
    sc.max_context = 512;
    sc.kv_budget_bytes = size_t(16) << 20;
    scheduler_ = std::make_unique<Scheduler>(*model_, *tokenizer_, pool_, sc);
    o.port = 0;
    o.log_requests = false;
    o.limits.max_context = 512;
    o.limits.max_tokens = 256;
    o.limits.default_max_tokens = 16;
    o.limits.max_body_bytes = 64 << 10;
    engine_ = std::make_unique<Engine>(*model_, *tokenizer_, *chat_template_, *scheduler_, "test-model", o.limits);
    server_ = std::make_unique<Server>(*engine_, o);
    port_ = server_->bind();
    scheduler_->start();
    thread_ = std::thread([this] { server_->run(); });
  }
  void TearDown() override {
    if (server_) server_->shutdown(5);
    if (thread_.joinable()) thread_.join();
    if (scheduler_) scheduler_->stop();
  }
  httplib::Client client(const std::string& key = "") const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60, 0);
    if (!key.empty()) c.set_bearer_token_auth(key);
    return c;
  }
  httplib::Result post(const std::string& path, const std::string& body, const std::string& key = "") const {
    return client(key).Post(path, body, "application/json");
  }
  static Json json_of(const httplib::Result& r) {
    EXPECT_TRUE(r);
    return Json::parse(r->body);
  }
  // The data payloads of an SSE body.
  static std::vector<std::string> events(const std::string& body) {
    std::vector<std::string> out;
    size_t at = 0;
    while ((at = body.find("data: ", at)) != std::string::npos) {
      const size_t end = body.find("\n\n", at);
      out.push_back(body.substr(at + 6, end - at - 6));
      at = end;
    }
    return out;
  }
  // Waits (up to 10 s, so that a miss fails instead of hanging) until `done` holds.
  template <typename Pred>
  static bool wait_until(Pred done) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done()) {
      if (std::chrono::steady_clock::now() > until) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  }
  // A chat request body that cannot end early (its end-of-generation tokens are banned), so it
  // is still running when a test looks.
  std::string long_chat(int max_tokens, bool stream) const {
    Json::Object bias;
    for (int32_t id : tokenizer_->eog_ids()) bias.emplace(std::to_string(id), Json(-100));
    return R"({"messages":[{"role":"user","content":"x"}],"max_tokens":)" + std::to_string(max_tokens) +
           (stream ? R"(,"stream":true)" : "") + R"(,"logit_bias":)" + Json(std::move(bias)).dump() + "}";
  }
  static std::string chat(const std::string& extra = "") {
    return R"({"messages":[{"role":"user","content":"Tell me a story."}],"max_tokens":12,"temperature":0)" + extra + "}";
  }

  ThreadPool pool_{2};
  std::unique_ptr<ChatTemplate> chat_template_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
  int port_ = 0;
};

TEST_F(ServerTest, ChatCompletionHasOpenAIsShape) {
  start();
  const Json r = json_of(post("/v1/chat/completions", chat()));
  EXPECT_EQ(r.at("object").as_string(), "chat.completion");
  EXPECT_EQ(r.at("model").as_string(), "test-model");
  const Json& choice = r.at("choices")[0];
  EXPECT_EQ(choice.at("message").at("role").as_string(), "assistant");
  EXPECT_TRUE(choice.at("message").at("content").is_string());
  EXPECT_EQ(choice.at("finish_reason").as_string(), "length");
  EXPECT_EQ(r.at("usage").at("completion_tokens").as_int(), 12);
  EXPECT_EQ(r.at("usage").at("total_tokens").as_int(),
            r.at("usage").at("prompt_tokens").as_int() + r.at("usage").at("completion_tokens").as_int());
  // Timings: reasoning and answer apart (this model does not reason: all of it is answer).
  const Json& timing = r.at("timings")[0];
  EXPECT_EQ(timing.at("predicted_n").as_int(), 12);
  EXPECT_EQ(timing.at("reasoning_n").as_int() + timing.at("answer_n").as_int(), 12);
  EXPECT_GT(timing.at("predicted_ms").as_number(), 0);
  EXPECT_GE(timing.at("prompt_ms").as_number(), 0);
  EXPECT_NEAR(timing.at("reasoning_ms").as_number() + timing.at("answer_ms").as_number(),
              timing.at("predicted_ms").as_number(), 1e-6);
  // Greedy: the same again, and the same streamed.
  EXPECT_EQ(json_of(post("/v1/chat/completions", chat())).at("choices")[0].at("message").at("content").as_string(),
            choice.at("message").at("content").as_string());
  const auto s = post("/v1/chat/completions", chat(R"(,"stream":true,"stream_options":{"include_usage":true})"));
  ASSERT_TRUE(s);
  EXPECT_EQ(s->get_header_value("Content-Type"), "text/event-stream");
  const std::vector<std::string> ev = events(s->body);
  ASSERT_GE(ev.size(), 3u);
  EXPECT_EQ(ev.back(), "[DONE]");
  std::string streamed, finish;
  for (size_t i = 0; i + 1 < ev.size(); ++i) {
    const Json c = Json::parse(ev[i]);
    EXPECT_EQ(c.at("object").as_string(), "chat.completion.chunk");
    for (const Json& ch : c.at("choices").as_array()) {
      if (const Json* t = ch.at("delta").find("content")) streamed += t->as_string();
      if (ch.at("finish_reason").is_string()) finish = ch.at("finish_reason").as_string();
    }
  }
  EXPECT_EQ(streamed, choice.at("message").at("content").as_string());
  EXPECT_EQ(finish, "length");
  const Json usage = Json::parse(ev[ev.size() - 2]);
  EXPECT_TRUE(usage.at("choices").as_array().empty());
  EXPECT_EQ(usage.at("usage").at("completion_tokens").as_int(), 12);
}

TEST_F(ServerTest, ErrorsHaveOpenAIsShapeAndStatus) {
  start();
  auto expect_error = [&](const httplib::Result& r, int status, const std::string& param) {
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, status) << r->body;
    const Json e = Json::parse(r->body).at("error");
    EXPECT_TRUE(e.at("message").is_string());
    EXPECT_TRUE(e.at("type").is_string());
    if (!param.empty()) {
      EXPECT_EQ(e.at("param").as_string(), param) << r->body;
    }
  };
  expect_error(post("/v1/chat/completions", "{not json"), 400, "");
  expect_error(post("/v1/chat/completions", R"({"messages":[]})"), 400, "messages");
  expect_error(post("/v1/chat/completions", chat(R"(,"temperature":5)")), 400, "temperature");
  expect_error(post("/v1/chat/completions", chat(R"(,"n":100)")), 400, "n");
  expect_error(post("/v1/chat/completions", chat(R"(,"max_completion_tokens":100000)")), 400, "max_completion_tokens");
  expect_error(post("/v1/chat/completions", chat(R"(,"top_logprobs":3)")), 400, "top_logprobs");
  expect_error(post("/v1/chat/completions", chat(R"(,"logit_bias":{"x":1})")), 400, "logit_bias");
  expect_error(post("/v1/chat/completions", chat(R"(,"tool_choice":"required","tools":[{"type":"function","function":{"name":"f"}}])")), 400, "tool_choice");
  expect_error(post("/v1/chat/completions", chat(R"(,"response_format":{"type":"json_schema","json_schema":{"schema":{"type":"string","pattern":"a+"}}})")), 400, "response_format.json_schema.schema");
  expect_error(post("/v1/chat/completions",
                    R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]})"),
               400, "messages[0].content");
  expect_error(post("/v1/chat/completions", chat(R"(,"model":"other")")), 404, "model");
  expect_error(post("/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"" + std::string(100000, 'a') + "\"}]}"), 413, "");
  expect_error(post("/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"" + std::string(3000, 'a') + " b c d\"}]}"), 400, "messages");
  expect_error(post("/v1/completions", R"({"prompt":[1,2,99999]})"), 400, "prompt");
  expect_error(client().Get("/v1/nothing"), 404, "");
  EXPECT_EQ(json_of(client().Get("/health")).at("status").as_string(), "ok");
}

TEST_F(ServerTest, ChoicesSeedsStopsSchemasAndLogprobs) {
  start();
  // n choices sample independently; the same seed gives the same choices.
  const std::string sampled = chat(R"(,"temperature":1.0,"n":3,"seed":42)");
  const Json a = json_of(post("/v1/chat/completions", sampled));
  const Json b = json_of(post("/v1/chat/completions", sampled));
  ASSERT_EQ(a.at("choices").as_array().size(), 3u);
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(a.at("choices")[size_t(i)].at("message").at("content").as_string(),
              b.at("choices")[size_t(i)].at("message").at("content").as_string());
  EXPECT_EQ(a.at("usage").at("completion_tokens").as_int(), 36);
  // A stop string cuts the text before it.
  const std::string full = json_of(post("/v1/chat/completions", chat())).at("choices")[0].at("message").at("content").as_string();
  ASSERT_GE(full.size(), 6u);
  const std::string stop = full.substr(full.size() / 2, 2);
  Json stop_json = Json(Json::Array{Json(stop)});
  const Json cut = json_of(post("/v1/chat/completions", chat(",\"stop\":" + stop_json.dump())));
  EXPECT_EQ(cut.at("choices")[0].at("message").at("content").as_string(), full.substr(0, full.find(stop)));
  EXPECT_EQ(cut.at("choices")[0].at("finish_reason").as_string(), "stop");
  // A JSON schema holds (the constrained output parses and fits).
  const Json js = json_of(post("/v1/chat/completions", R"({"messages":[{"role":"user","content":"a person"}],"max_tokens":120,"temperature":0.8,"seed":3,
    "response_format":{"type":"json_schema","json_schema":{"name":"p","schema":{"type":"object","properties":{"age":{"type":"integer"},"ok":{"type":"boolean"}},"required":["age","ok"],"additionalProperties":false}}}})"));
  if (js.at("choices")[0].at("finish_reason").as_string() == "stop") {
    const Json v = Json::parse(js.at("choices")[0].at("message").at("content").as_string());
    EXPECT_TRUE(v.at("age").is_integer());
    EXPECT_EQ(v.at("ok").kind(), Json::Kind::kBool);
  }
  // Log-probabilities: one entry per generated token, with the alternatives asked for.
  const Json lp = json_of(post("/v1/chat/completions", chat(R"(,"logprobs":true,"top_logprobs":3)")));
  const Json& entries = lp.at("choices")[0].at("logprobs").at("content");
  EXPECT_EQ(entries.as_array().size(), 12u);
  for (const Json& e : entries.as_array()) {
    EXPECT_LE(e.at("logprob").as_number(), 0);
    EXPECT_EQ(e.at("top_logprobs").as_array().size(), 3u);
  }
  // Legacy completions, with echo.
  const Json c = json_of(post("/v1/completions", R"({"prompt":"Once upon a time","max_tokens":5,"echo":true,"temperature":0})"));
  EXPECT_EQ(c.at("object").as_string(), "text_completion");
  EXPECT_EQ(c.at("choices")[0].at("text").as_string().rfind("Once upon a time", 0), 0u);
}

TEST_F(ServerTest, ContemplateStreamsLanesAndJoins) {
  start();
  const auto s = post("/v1/chat/completions",
                      chat(R"(,"temperature":0.9,"stream":true,"muse":{"contemplate":{"agents":3}})"));
  ASSERT_TRUE(s);
  size_t lanes = 0;
  bool finished = false;
  for (const std::string& e : events(s->body)) {
    if (e == "[DONE]") continue;
    const Json c = Json::parse(e);
    if (const Json* m = c.find("muse")) lanes = std::max(lanes, m->at("agents").as_array().size());
    for (const Json& ch : c.at("choices").as_array()) finished |= ch.at("finish_reason").is_string();
  }
  EXPECT_EQ(lanes, 3u);
  EXPECT_TRUE(finished);
  const Json r = json_of(post("/v1/chat/completions", chat(R"(,"temperature":0.9,"muse":{"contemplate":{"agents":2,"join":"synthesis"}})")));
  EXPECT_EQ(r.at("muse").at("contemplation").at("agents").as_array().size(), 2u);
  EXPECT_EQ(r.at("muse").at("contemplation").at("join").as_string(), "synthesis");
  EXPECT_GT(r.at("usage").at("completion_tokens").as_int(), 12);  // the traces and the synthesis
  // Sub-agent modes run the agent tree; lanes stream while it runs, the trace comes back.
  for (const char* mode : {"tool", "markup"}) {
    const Json m = json_of(post("/v1/chat/completions",
                                chat(std::string(R"(,"temperature":0.9,"muse":{"contemplate":{"mode":")") + mode +
                                     R"(","agents":2,"depth":1}})")));
    const Json& trace = m.at("muse").at("contemplation");
    EXPECT_EQ(trace.at("mode").as_string(), mode);
    ASSERT_GE(trace.at("agents").as_array().size(), 1u);
    EXPECT_EQ(trace.at("agents")[0].at("parent").as_int(), -1);
    EXPECT_LE(trace.at("agents")[0].at("tokens").as_int(), 12);
    EXPECT_EQ(m.at("choices")[0].at("finish_reason").as_string(), "stop");
    const auto st = post("/v1/chat/completions",
                         chat(std::string(R"(,"stream":true,"muse":{"contemplate":{"mode":")") + mode + R"("}})"));
    bool lanes = false;
    for (const std::string& e : events(st->body))
      if (e != "[DONE]") lanes |= Json::parse(e).find("muse") != nullptr;
    EXPECT_TRUE(lanes) << mode;
  }
  EXPECT_EQ(post("/v1/chat/completions", chat(R"(,"muse":{"contemplate":{"mode":"swarm"}})"))->status, 400);
  EXPECT_EQ(scheduler_->running(), 0);
}

TEST_F(ServerTest, ApiKeysGateEverythingButHealthAndLimitConcurrency) {
  const std::string keys = testing::temp_path("keys.txt");
  std::ofstream(keys) << "# test keys\nkey-aaaaaaaaaaaaaaaa\n\nkey-bbbbbbbbbbbbbbbb\n";
  ServeOptions o;
  o.api_key_file = keys;
  o.limits.max_concurrent_per_key = 1;
  start(o);
  EXPECT_EQ(client().Get("/health")->status, 200);
  EXPECT_EQ(client().Get("/v1/models")->status, 401);
  EXPECT_EQ(client("key-wrongwrongwrong").Get("/v1/models")->status, 401);
  EXPECT_EQ(client("key-bbbbbbbbbbbbbbbb").Get("/v1/models")->status, 200);
  EXPECT_EQ(client().Get("/metrics")->status, 401);
  EXPECT_EQ(client().Get("/")->status, 200);  // the web app's page (its API calls need the key)
  EXPECT_EQ(Json::parse(client().Get("/v1/models")->body).at("error").at("code").as_string(), "invalid_api_key");
  // One request at a time per key: a second one meanwhile gets 429; another key is not held up.
  const std::string slow_body = long_chat(250, true);
  std::thread slow([&] { post("/v1/chat/completions", slow_body, "key-aaaaaaaaaaaaaaaa"); });
  EXPECT_TRUE(wait_until([&] { return server_->in_flight() > 0; }));  // (threads must still be joined)
  const auto second = post("/v1/chat/completions", chat(), "key-aaaaaaaaaaaaaaaa");
  EXPECT_EQ(second->status, 429);
  EXPECT_FALSE(second->get_header_value("Retry-After").empty());
  EXPECT_EQ(post("/v1/chat/completions", chat(), "key-bbbbbbbbbbbbbbbb")->status, 200);
  slow.join();
}

TEST_F(ServerTest, AClientThatLeavesCancelsItsGeneration) {
  start();
  {
    httplib::Client c = client();
    int chunks = 0;
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/chat/completions";
    req.body = R"({"messages":[{"role":"user","content":"go on"}],"max_tokens":250,"stream":true})";
    req.set_header("Content-Type", "application/json");
    req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++chunks < 4; };  // then hang up
    c.send(req);
    EXPECT_GE(chunks, 4);
  }
  // The generation stops within a few steps instead of running to 250 tokens.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((scheduler_->running() > 0 || server_->in_flight() > 0) && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(scheduler_->running(), 0);
  EXPECT_EQ(server_->in_flight(), 0);
  const std::string metrics = client().Get("/metrics")->body;
  EXPECT_NE(metrics.find("muse_requests_total{endpoint=\"/v1/chat/completions\",status=\"499\"} 1"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("muse_time_to_first_token_seconds_count 1"), std::string::npos);
  EXPECT_NE(metrics.find("muse_kv_bytes_used"), std::string::npos);
}

TEST_F(ServerTest, ShutdownDrainsRequestsInFlight) {
  start();
  int status = 0;
  int completion_tokens = 0;
  const std::string body = long_chat(250, false);
  std::thread running([&] {
    const auto result = post("/v1/chat/completions", body);
    if (!result) return;
    status = result->status;
    completion_tokens = int(Json::parse(result->body).at("usage").at("completion_tokens").as_int());
  });
  EXPECT_TRUE(wait_until([&] { return server_->in_flight() > 0; }));  // (threads must still be joined)
  std::thread stopper([&] { server_->shutdown(30); });
  EXPECT_TRUE(wait_until([&] { return server_->draining(); }));
  const auto refused = post("/v1/chat/completions", chat());
  if (refused) {
    EXPECT_EQ(refused->status, 503);  // (or the listener has already closed)
  }
  stopper.join();
  running.join();
  EXPECT_EQ(status, 200);  // the one in flight finished
  EXPECT_EQ(completion_tokens, 250);
}

}  // namespace
}  // namespace muse
