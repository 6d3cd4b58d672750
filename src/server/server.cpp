#include "server/server.h"

#include <httplib.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <optional>
#include <thread>

#include "model/model.h"
#include "runtime/scheduler.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace muse {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void send_json(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) {
  send_json(res, e.status(), e.body());
  if (e.status() == 429) res.set_header("Retry-After", "1");
}

Json tool_calls_json(const std::vector<ToolCall>& calls, bool with_index) {
  Json::Array out;
  for (size_t i = 0; i < calls.size(); ++i) {
    Json::Object call;
    if (with_index) call.emplace("index", Json(int(i)));
    call.emplace("id", Json(calls[i].id));
    call.emplace("type", Json("function"));
    call.emplace("function", Json(Json::Object{{"name", Json(calls[i].name)}, {"arguments", Json(calls[i].arguments)}}));
    out.push_back(Json(std::move(call)));
  }
  return Json(std::move(out));
}

// OpenAI's legacy completions logprobs, from the chat-style entries.
Json legacy_logprobs(const Json& entries, size_t text_offset) {
  Json::Array tokens, lps, tops, offsets;
  for (const Json& e : entries.as_array()) {
    tokens.push_back(e.at("token"));
    lps.push_back(e.at("logprob"));
    Json::Object top;
    for (const Json& t : e.at("top_logprobs").as_array()) top.emplace(t.at("token").as_string(), t.at("logprob"));
    tops.push_back(Json(std::move(top)));
    offsets.push_back(Json(int64_t(text_offset)));
    text_offset += e.at("token").as_string().size();
  }
  return Json(Json::Object{{"tokens", Json(std::move(tokens))},
                           {"token_logprobs", Json(std::move(lps))},
                           {"top_logprobs", Json(std::move(tops))},
                           {"text_offset", Json(std::move(offsets))}});
}

// The endpoint label for metrics: one of the server's, or "other".
std::string known_endpoint(const std::string& path) {
  for (const char* p : {"/v1/chat/completions", "/v1/completions", "/v1/models", "/metrics", "/health"})
    if (path == p) return p;
  return path.rfind("/v1/models/", 0) == 0 ? "/v1/models" : "other";
}

bool write_sse(httplib::DataSink& sink, const std::string& payload) {
  const std::string frame = "data: " + payload + "\n\n";
  return sink.write(frame.data(), frame.size());
}

}  // namespace

// One generating request, alive until its response has been written (or the client left).
struct Server::Call {
  Server* server = nullptr;
  int key = -1;
  std::string endpoint, id;
  long long created = 0;
  Clock::time_point start;
  bool stream = false, include_usage = false;
  bool chat = true;
  int status = 200;
  std::string echo;  // completions: the prompt, echoed
  std::unique_ptr<Generation> generation;
  std::unique_ptr<Contemplation> contemplation;
  std::unique_ptr<ChatParams> agents;  // sub-agent modes run in respond()
  std::optional<AgentsOutcome> agents_outcome;
  bool first_token_seen = false;
  bool key_released = false;
  std::map<int, size_t> text_offsets;  // streamed completions: where each choice's text stands
  void release_key() {
    if (key_released) return;
    key_released = true;
    server->limiter_.release(key);
  }

  Json envelope(const char* object) const {
    return Json(Json::Object{{"id", Json(id)},
                             {"object", Json(object)},
                             {"created", Json(int64_t(created))},
                             {"model", Json(server->engine_.model_name)}});
  }
  std::vector<ChoiceTotals> totals() const {
    if (agents) {
      ChoiceTotals t;
      if (agents_outcome) {
        t.content = agents_outcome->answer;
        t.tokens = agents_outcome->generated_tokens;
        t.reasoning_tokens = agents_outcome->reasoning_tokens;
      }
      t.finish_reason = "stop";
      return {t};
    }
    if (contemplation) return {contemplation->totals()};
    return generation->totals();
  }
  int prompt_tokens() const {
    if (agents) return agents_outcome ? agents_outcome->prompt_tokens : 0;
    return contemplation ? contemplation->prompt_tokens() : generation->prompt_tokens();
  }
  int completion_tokens() const {
    if (agents) return agents_outcome ? agents_outcome->generated_tokens : 0;
    if (contemplation) return contemplation->generated_tokens();
    int n = 0;
    for (const ChoiceTotals& t : generation->totals()) n += t.tokens;
    return n;
  }
  Json usage() const {
    int reasoning = 0;
    for (const ChoiceTotals& t : totals()) reasoning += t.reasoning_tokens;
    const int p = prompt_tokens(), c = completion_tokens();
    Json::Object u{{"prompt_tokens", Json(p)}, {"completion_tokens", Json(c)}, {"total_tokens", Json(p + c)}};
    if (chat) {
      u.emplace("completion_tokens_details", Json(Json::Object{{"reasoning_tokens", Json(reasoning)}}));
      if (generation)
        u.emplace("prompt_tokens_details", Json(Json::Object{{"cached_tokens", Json(generation->cached_prompt_tokens())}}));
    }
    return Json(std::move(u));
  }
  // Where the time went, per choice (as llama.cpp's server reports it, with reasoning and
  // answer apart): milliseconds and tokens.
  Json timings() const {
    Json::Array per_choice;
    for (const ChoiceTotals& t : generation->totals()) {
      const int answer_tokens = t.tokens - t.reasoning_tokens;
      const double answer_seconds = std::max(0.0, t.decode_seconds - t.reasoning_seconds);
      per_choice.push_back(Json(Json::Object{
          {"prompt_n", Json(generation->prompt_tokens())},
          {"prompt_ms", Json(1000 * t.prompt_seconds)},
          {"predicted_n", Json(t.tokens)},
          {"predicted_ms", Json(1000 * t.decode_seconds)},
          {"reasoning_n", Json(t.reasoning_tokens)},
          {"reasoning_ms", Json(1000 * t.reasoning_seconds)},
          {"answer_n", Json(answer_tokens)},
          {"answer_ms", Json(1000 * answer_seconds)},
          {"predicted_per_second", Json(t.decode_seconds > 0 && t.tokens > 1 ? (t.tokens - 1) / t.decode_seconds : 0.0)}}));
    }
    return Json(std::move(per_choice));
  }
  bool done() const {
    if (agents) return agents_outcome.has_value();
    return contemplation ? contemplation->done() : generation->done();
  }
  bool client_gone = false;
  void cancel() {
    client_gone = true;  // (sub-agent runs poll it)
    if (generation) generation->cancel();
    if (contemplation) contemplation->cancel();
  }
  double ttft() const { return generation ? generation->time_to_first_token() : 0; }

  // The chunks a batch of deltas makes (stream) or nothing (the totals keep them).
  std::vector<Json> chunks(const std::vector<Delta>& deltas, const Json& lanes) {
    std::vector<Json> out;
    if (!lanes.is_null()) {
      Json c = envelope("chat.completion.chunk");
      c.mutable_object().emplace("choices", Json(Json::Array{}));
      c.mutable_object().emplace("muse", Json(Json::Object{{"agents", lanes}}));
      out.push_back(std::move(c));
    }
    for (const Delta& d : deltas) {
      Json c = envelope(chat ? "chat.completion.chunk" : "text_completion");
      Json::Object choice{{"index", Json(d.choice)}};
      if (chat) {
        Json::Object delta;
        if (!d.reasoning.empty()) delta.emplace("reasoning_content", Json(d.reasoning));
        if (!d.content.empty()) delta.emplace("content", Json(d.content));
        if (!d.tool_calls.empty()) delta.emplace("tool_calls", tool_calls_json(d.tool_calls, true));
        choice.emplace("delta", Json(std::move(delta)));
        choice.emplace("logprobs", d.logprobs.is_null() ? Json() : Json(Json::Object{{"content", d.logprobs}}));
      } else {
        choice.emplace("text", Json(d.content));
        size_t& offset = text_offsets[d.choice];
        if (offset == 0) offset = echo.size();
        choice.emplace("logprobs", d.logprobs.is_null() ? Json() : legacy_logprobs(d.logprobs, offset));
        offset += d.content.size();
      }
      choice.emplace("finish_reason", d.finish_reason.empty() ? Json() : Json(d.finish_reason));
      c.mutable_object().emplace("choices", Json(Json::Array{Json(std::move(choice))}));
      out.push_back(std::move(c));
    }
    return out;
  }

  Json final_response() const {
    Json r = envelope(chat ? "chat.completion" : "text_completion");
    Json::Array choices;
    const std::vector<ChoiceTotals> all = totals();
    for (size_t i = 0; i < all.size(); ++i) {
      const ChoiceTotals& t = all[i];
      Json::Object choice{{"index", Json(int(i))}};
      if (chat) {
        Json::Object message{{"role", Json("assistant")},
                             {"content", t.content.empty() && !t.tool_calls.empty() ? Json() : Json(t.content)}};
        if (!t.reasoning.empty()) message.emplace("reasoning_content", Json(t.reasoning));
        if (!t.tool_calls.empty()) message.emplace("tool_calls", tool_calls_json(t.tool_calls, false));
        choice.emplace("message", Json(std::move(message)));
        choice.emplace("logprobs", generation && generation->totals().size() && logprobs_on()
                                       ? Json(Json::Object{{"content", t.logprobs}})
                                       : Json());
      } else {
        choice.emplace("text", Json(echo + t.content));
        choice.emplace("logprobs", logprobs_on() ? legacy_logprobs(t.logprobs, echo.size()) : Json());
      }
      choice.emplace("finish_reason", Json(t.finish_reason.empty() ? "stop" : t.finish_reason));
      choices.push_back(Json(std::move(choice)));
    }
    r.mutable_object().emplace("choices", Json(std::move(choices)));
    r.mutable_object().emplace("usage", usage());
    if (generation) r.mutable_object().emplace("timings", timings());
    if (contemplation) r.mutable_object().emplace("muse", Json(Json::Object{{"contemplation", contemplation->trace()}}));
    if (agents_outcome) r.mutable_object().emplace("muse", Json(Json::Object{{"contemplation", agents_outcome->trace}}));
    return r;
  }
  bool logprobs = false;
  bool logprobs_on() const { return logprobs; }

  // Writes the whole response into the sink; false when the client went away.
  bool respond(httplib::DataSink& sink) {
    auto last_write = Clock::now();
    if (stream && chat) {
      for (size_t i = 0; i < totals().size(); ++i) {
        Json c = envelope("chat.completion.chunk");
        c.mutable_object().emplace(
            "choices", Json(Json::Array{Json(Json::Object{{"index", Json(int(i))},
                                                          {"delta", Json(Json::Object{{"role", Json("assistant")},
                                                                                      {"content", Json("")}})},
                                                          {"logprobs", Json()},
                                                          {"finish_reason", Json()}})}));
        if (!write_sse(sink, c.dump())) return false;
      }
    }
    if (stream && !chat && !echo.empty()) {
      Delta d;
      d.content = echo;
      for (const Json& c : chunks({d}, Json()))
        if (!write_sse(sink, c.dump())) return false;
    }
    if (agents) {
      // Sub-agents: the run blocks here; lanes stream as it goes (or a space a second keeps
      // checking that an unstreamed client is still there).
      auto last = Clock::now();
      agents_outcome = run_agents(
          server->engine_, *agents,
          [&](const Json& lanes) {
            if (client_gone) return;
            if (stream) {
              for (const Json& c : chunks({}, lanes))
                if (!write_sse(sink, c.dump())) client_gone = true;
            } else if (seconds_since(last) > 1) {
              if (!sink.write(" ", 1)) client_gone = true;
              last = Clock::now();
            }
          },
          [&] { return client_gone; });
      if (client_gone) return false;
      if (stream) {
        Delta d;
        d.content = agents_outcome->answer;
        d.finish_reason = "stop";
        for (const Json& c : chunks({d}, Json()))
          if (!write_sse(sink, c.dump())) return false;
      }
    }
    while (!done()) {
      if (server->aborting_) cancel();  // the drain's time is up
      std::vector<Delta> deltas;
      Json lanes;
      if (contemplation) {
        Contemplation::Update u = contemplation->poll(milliseconds(100));
        deltas = std::move(u.deltas);
        lanes = std::move(u.lanes);
      } else {
        deltas = generation->poll(milliseconds(100));
      }
      if (!first_token_seen && ttft() > 0) {
        first_token_seen = true;
        server->metrics_.first_token(ttft());
      }
      if (stream) {
        for (const Json& c : chunks(deltas, lanes)) {
          if (!write_sse(sink, c.dump())) return false;
          last_write = Clock::now();
        }
        if (seconds_since(last_write) > 5) {  // an SSE comment keeps proxies (and our check) alive
          if (!sink.write(": keepalive\n\n", 13)) return false;
          last_write = Clock::now();
        }
      } else if (seconds_since(last_write) > 1) {
        // JSON allows leading whitespace: a space a second notices a client that went away.
        if (!sink.write(" ", 1)) return false;
        last_write = Clock::now();
      }
    }
    // The generation is over: its key's slot is free before the last bytes go out, so a client
    // that sends its next request on reading them is not refused.
    release_key();
    if (!stream) {
      const std::string body = final_response().dump();
      return sink.write(body.data(), body.size());
    }
    if (include_usage) {
      Json c = envelope(chat ? "chat.completion.chunk" : "text_completion");
      c.mutable_object().emplace("choices", Json(Json::Array{}));
      c.mutable_object().emplace("usage", usage());
      if (generation) c.mutable_object().emplace("timings", timings());
      if (!write_sse(sink, c.dump())) return false;
    }
    const std::string done_frame = "data: [DONE]\n\n";
    return sink.write(done_frame.data(), done_frame.size());
  }
};

Server::Server(Engine& engine, const ServeOptions& options)
    : engine_(engine),
      options_(options),
      limiter_(options.limits.max_concurrent_per_key, options.limits.requests_per_minute_per_key),
      http_(std::make_unique<httplib::Server>()) {
  if (!options.api_key_file.empty()) keys_ = ApiKeys::from_file(options.api_key_file);
  const int threads = options.http_threads;
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  http_->set_payload_max_length(options.limits.max_body_bytes);
  http_->set_read_timeout(30, 0);
  http_->set_write_timeout(30, 0);
  routes();
}

Server::~Server() = default;

int Server::bind() {
  const int port = options_.port == 0 ? http_->bind_to_any_port(options_.host) : options_.port;
  if (options_.port != 0 && !http_->bind_to_port(options_.host, options_.port))
    fail("cannot listen on ", options_.host, ":", options_.port, " (in use, or not an address of this machine)");
  if (port < 0) fail("cannot listen on ", options_.host);
  return port;
}

void Server::run() { http_->listen_after_bind(); }

void Server::shutdown(double drain_seconds) {
  draining_ = true;
  const auto until = Clock::now() + std::chrono::duration<double>(drain_seconds);
  while (in_flight_ > 0 && Clock::now() < until) std::this_thread::sleep_for(milliseconds(20));
  aborting_ = true;  // what is still running stops at its next poll
  http_->stop();
}

bool Server::authorize(const std::string& path, const std::string& authorization, int* key, std::string* error) const {
  *key = 0;
  if (!keys_ || path == "/health") return true;
  if (web_asset(path, nullptr, nullptr)) return true;  // the page holds no data; its API calls need the key
  *key = keys_->match(authorization);
  if (*key >= 0) return true;
  *error = authorization.empty() ? "missing API key (send \"Authorization: Bearer KEY\")" : "invalid API key";
  return false;
}

void Server::routes() {
  httplib::Server& http = *http_;
  // Every response is logged (never with its key) and counted.
  http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    if (options_.log_requests)
      std::fprintf(stderr, "muse serve: %s %s %d\n", req.method.c_str(), req.path.c_str(), res.status);
  });
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    int key = 0;
    std::string error;
    if (!authorize(req.path, req.get_header_value("Authorization"), &key, &error)) {
      send_error(res, ApiError(401, "authentication_error", error, "", "invalid_api_key"));
      // (A fixed label: paths are the client's to choose, and labels must not grow unbounded.)
      metrics_.request_done(known_endpoint(req.path), 401, 0);
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413)
      send_error(res, ApiError(413, "invalid_request_error", "the request body is too large"));
    else if (res.status == 404)
      send_error(res, ApiError(404, "not_found_error", "no such endpoint: " + req.method + " " + req.path));
    else if (res.status == 405)
      send_error(res, ApiError(405, "invalid_request_error", "method not allowed: " + req.method + " " + req.path));
    else
      send_error(res, ApiError(res.status, "invalid_request_error", "bad request"));
  });
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      send_error(res, ApiError(500, "server_error", std::string("internal error: ") + e.what()));
    } catch (...) {
      send_error(res, ApiError(500, "server_error", "internal error"));
    }
  });

  http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    send_json(res, draining_ ? 503 : 200, Json(Json::Object{{"status", Json(draining_ ? "draining" : "ok")}}));
  });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.render(engine_.scheduler, options_.kv_budget_bytes), "text/plain; version=0.0.4");
  });
  auto model_json = [this] {
    return Json(Json::Object{{"id", Json(engine_.model_name)},
                             {"object", Json("model")},
                             {"created", Json(int64_t(0))},
                             {"owned_by", Json("muse")}});
  };
  http.Get("/v1/models", [model_json](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, Json(Json::Object{{"object", Json("list")}, {"data", Json(Json::Array{model_json()})}}));
  });
  http.Get(R"(/v1/models/(.+))", [this, model_json](const httplib::Request& req, httplib::Response& res) {
    if (req.matches[1] != engine_.model_name)
      return send_error(res, ApiError(404, "not_found_error", "no model named '" + std::string(req.matches[1]) + "'",
                                      "model", "model_not_found"));
    send_json(res, 200, model_json());
  });
  http.Get(R"(/(.*))", [](const httplib::Request& req, httplib::Response& res) {
    std::string body, type;
    if (!web_asset(req.path, &body, &type)) {
      res.status = 404;
      return;
    }
    res.set_content(body, type);
    res.set_header("Cache-Control", "no-cache");
  });

  auto generate = [this](bool chat) {
    return [this, chat](const httplib::Request& req, httplib::Response& res) {
      const auto start = Clock::now();
      const std::string endpoint = chat ? "/v1/chat/completions" : "/v1/completions";
      if (draining_) {
        send_error(res, ApiError(503, "server_error", "the server is shutting down"));
        metrics_.request_done(endpoint, 503, 0);
        return;
      }
      const int key = keys_ ? keys_->match(req.get_header_value("Authorization")) : 0;
      std::string why;
      double retry = 0;
      if (!limiter_.acquire(key, &why, &retry)) {
        send_json(res, 429, ApiError(429, "rate_limit_error", why, "", "rate_limit_exceeded").body());
        res.set_header("Retry-After", std::to_string(int(retry + 0.999)));
        metrics_.request_done(endpoint, 429, 0);
        return;
      }
      auto call = std::make_shared<Call>();
      call->server = this;
      call->key = key;
      call->endpoint = endpoint;
      call->start = start;
      call->chat = chat;
      call->created = (long long)std::time(nullptr);
      call->id = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(start.time_since_epoch().count()) + "-" +
                 std::to_string(next_id_++);
      try {
        Json body;
        try {
          body = Json::parse(req.body);
        } catch (const Error& e) {
          bad_request(std::string("the body is not valid JSON: ") + e.what());
        }
        if (chat) {
          const ChatParams p = parse_chat_params(body, engine_.limits);
          if (!p.model.empty() && p.model != engine_.model_name)
            throw ApiError(404, "not_found_error", "no model named '" + p.model + "'", "model", "model_not_found");
          call->stream = p.stream;
          call->include_usage = p.include_usage;
          call->logprobs = p.logprobs;
          if ((p.thinking_budget >= 0 || p.min_thinking > 0) && !engine_.tags && p.enable_thinking)
            bad_request("this model has no single-token reasoning tags, so thinking budgets do not apply", "muse");
          if (p.contemplate.enabled && p.contemplate.mode != "vote") {
            if (p.contemplate.mode == "tool" && engine_.format.tool_calls == ToolCallSyntax::kNone)
              bad_request("contemplate mode \"tool\" needs a model whose chat template calls tools", "muse.contemplate.mode");
            call->agents = std::make_unique<ChatParams>(p);
          } else if (p.contemplate.enabled) {
            call->contemplation = std::make_unique<Contemplation>(engine_, p);
          } else {
            GenerationSpec spec = chat_generation_spec(engine_, p);
            spec.id_seed = uint64_t(next_id_.load()) * 1000003u + uint64_t(start.time_since_epoch().count());
            call->generation = std::make_unique<Generation>(engine_, std::move(spec));
          }
        } else {
          const CompletionParams p = parse_completion_params(body, engine_.limits);
          if (!p.model.empty() && p.model != engine_.model_name)
            throw ApiError(404, "not_found_error", "no model named '" + p.model + "'", "model", "model_not_found");
          call->stream = p.stream;
          call->include_usage = p.include_usage;
          call->logprobs = p.logprobs >= 0;
          GenerationSpec spec;
          if (!p.prompt_ids.empty()) {
            for (int32_t t : p.prompt_ids)
              if (t >= engine_.tokenizer.n_vocab()) bad_request("token id " + std::to_string(t) + " is outside the vocabulary", "prompt");
            spec.prompt = p.prompt_ids;
          } else {
            spec.prompt = engine_.tokenizer.encode(p.prompt);
          }
          if (p.echo) call->echo = p.prompt_ids.empty() ? p.prompt : engine_.tokenizer.decode(p.prompt_ids, true);
          spec.n = p.n;
          spec.max_tokens = p.max_tokens;
          spec.sampling = p.sampling;
          spec.stop = p.stop;
          spec.logprobs = p.logprobs;
          spec.raw = true;
          call->generation = std::make_unique<Generation>(engine_, std::move(spec));
        }
      } catch (const ApiError& e) {
        limiter_.release(key);
        send_error(res, e);
        metrics_.request_done(endpoint, e.status(), seconds_since(start));
        return;
      } catch (const Error& e) {  // what the engine refused while setting the request up
        limiter_.release(key);
        send_error(res, ApiError(400, "invalid_request_error", e.what()));
        metrics_.request_done(endpoint, 400, seconds_since(start));
        return;
      } catch (const std::exception& e) {
        limiter_.release(key);
        send_error(res, ApiError(500, "server_error", std::string("internal error: ") + e.what()));
        metrics_.request_done(endpoint, 500, seconds_since(start));
        return;
      }
      ++in_flight_;
      metrics_.started();
      res.set_header("Cache-Control", "no-cache");
      res.set_chunked_content_provider(
          call->stream ? "text/event-stream" : "application/json",
          [call](size_t, httplib::DataSink& sink) {
            bool written = false;
            try {
              written = call->respond(sink);
            } catch (const std::exception& e) {
              // The status line has gone out: the error travels in the body (an SSE event, or
              // the JSON body itself), and the generation stops.
              call->cancel();
              call->status = 500;
              const Json body = ApiError(500, "server_error", std::string("internal error: ") + e.what()).body();
              const std::string text = call->stream ? "data: " + body.dump() + "\n\ndata: [DONE]\n\n" : body.dump();
              written = sink.write(text.data(), text.size());
            }
            if (!written) {
              call->cancel();  // the client went away: stop generating for it
              call->status = 499;
              return false;
            }
            sink.done();
            return true;
          },
          [this, call](bool) {
            call->cancel();
            metrics_.tokens(call->prompt_tokens(), call->completion_tokens());
            metrics_.request_done(call->endpoint, call->status, seconds_since(call->start));
            metrics_.finished();
            call->release_key();
            --in_flight_;
          });
    };
  };
  http.Post("/v1/chat/completions", generate(true));
  http.Post("/v1/completions", generate(false));
}

}  // namespace muse
