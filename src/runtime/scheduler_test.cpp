// Continuous batching: requests in a batch produce exactly what they produce alone, shared
// prefixes are computed and stored once, forks continue their parent, and cancellation,
// eviction, preemption and budget exhaustion behave.
#include "runtime/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "model/session.h"
#include "runtime/grammar.h"
#include "testing/test_support.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/json.h"
#include "util/thread_pool.h"

namespace muse {
namespace {

class SchedulerTest : public testing::SynthModelTest<testing::SmallQwen3> {
 protected:
  static std::vector<int32_t> prompt(int n, int salt) {
    std::vector<int32_t> t;
    for (int i = 0; i < n; ++i) t.push_back((i * 37 + salt * 101 + 5) % 690);
    return t;
  }
  static Request request(std::vector<int32_t> p, int max_tokens = 12) {
    Request r;
    r.prompt = std::move(p);
    r.max_tokens = max_tokens;
    r.sampling.temperature = 0;
    return r;
  }
  // Greedy tokens of a prompt run alone in a session.
  std::vector<int32_t> alone(const std::vector<int32_t>& p, int max_tokens = 12) {
    return testing::generate_alone(*model_, *tokenizer_, pool_, p, max_tokens);
  }
  SchedulerConfig config(size_t budget_blocks = 256) const {
    SchedulerConfig c;
    c.block_tokens = 8;
    c.kv_budget_bytes = budget_blocks * KvPool::block_bytes_for(kv_pool_config(model_->config(), c.kv_type, 8, 0));
    c.max_batch_tokens = 64;
    return c;
  }
  // Submits requests and collects every token each one produced.
  struct Collected {
    std::map<RequestId, std::vector<int32_t>> tokens;
    std::map<RequestId, FinishReason> finish;
  };
  static TokenCallbackFn collect(Collected& c) {
    return [&c](const TokenEvent& e) {
      if (e.token >= 0) c.tokens[e.id].push_back(e.token);
      if (e.done) c.finish[e.id] = e.finish;
    };
  }
  ThreadPool pool_{2};
};

TEST_F(SchedulerTest, BatchedRequestsProduceWhatTheyProduceAlone) {
  Scheduler s(*model_, *tokenizer_, pool_, config());
  Collected got;
  std::vector<std::pair<RequestId, std::vector<int32_t>>> requests;
  for (int i = 0; i < 5; ++i) {
    auto p = prompt(10 + 23 * i, i);  // different lengths: prompt chunks and decode steps mix
    requests.push_back({s.submit(request(p), collect(got)), p});
  }
  s.run_until_idle();
  for (const auto& [id, p] : requests) {
    EXPECT_EQ(got.tokens[id], alone(p)) << "request " << id;
    EXPECT_TRUE(s.stats(id).finished);
  }
  EXPECT_EQ(s.running(), 0);
  EXPECT_EQ(s.waiting(), 0);
}

TEST_F(SchedulerTest, SharedPrefixIsComputedAndStoredOnce) {
  Scheduler s(*model_, *tokenizer_, pool_, config());
  Collected got;
  const auto prefix = prompt(64, 7);
  std::vector<std::pair<RequestId, std::vector<int32_t>>> requests;
  for (int i = 0; i < 4; ++i) {
    auto p = prefix;
    p.push_back(100 + i);
    requests.push_back({s.submit(request(p), collect(got)), p});
  }
  size_t peak = 0;
  while (s.step()) peak = std::max(peak, s.kv_bytes());
  int reused = 0;
  for (const auto& [id, p] : requests) {
    EXPECT_EQ(got.tokens[id], alone(p));
    reused += s.stats(id).cached_tokens;
  }
  EXPECT_EQ(reused, 3 * 64);  // every request after the first reads the prefix from the cache
  // Peak: the prefix once (8 blocks) plus each request's own tail and generated tokens.
  const size_t block = s.kv().block_bytes();
  EXPECT_LE(peak, (8 + 4 * 3) * block);
}

TEST_F(SchedulerTest, ForkContinuesItsParent) {
  Scheduler s(*model_, *tokenizer_, pool_, config());
  Collected got;
  const auto p = prompt(30, 3);
  const RequestId parent = s.submit(request(p, 20), collect(got));
  while (got.tokens[parent].size() < 5) ASSERT_TRUE(s.step());
  // The fork sees the parent's prompt and the tokens it has run so far, then its own text.
  Request f = request({11, 12, 13}, 8);
  f.fork_of = parent;
  const RequestId child = s.submit(f, collect(got));
  const RequestStats before = s.stats(child);
  s.run_until_idle();
  std::vector<int32_t> expected_prompt = p;
  expected_prompt.insert(expected_prompt.end(), got.tokens[parent].begin(), got.tokens[parent].begin() + before.cached_tokens - 30);
  expected_prompt.insert(expected_prompt.end(), {11, 12, 13});
  EXPECT_GE(before.cached_tokens, 30);
  EXPECT_EQ(got.tokens[child], alone(expected_prompt, 8));
  EXPECT_EQ(got.tokens[parent], alone(p, 20));  // the parent is not disturbed
  Request orphan = request({1});
  orphan.fork_of = 999;
  EXPECT_THROW(s.submit(orphan), Error);
}

TEST_F(SchedulerTest, RefusedForksTakeNoBlocks) {
  SchedulerConfig c = config();
  c.max_context = 64;
  c.max_batch_tokens = 16;  // the 40-token prompt takes three steps
  Scheduler s(*model_, *tokenizer_, pool_, c);
  const RequestId reading = s.submit(request(prompt(40, 5), 10));
  s.step();
  ASSERT_EQ(s.stats(reading).generated, 0);
  Request early = request({1, 2});
  early.fork_of = reading;
  EXPECT_THROW(s.submit(early), Error);  // nothing complete to continue from yet
  while (s.stats(reading).generated == 0) ASSERT_TRUE(s.step());
  const int free_before = s.kv().n_free();
  Request too_long = request(prompt(30, 6));  // 40 + generated + 30 > 64
  too_long.fork_of = reading;
  EXPECT_THROW(s.submit(too_long), Error);
  EXPECT_EQ(s.kv().n_free(), free_before);  // no references left behind
  s.run_until_idle();
}

// A stop token ends the request right after it (in its sequence: a held request's fork
// continues after it), even when the scheduler runs its own loop.
TEST_F(SchedulerTest, StopTokenEndsTheRequestRightAfterIt) {
  const std::vector<int32_t> full = alone(prompt(20, 3), 12);
  ASSERT_GE(full.size(), 4u);
  const int32_t stop = full[3];
  const size_t first = size_t(std::find(full.begin(), full.end(), stop) - full.begin());
  Scheduler s(*model_, *tokenizer_, pool_, config());
  s.start();
  std::mutex mu;
  std::condition_variable cv;
  Collected got;
  bool done = false;
  Request r = request(prompt(20, 3), 12);
  r.stop_tokens = {stop};
  r.hold = true;
  const RequestId id = s.submit(std::move(r), [&](const TokenEvent& e) {
    std::lock_guard<std::mutex> lock(mu);
    collect(got)(e);
    done = done || e.done;
    cv.notify_one();
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done; });
  }
  EXPECT_EQ(got.finish[id], FinishReason::kStopString);
  EXPECT_EQ(got.tokens[id], std::vector<int32_t>(full.begin(), full.begin() + long(first) + 1));
  EXPECT_EQ(s.stats(id).prompt_tokens + s.stats(id).generated, 20 + int(first) + 1);
  s.stop();
}

TEST_F(SchedulerTest, CancelStopsARequestAndFreesItsBlocks) {
  Scheduler s(*model_, *tokenizer_, pool_, config());
  Collected got;
  const RequestId a = s.submit(request(prompt(20, 1), 200), collect(got));
  const RequestId b = s.submit(request(prompt(20, 2), 10), collect(got));
  for (int i = 0; i < 4; ++i) s.step();
  s.cancel(a);
  s.run_until_idle();
  EXPECT_EQ(got.finish[a], FinishReason::kCancelled);
  EXPECT_LT(got.tokens[a].size(), 200u);
  EXPECT_EQ(got.tokens[b], alone(prompt(20, 2), 10));
  // Only the prefix cache holds blocks now.
  EXPECT_EQ(s.kv().n_free() + s.cached_blocks(), s.kv().n_blocks());
}

TEST_F(SchedulerTest, TightBudgetPreemptsAndStillFinishesEverything) {
  // 12 blocks of 8 tokens: not enough for three 40-token prompts growing to 60 at once.
  Scheduler s(*model_, *tokenizer_, pool_, config(12));
  Collected got;
  std::vector<std::pair<RequestId, std::vector<int32_t>>> requests;
  for (int i = 0; i < 3; ++i) {
    auto p = prompt(40, 10 + i);
    requests.push_back({s.submit(request(p, 20), collect(got)), p});
  }
  s.run_until_idle();
  int preemptions = 0;
  for (const auto& [id, p] : requests) {
    EXPECT_EQ(got.tokens[id], alone(p, 20)) << "request " << id;
    preemptions += s.stats(id).preemptions;
  }
  EXPECT_GT(preemptions, 0);
}

TEST_F(SchedulerTest, ARequestThatCannotFitEndsInsteadOfHanging) {
  Scheduler s(*model_, *tokenizer_, pool_, config(4));  // 32 token slots
  Collected got;
  const RequestId id = s.submit(request(prompt(60, 1)), collect(got));
  s.run_until_idle();
  EXPECT_EQ(got.finish[id], FinishReason::kContextFull);
  EXPECT_TRUE(s.stats(id).finished);
}

TEST_F(SchedulerTest, SubmitFromAnotherThreadWhileStepping) {
  Scheduler s(*model_, *tokenizer_, pool_, config());
  Collected got;
  std::mutex m;
  std::atomic<int> finished{0};
  auto cb = [&](const TokenEvent& e) {
    std::lock_guard<std::mutex> lock(m);
    if (e.token >= 0) got.tokens[e.id].push_back(e.token);
    if (e.done) ++finished;
  };
  std::thread submitter([&] {
    for (int i = 0; i < 6; ++i) s.submit(request(prompt(15, 20 + i), 6), cb);
  });
  while (finished < 6) s.step();
  submitter.join();
  for (const auto& [id, tokens] : got.tokens) EXPECT_EQ(tokens, alone(prompt(15, 20 + int(id)), 6));
}

// Every reference model (F32, F16, Q8_0, Q4_0, Q4_K_M; llama, qwen2, qwen3): requests of
// different lengths batched together generate the greedy tokens each generates alone.
TEST(SchedulerReference, BatchedEqualsAloneOnEveryReferenceModel) {
  MUSE_REQUIRE_REFERENCE(dir);
  ThreadPool pool(2);
  for (const char* name : {"tiny-llama-spm-f32", "tiny-qwen2-f16", "tiny-llama3-q8_0", "tiny-llama3-q4_0", "tiny-qwen3-q4_k_m"}) {
    const auto model = Model::load(dir + "/models/" + name + ".gguf");
    const auto tokenizer = Tokenizer::from_gguf(model->file());
    const Json ref = Json::parse(testing::read_file(dir + "/models/" + name + ".ref.json"));
    std::vector<int32_t> base;
    for (const Json& t : ref.at("tokens").as_array()) base.push_back(int32_t(t.as_int()));
    std::vector<std::vector<int32_t>> prompts = {base, base, base};
    prompts[1].resize(base.size() / 2);
    prompts[2].push_back(base[1]);
    auto alone = [&](const std::vector<int32_t>& p) {
      Session session(*model, pool, {.n_ctx = 256});
      Generator gen(session, *tokenizer);
      GenerationRequest g;
      g.prompt = p;
      g.max_tokens = 16;
      g.sampling.temperature = 0;
      return gen.generate(g).tokens;
    };
    SchedulerConfig config;
    config.max_batch_tokens = 32;
    config.kv_budget_bytes = size_t(64) << 20;
    Scheduler s(*model, *tokenizer, pool, config);
    std::map<RequestId, std::vector<int32_t>> got;
    auto cb = [&](const TokenEvent& e) {
      if (e.token >= 0) got[e.id].push_back(e.token);
    };
    std::vector<RequestId> ids;
    for (const auto& p : prompts) {
      Request r;
      r.prompt = p;
      r.max_tokens = 16;
      r.sampling.temperature = 0;
      ids.push_back(s.submit(r, cb));
    }
    s.run_until_idle();
    for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(got[ids[i]], alone(prompts[i])) << name << " request " << i;
    // The reference's own greedy continuation comes out of the batch too (teacher-forced
    // agreement is checked in model_test; here the first tokens, before any near tie).
    std::vector<int32_t> expected;
    for (const Json& t : ref.at("greedy").as_array()) expected.push_back(int32_t(t.as_int()));
    EXPECT_EQ(got[ids[0]][0], expected[0]) << name;
  }
}

}  // namespace
}  // namespace muse

namespace muse {
namespace {

// The scheduler stepping on its own thread: requests submitted from several threads while it
// runs produce what they produce alone, it sleeps when idle and wakes for new work, and
// forgotten statistics are gone.
TEST_F(SchedulerTest, BackgroundLoopServesRequestsFromOtherThreads) {
  // (The shared state outlives the scheduler, whose loop thread calls back into it.)
  std::mutex mu;
  std::condition_variable done_cv;
  Collected got;
  int done = 0;
  Scheduler s(*model_, *tokenizer_, pool_, config());
  s.start();
  auto callback = [&](const TokenEvent& e) {
    std::lock_guard<std::mutex> lock(mu);
    if (e.token >= 0) got.tokens[e.id].push_back(e.token);
    if (e.done) {
      ++done;
      done_cv.notify_all();
    }
  };
  std::vector<std::pair<RequestId, std::vector<int32_t>>> requests(6);
  std::vector<std::thread> clients;
  for (int i = 0; i < 3; ++i)
    clients.emplace_back([&, i] {
      for (int j = 0; j < 2; ++j) {
        auto p = prompt(12 + 7 * (2 * i + j), 2 * i + j);
        const RequestId id = s.submit(request(p), callback);
        std::lock_guard<std::mutex> lock(mu);
        requests[size_t(2 * i + j)] = {id, p};
      }
    });
  for (std::thread& t : clients) t.join();
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(done_cv.wait_for(lock, std::chrono::seconds(60), [&] { return done == 6; }));
  }
  // Idle now; one more request after a pause wakes the loop.
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  const auto late = prompt(20, 99);
  const RequestId late_id = s.submit(request(late), callback);
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(done_cv.wait_for(lock, std::chrono::seconds(60), [&] { return done == 7; }));
  }
  s.stop();
  std::lock_guard<std::mutex> lock(mu);
  for (const auto& [id, p] : requests) EXPECT_EQ(got.tokens[id], alone(p)) << "request " << id;
  EXPECT_EQ(got.tokens[late_id], alone(late));
  s.forget(late_id);
  EXPECT_THROW(s.stats(late_id), Error);
  Request bad = request(prompt(5, 1));
  bad.sampling.logit_bias[model_->config().n_vocab] = 1;  // refused up front, not mid-step
  EXPECT_THROW(s.submit(bad), Error);
  EXPECT_THROW(s.forget(late_id), Error);
}

}  // namespace
}  // namespace muse

namespace muse {
namespace {

// A held request keeps its sequence after it ends: a fork continues all of it (the last token
// included) without recomputing, and release() or forget() gives the blocks back.
TEST_F(SchedulerTest, HeldRequestIsForkedAfterItEnds) {
  Scheduler s(*model_, *tokenizer_, pool_, config());
  Collected got;
  const auto p = prompt(30, 5);
  Request parent_request = request(p, 6);
  parent_request.hold = true;
  const RequestId parent = s.submit(parent_request, collect(got));
  s.run_until_idle();
  ASSERT_TRUE(s.stats(parent).finished);
  Request f = request({21, 22}, 5);
  f.fork_of = parent;
  const RequestId child = s.submit(f, collect(got));
  EXPECT_EQ(s.stats(child).cached_tokens, 30 + 5);  // all but the parent's last token
  s.run_until_idle();
  std::vector<int32_t> whole = p;
  whole.insert(whole.end(), got.tokens[parent].begin(), got.tokens[parent].end());
  whole.insert(whole.end(), {21, 22});
  EXPECT_EQ(got.tokens[child], alone(whole, 5));
  const size_t held = s.kv_bytes();
  s.release(parent);
  s.forget(child);
  EXPECT_LE(s.kv_bytes(), held);  // (the blocks stay cached, unreferenced, until evicted)
  Request orphan = request({1});
  orphan.fork_of = parent;  // released: no longer a parent
  EXPECT_THROW(s.submit(orphan), Error);
}

// Under memory pressure a held sequence goes to the prefix cache; its fork still continues
// the right tokens (recomputing what was evicted).
TEST_F(SchedulerTest, HeldSequenceGivesWayUnderPressure) {
  Scheduler s(*model_, *tokenizer_, pool_, config(/*budget_blocks=*/12));
  Collected got;
  const auto p = prompt(40, 9);
  Request held_request = request(p, 4);
  held_request.hold = true;
  const RequestId parent = s.submit(held_request, collect(got));
  s.run_until_idle();
  // Another request needs most of the budget.
  const auto other = prompt(60, 2);
  const RequestId big = s.submit(request(other, 4), collect(got));
  s.run_until_idle();
  EXPECT_EQ(got.tokens[big], alone(other, 4));
  Request f = request({31}, 4);
  f.fork_of = parent;
  const RequestId child = s.submit(f, collect(got));
  s.run_until_idle();
  EXPECT_LT(s.stats(child).cached_tokens, 40);  // the held blocks were given up
  std::vector<int32_t> whole = p;
  whole.insert(whole.end(), got.tokens[parent].begin(), got.tokens[parent].end());
  whole.push_back(31);
  EXPECT_EQ(got.tokens[child], alone(whole, 4));
}

// The thinking budget in the batch gives exactly what the Generator gives alone: the same
// tokens, the cue and close inserted after the budget (flagged as inserted), the same counts.
TEST_F(SchedulerTest, ThinkingBudgetMatchesTheGenerator) {
  GenerationRequest g;
  g.prompt = prompt(20, 4);
  g.max_tokens = 14;
  g.sampling.temperature = 0;
  g.sampling.logit_bias[7] = -INFINITY;
  g.thinking.close_token = 7;
  g.thinking.starts_inside = true;
  g.thinking.max_tokens = 5;
  g.thinking.cue = {11, 12};
  Session session(*model_, pool_, {.n_ctx = 512});
  Generator gen(session, *tokenizer_);
  const GenerationResult expected = gen.generate(g);

  Scheduler s(*model_, *tokenizer_, pool_, config());
  Request r = request(g.prompt, g.max_tokens);
  r.sampling = g.sampling;
  r.thinking = g.thinking;
  std::vector<int32_t> tokens;
  std::vector<bool> inserted;
  const RequestId id = s.submit(r, [&](const TokenEvent& e) {
    if (e.token < 0) return;
    tokens.push_back(e.token);
    inserted.push_back(e.inserted);
  });
  s.submit(request(prompt(33, 1)));  // company in the batch
  s.run_until_idle();
  EXPECT_EQ(tokens, expected.tokens);
  EXPECT_EQ(s.stats(id).thinking_tokens, 5);
  EXPECT_TRUE(s.stats(id).thinking_cut);
  // The thinking ended part-way: its time is a positive share of the decoding time.
  EXPECT_GT(s.stats(id).thinking_seconds, 0);
  EXPECT_LE(s.stats(id).thinking_seconds, s.stats(id).decode_seconds);
  ASSERT_EQ(inserted.size(), 14u);
  EXPECT_EQ(std::count(inserted.begin(), inserted.end(), true), 3);
  EXPECT_TRUE(inserted[5] && inserted[6] && inserted[7]);
}

// A grammar constrains one request of a batch and not the others.
TEST_F(SchedulerTest, GrammarConstrainsItsRequest) {
  Scheduler s(*model_, *tokenizer_, pool_, config());
  Collected got;
  Request r = request(prompt(12, 3), 40);
  r.grammar = Grammar::parse(R"(root ::= "<spawn>add 2 and 3</spawn>")");
  const RequestId constrained = s.submit(r, collect(got));
  const auto free_prompt = prompt(15, 8);
  const RequestId free = s.submit(request(free_prompt), collect(got));
  s.run_until_idle();
  std::vector<int32_t> text_tokens = got.tokens[constrained];
  ASSERT_FALSE(text_tokens.empty());
  EXPECT_TRUE(tokenizer_->is_eog(text_tokens.back()));
  text_tokens.pop_back();
  EXPECT_EQ(tokenizer_->decode(text_tokens, false), "<spawn>add 2 and 3</spawn>");
  EXPECT_EQ(got.finish[constrained], FinishReason::kEndOfGeneration);
  EXPECT_EQ(got.tokens[free], alone(free_prompt));
}

}  // namespace
}  // namespace muse

namespace muse {
namespace {

// Log-probabilities: against float64 by hand, and on events (the greedy token is the most
// likely one; probabilities of the top tokens are ordered and at most 1 in sum).
TEST(TokenLogprob, MatchesLogSoftmax) {
  const std::vector<float> logits = {1.0f, 3.0f, -2.0f, 3.0f, 0.5f};
  double z = 0;
  for (float x : logits) z += std::exp(double(x));
  std::vector<std::pair<int32_t, float>> top;
  EXPECT_NEAR(token_logprob(logits.data(), 5, 4, 3, &top), 0.5 - std::log(z), 1e-6);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].first, 1);  // a tie: the lower id first
  EXPECT_EQ(top[1].first, 3);
  EXPECT_EQ(top[2].first, 0);
  EXPECT_NEAR(top[2].second, 1.0 - std::log(z), 1e-6);
}

TEST_F(SchedulerTest, EventsCarryLogprobs) {
  Scheduler s(*model_, *tokenizer_, pool_, config());
  Request r = request(prompt(20, 6), 6);
  r.logprobs = 4;
  std::vector<TokenEvent> events;
  s.submit(r, [&](const TokenEvent& e) {
    if (e.token >= 0) events.push_back(e);
  });
  s.run_until_idle();
  ASSERT_EQ(events.size(), 6u);
  for (const TokenEvent& e : events) {
    ASSERT_EQ(e.top_logprobs.size(), 4u);
    EXPECT_EQ(e.top_logprobs[0].first, e.token);  // greedy
    EXPECT_FLOAT_EQ(e.top_logprobs[0].second, e.logprob);
    double p = 0;
    for (size_t i = 0; i < 4; ++i) {
      if (i) {
        EXPECT_LE(e.top_logprobs[i].second, e.top_logprobs[i - 1].second);
      }
      p += std::exp(double(e.top_logprobs[i].second));
    }
    EXPECT_LE(p, 1.0 + 1e-5);
    EXPECT_LT(e.logprob, 0);
  }
}

}  // namespace
}  // namespace muse
