#include "cli/commands.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>

#include "chat/chat_engine.h"
#include "cli/args.h"
#include "cli/cli_common.h"
#include "io/gguf.h"
#include "model/model.h"
#include "model/session.h"
#include "runtime/sampler.h"
#include "runtime/scheduler.h"
#include "runtime/speculative.h"
#include "synth/synth.h"
#include "tokenizer/tokenizer.h"
#include "util/bandwidth.h"
#include "util/cpu.h"
#include "util/error.h"
#include "util/json.h"
#include "util/thread_pool.h"

namespace muse {
namespace {

// The model's tokenizer, or null when the file has none (ids-only use still works).
std::unique_ptr<Tokenizer> maybe_tokenizer(const GgufFile& file) {
  if (!file.find("tokenizer.ggml.tokens")) return nullptr;
  return Tokenizer::from_gguf(file);
}

}  // namespace

int cmd_info(const Argv& argv) {
  const Args a(argv, {"-m"}, {"--tensors"});
  auto file = GgufFile::open(a.require("-m"));
  std::printf("file: %s (%s, GGUF v%u, %zu tensors, %zu metadata keys)\n", file->path().c_str(),
              human_bytes(double(file->file_size())).c_str(), file->version(), file->tensors().size(),
              file->metadata().size());
  std::string model_error;
  try {
    const ModelConfig c = ModelConfig::from_gguf(*file);
    std::printf("architecture: %s\n", c.arch_name.c_str());
    std::printf("shape: embd %d, layers %d, heads %d, kv heads %d, head dim %d, ffn %d, vocab %d\n",
                c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.head_dim, c.n_ff, c.n_vocab);
    std::printf("context: %d (training); rope: base %g, %d dims, %s%s; rms eps %g\n", c.n_ctx_train,
                c.rope_base, c.n_rot, c.rope_style == RopeStyle::kAdjacent ? "adjacent pairs" : "neox halves",
                file->find_tensor("rope_freqs.weight") ? ", rope_freqs" : "", double(c.rms_eps));
    std::printf("output head: %s\n", file->find_tensor("output.weight") ? "separate" : "tied to token_embd");
  } catch (const Error& e) {
    model_error = e.what();
    std::printf("architecture: not runnable: %s\n", e.what());
  }
  std::map<std::string, std::pair<int, size_t>> by_type;
  size_t params = 0;
  for (const GgufTensor& t : file->tensors()) {
    auto& e = by_type[type_name(t.type)];
    ++e.first;
    e.second += t.nbytes;
    params += size_t(t.elements());
  }
  std::printf("parameters: %.1f M\ntensor types:", double(params) / 1e6);
  for (const auto& [name, e] : by_type) std::printf(" %s x%d (%s)", name.c_str(), e.first, human_bytes(double(e.second)).c_str());
  std::printf("\n");
  if (const GgufValue* tok = file->find("tokenizer.ggml.tokens")) {
    std::printf("tokenizer: %s, pre \"%s\", %llu tokens, bos %lld, eos %lld\n",
                file->get_string("tokenizer.ggml.model", "?").c_str(),
                file->get_string("tokenizer.ggml.pre", "default").c_str(), (unsigned long long)tok->count,
                (long long)file->get_int("tokenizer.ggml.bos_token_id", -1),
                (long long)file->get_int("tokenizer.ggml.eos_token_id", -1));
  } else {
    std::printf("tokenizer: none\n");
  }
  const std::string tmpl = file->get_string("tokenizer.chat_template", "");
  std::printf("chat template: %s\n", tmpl.empty() ? "none" : (std::to_string(tmpl.size()) + " chars").c_str());
  std::printf("metadata:\n");
  for (const auto& [key, v] : file->metadata()) std::printf("  %s = %s\n", key.c_str(), v.describe().c_str());
  if (a.has("--tensors")) {
    std::printf("tensors:\n");
    for (const GgufTensor& t : file->tensors())
      std::printf("  %-36s %-6s %s\n", t.name.c_str(), type_name(t.type), t.shape().c_str());
  }
  return 0;
}

int cmd_logits(const Argv& argv) {
  const Args a(argv, {"-m", "--tokens", "-p", "-f", "--top", "--dump", "-t", "-c"}, {});
  const auto model = Model::load(a.require("-m"));
  const ModelConfig& c = model->config();
  const auto tokenizer = maybe_tokenizer(model->file());
  const std::vector<int32_t> tokens = prompt_tokens(a, tokenizer.get(), c.n_vocab);
  const long long top = a.get_int("--top", 5);
  if (top < 1) fail("--top must be at least 1");
  ThreadPool pool(thread_count(a));
  SessionParams sp;
  sp.n_ctx = int(std::max<long long>(a.get_int("-c", 0), (long long)tokens.size()));
  Session session(*model, pool, sp);
  std::vector<float> logits(tokens.size() * size_t(c.n_vocab));
  session.forward(tokens.data(), int(tokens.size()), logits.data(), true);

  if (a.has("--dump")) {
    std::ofstream f(a.get("--dump"), std::ios::binary);
    if (!f) fail("cannot write ", a.get("--dump"));
    f.write(reinterpret_cast<const char*>(logits.data()), std::streamsize(logits.size() * 4));
    if (!f) fail("write failed: ", a.get("--dump"));
  }
  std::string out = "{\"tokens\":[";
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(tokens[i]);
  }
  out += "],\"top\":[";
  const int k = int(std::min<long long>(top, c.n_vocab));
  std::vector<int> idx(c.n_vocab);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const float* row = logits.data() + i * c.n_vocab;
    for (int j = 0; j < c.n_vocab; ++j) idx[j] = j;
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](int x, int y) { return row[x] > row[y] || (row[x] == row[y] && x < y); });
    out += i ? ",[" : "[";
    for (int j = 0; j < k; ++j)
      out += (j ? ",[" : "[") + std::to_string(idx[j]) + "," + format_float(row[idx[j]]) + "]";
    out += "]";
  }
  out += "]}\n";
  std::fputs(out.c_str(), stdout);
  return 0;
}

namespace {

std::string ids_json(const std::vector<int32_t>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(ids[i]);
  }
  return out + "]";
}

void print_speeds(const GenerationResult& g) {
  std::fprintf(stderr, "prompt: %d tokens in %.3f s (%.1f tok/s); generated: %zu tokens in %.3f s (%.1f tok/s); finish: %s\n",
               g.prompt_tokens, g.prompt_seconds, g.prompt_rate(), g.tokens.size(), g.decode_seconds,
               g.decode_rate(), finish_reason_name(g.finish));
  if (g.drafted_tokens)
    std::fprintf(stderr, "speculative: %d guesses checked, %d accepted (%.0f%%)\n", g.drafted_tokens,
                 g.accepted_tokens, 100.0 * g.accepted_tokens / g.drafted_tokens);
}

// `muse run --chat`: one user turn through the model's chat template.
int run_chat_turn(const Args& a, const Model& model, const Tokenizer& tokenizer, Session& session,
                  const GenerationRequest& generation) {
  if (!a.has("-p") && !a.has("-f")) fail("--chat needs the message as -p TEXT or -f FILE");
  const auto chat_template = ChatTemplate::from_gguf(model.file());
  ChatEngine engine(tokenizer, *chat_template, session);
  ChatRequest request;
  request.generation = generation;
  request.enable_thinking = a.get("--think", "on") != "off";
  request.thinking_budget = int(a.get_int("--think-budget", -1));
  request.min_thinking = int(a.get_int("--think-min", 0));
  if (request.thinking_budget < -1 || request.min_thinking < 0) fail("--think-budget and --think-min must be >= 0");
  Json::Array messages;
  if (a.has("-s")) messages.push_back(Json(Json::Object{{"role", Json("system")}, {"content", Json(a.get("-s"))}}));
  messages.push_back(Json(Json::Object{{"role", Json("user")}, {"content", Json(a.has("-p") ? a.get("-p") : read_text_file(a.get("-f")))}}));
  request.messages = Json(std::move(messages));
  const bool json = a.has("--json");
  const bool tty = isatty(STDERR_FILENO);
  // The answer goes to stdout; reasoning to stderr (dimmed on a terminal), so pipes get the answer.
  bool reasoning_open = false;  // the answer starts on a line of its own
  const ChatReply reply = engine.reply(request, [&](const OutputDelta& d) {
    if (json) return true;
    if (!d.reasoning.empty()) {
      std::fprintf(stderr, tty ? "\x1b[2m%s\x1b[0m" : "%s", d.reasoning.c_str());
      reasoning_open = d.reasoning.back() != '\n';
    }
    if (!d.content.empty() && reasoning_open) std::fputc('\n', stderr), reasoning_open = false;
    std::fputs(d.content.c_str(), stdout);
    std::fflush(stdout);
    return true;
  });
  if (json) {
    Json::Object out{{"reasoning", Json(reply.reasoning)}, {"content", Json(reply.content)},
                     {"reasoning_tokens", Json(reply.reasoning_tokens)},
                     {"answer_tokens", Json(reply.answer_tokens)},
                     {"reasoning_seconds", Json(reply.reasoning_seconds)},
                     {"answer_seconds", Json(reply.answer_seconds)},
                     {"thinking_cut", Json(reply.generation.thinking_cut)}};
    out.emplace("message", reply.message());
    out.emplace("finish_reason", Json(finish_reason_name(reply.generation.finish)));
    std::printf("%s\n", Json(std::move(out)).dump().c_str());
  } else {
    for (const ToolCall& c : reply.tool_calls) std::printf("\n[tool call %s %s]", c.name.c_str(), c.arguments.c_str());
    std::printf("\n");
  }
  std::fflush(stdout);  // before the statistics on stderr
  print_speeds(reply.generation);
  if (!reply.reasoning.empty())
    std::fprintf(stderr, "reasoning: %d tokens in %.3f s%s; answer: %d tokens in %.3f s\n", reply.reasoning_tokens,
                 reply.reasoning_seconds, reply.generation.thinking_cut ? " (closed by the budget)" : "",
                 reply.answer_tokens, reply.answer_seconds);
  return 0;
}

}  // namespace

int cmd_run(const Argv& argv) {
  std::set<std::string> known = generation_flags();
  known.insert({"-m", "--tokens", "-p", "-f", "-s", "--think", "--think-budget", "--think-min", "-t", "-c", "--draft",
                "--draft-max"});
  const Args a(argv, known, {"--json", "--chat"});
  const auto model = Model::load(model_path(a));
  const ModelConfig& c = model->config();
  const auto tokenizer = maybe_tokenizer(model->file());
  if (!tokenizer) fail("the model has no tokenizer; generation needs one (for its end tokens and text)");
  GenerationRequest generation = generation_from_args(a, 32);
  ThreadPool pool(thread_count(a));
  SessionParams params;
  params.n_ctx = int(std::min<long long>(a.get_int("-c", 4096), c.n_ctx_train));
  if (params.n_ctx < 16) fail("-c must be at least 16");
  Session session(*model, pool, params);
  if (a.has("--chat")) return run_chat_turn(a, *model, *tokenizer, session, generation);
  if (a.has("-s") || a.has("--think") || a.has("--think-budget") || a.has("--think-min"))
    fail("-s and --think options go with --chat");
  generation.prompt = prompt_tokens(a, tokenizer.get(), c.n_vocab);
  // A text prompt gets text back; an id prompt gets ids (what scripts comparing runs want).
  const bool text_out = !a.has("--tokens");
  const bool json = a.has("--json");
  Generator generator(session, *tokenizer);
  // Speculative decoding: prompt lookup ("ngram") or a draft model file.
  std::unique_ptr<Model> draft_model;
  std::unique_ptr<Drafter> drafter;
  if (a.has("--draft")) {
    const std::string draft = a.get("--draft");
    if (draft == "ngram") {
      drafter = std::make_unique<PromptLookupDrafter>();
    } else {
      draft_model = Model::load(draft);
      drafter = std::make_unique<DraftModelDrafter>(*draft_model, *model, pool, params.n_ctx);
    }
    const long long max_guesses = a.get_int("--draft-max", 8);
    if (max_guesses < 1 || max_guesses > 64) fail("--draft-max must be 1..64");
    generator.set_drafter(drafter.get(), int(max_guesses));
  } else if (a.has("--draft-max")) {
    fail("--draft-max goes with --draft ngram|FILE");
  }
  bool first = true;
  const GenerationResult g = generator.generate(generation, [&](int32_t token, std::string_view text) {
    if (json) return true;
    if (text_out) std::fwrite(text.data(), 1, text.size(), stdout);
    else if (token >= 0) std::printf("%s%d", first ? "" : " ", token);
    first = false;
    std::fflush(stdout);
    return true;
  });
  if (json) {
    std::string out = "{\"generated\":" + ids_json(g.tokens);
    if (text_out) {
      out += ",\"text\":";
      append_json_string(out, g.text);
    }
    out += ",\"finish_reason\":\"";
    out += finish_reason_name(g.finish);
    out += "\",\"drafted\":" + std::to_string(g.drafted_tokens) + ",\"accepted\":" + std::to_string(g.accepted_tokens);
    std::printf("%s}\n", out.c_str());
  } else {
    std::printf("\n");
  }
  print_speeds(g);
  return 0;
}

namespace {

// `muse bench --parallel N --shared-prefix P -n G`: N requests with the same P-token prompt,
// each generating G tokens, batched by the scheduler (the prefix is computed and stored once).
int bench_parallel(const Args& a, const Model& model, int threads) {
  const ModelConfig& c = model.config();
  const auto tokenizer = maybe_tokenizer(model.file());
  if (!tokenizer) fail("--parallel needs a model with a tokenizer (for its end tokens)");
  const long long n_seq = a.get_int("--parallel", 1), n_prefix = a.get_int("--shared-prefix", 512),
                  n_gen = a.get_int("-n", 64);
  if (n_seq < 1 || n_seq > 1024 || n_prefix < 1 || n_gen < 1)
    fail("--parallel must be 1..1024, --shared-prefix and -n at least 1");
  if (n_prefix + n_gen >= c.n_ctx_train) fail("--shared-prefix plus -n exceed the model's context of ", c.n_ctx_train);
  ThreadPool pool(threads);
  SchedulerConfig sc;
  sc.kv_type = kv_type_from_name(a.get("--kv-type", "f16"));
  sc.max_running = int(n_seq);
  sc.max_context = int(n_prefix + n_gen + 1);
  const KvPoolConfig kc = kv_pool_config(c, sc.kv_type, sc.block_tokens, 0);
  // Room for the prefix once and every sequence's own tokens, plus a block each to spare.
  const long long blocks = (n_prefix + sc.block_tokens - 1) / sc.block_tokens +
                           n_seq * ((n_gen + 1 + sc.block_tokens - 1) / sc.block_tokens + 2);
  sc.kv_budget_bytes = size_t(a.get_int("--kv-budget-mib", 0)) << 20;
  if (sc.kv_budget_bytes == 0) sc.kv_budget_bytes = size_t(blocks) * KvPool::block_bytes_for(kc);
  Scheduler scheduler(model, *tokenizer, pool, sc);
  std::mt19937 rng(42);
  std::vector<int32_t> prefix(static_cast<size_t>(n_prefix));
  for (auto& x : prefix) x = int32_t(rng() % uint32_t(c.n_vocab));
  const bool json = a.has("--json");
  const bool progress = !json && isatty(STDERR_FILENO);
  std::vector<RequestId> ids;
  std::atomic<long long> tokens_out{0};
  Clock::time_point first_decode{}, last_token{};
  int started = 0;
  const auto t0 = Clock::now();
  for (long long i = 0; i < n_seq; ++i) {
    Request r;
    r.prompt = prefix;
    r.max_tokens = int(n_gen);
    r.sampling.temperature = 0;
    r.stop_at_eog = false;  // every sequence generates exactly G tokens
    ids.push_back(scheduler.submit(std::move(r), [&](const TokenEvent& e) {
      if (e.token < 0) return;
      ++tokens_out;
      last_token = Clock::now();
      if (scheduler.stats(e.id).generated == 1 && ++started == n_seq) first_decode = last_token;
    }));
  }
  size_t peak_kv = 0;
  while (scheduler.step()) {
    peak_kv = std::max(peak_kv, scheduler.kv_bytes());
    if (progress) std::fprintf(stderr, "\rparallel: %lld/%lld tokens", tokens_out.load(), n_seq * n_gen);
  }
  if (progress) std::fprintf(stderr, "\n");
  // Decode: from the moment every sequence has its first token to the last token.
  const double t_decode = std::chrono::duration<double>(last_token - first_decode).count();
  const double aggregate = t_decode > 0 ? double(n_seq * (n_gen - 1)) / t_decode : 0;
  double per_seq = 0;
  int cached = 0;
  for (RequestId id : ids) {
    const RequestStats st = scheduler.stats(id);
    if (st.finish == FinishReason::kContextFull)
      fail("the KV budget (", human_bytes(double(scheduler.kv().n_blocks()) * double(scheduler.kv().block_bytes())),
           ", ", scheduler.kv().n_blocks() * scheduler.kv().block_tokens(),
           " token slots) cannot hold one sequence: raise --kv-budget-mib");
    per_seq += st.decode_rate() / double(n_seq);
    cached += st.cached_tokens;
  }
  const double total = seconds_since(t0);
  if (json) {
    std::printf("{\"aggregate_tg_tps\":%.3f,\"per_seq_tg_tps\":%.3f,\"kv_bytes\":%zu,\"parallel\":%lld,"
                "\"shared_prefix\":%lld,\"n_gen\":%lld,\"cached_prompt_tokens\":%d,\"total_seconds\":%.3f,"
                "\"threads\":%d,\"kv_type\":\"%s\"}\n",
                aggregate, per_seq, peak_kv, n_seq, n_prefix, n_gen, cached, total, threads, kv_type_name(sc.kv_type));
  } else {
    std::printf("| sequences | shared prefix | generated each | aggregate decode tok/s | per sequence tok/s | KV in use | prompt tokens reused | total s |\n");
    std::printf("|---|---|---|---|---|---|---|---|\n");
    std::printf("| %lld | %lld | %lld | %.2f | %.2f | %s | %d | %.2f |\n", n_seq, n_prefix, n_gen, aggregate,
                per_seq, human_bytes(double(peak_kv)).c_str(), cached, total);
  }
  return 0;
}

}  // namespace

int cmd_bench(const Argv& argv) {
  const Args a(argv, {"-m", "-p", "-n", "-t", "-r", "--parallel", "--shared-prefix", "--kv-type", "--kv-budget-mib"},
               {"--json"});
  const auto t_load = Clock::now();
  const auto model = Model::load(a.require("-m"));
  const ModelConfig& c = model->config();
  if (a.has("--parallel") || a.has("--shared-prefix")) return bench_parallel(a, *model, thread_count(a));
  const long long n_prompt = a.get_int("-p", 256), n_gen = a.get_int("-n", 64), reps = a.get_int("-r", 5);
  if (n_prompt < 0 || n_gen < 0 || reps < 1) fail("-p and -n must be >= 0 and -r >= 1");
  const int threads = thread_count(a);
  ThreadPool pool(threads);
  SessionParams params;
  params.n_ctx = int(std::max<long long>(n_prompt, n_gen) + 1);
  if (params.n_ctx > c.n_ctx_train) fail("-p/-n exceed the model's context of ", c.n_ctx_train);
  params.n_batch = int(std::max<long long>(1, std::min<long long>(n_prompt, 512)));
  Session session(*model, pool, params);
  std::vector<float> logits(c.n_vocab);
  std::mt19937 rng(42);
  auto random_tokens = [&](long long n) {
    std::vector<int32_t> t(n);
    for (auto& x : t) x = int32_t(rng() % uint32_t(c.n_vocab));
    return t;
  };
  const bool json = a.has("--json");
  if (!json)
    std::fprintf(stderr, "model: %s (%s, %s), %d threads, kernels %s, loaded in %.2f s\n", a.get("-m").c_str(),
                 c.arch_name.c_str(), human_bytes(double(model->weight_bytes())).c_str(), threads,
                 kernels().name, seconds_since(t_load));
  auto run_pp = [&] {
    session.reset();
    const auto tokens = random_tokens(n_prompt);
    const auto t = Clock::now();
    session.forward(tokens.data(), int(n_prompt), logits.data(), false);
    return seconds_since(t);
  };
  auto run_tg = [&] {
    session.reset();
    const auto tokens = random_tokens(n_gen);
    const auto t = Clock::now();
    for (long long i = 0; i < n_gen; ++i) session.forward(&tokens[i], 1, logits.data(), false);
    return seconds_since(t);
  };
  struct Stat {
    double mean = 0, sd = 0;
  };
  auto measure = [&](const char* label, long long n, auto&& fn) -> Stat {
    if (n == 0) return {};
    fn();  // warm-up
    std::vector<double> tps;
    for (long long r = 0; r < reps; ++r) {
      tps.push_back(double(n) / fn());
      if (!json) std::fprintf(stderr, "\r%s: run %lld/%lld: %.1f tok/s   ", label, r + 1, reps, tps.back());
    }
    if (!json) std::fprintf(stderr, "\n");
    Stat s;
    for (double x : tps) s.mean += x / double(tps.size());
    for (double x : tps) s.sd += (x - s.mean) * (x - s.mean) / double(std::max<size_t>(1, tps.size() - 1));
    s.sd = std::sqrt(s.sd);
    return s;
  };
  const Stat pp = measure("pp", n_prompt, run_pp);
  const Stat tg = measure("tg", n_gen, run_tg);
  // Decode against the memory roofline: a step streams the model's bytes, so tok/s can be at
  // most the read bandwidth over them.
  const double bandwidth = n_gen ? measure_read_bandwidth(pool) : 0;
  const double roofline = bandwidth > 0 ? tg.mean * double(model->weight_bytes()) / bandwidth : 0;
  if (json) {
    std::printf("{\"pp_tps\":%.3f,\"tg_tps\":%.3f,\"pp_tps_sd\":%.3f,\"tg_tps_sd\":%.3f,\"n_prompt\":%lld,"
                "\"n_gen\":%lld,\"threads\":%d,\"kernels\":\"%s\",\"model_bytes\":%zu,"
                "\"read_bandwidth_gbs\":%.2f,\"tg_roofline_fraction\":%.3f}\n",
                pp.mean, tg.mean, pp.sd, tg.sd, n_prompt, n_gen, threads, kernels().name, model->weight_bytes(),
                bandwidth / 1e9, roofline);
  } else {
    std::printf("| model | size | threads | test | tok/s |\n|---|---|---|---|---|\n");
    if (n_prompt) std::printf("| %s | %s | %d | pp%lld | %.2f ± %.2f |\n", c.arch_name.c_str(),
                              human_bytes(double(model->weight_bytes())).c_str(), threads, n_prompt, pp.mean, pp.sd);
    if (n_gen) {
      std::printf("| %s | %s | %d | tg%lld | %.2f ± %.2f |\n", c.arch_name.c_str(),
                  human_bytes(double(model->weight_bytes())).c_str(), threads, n_gen, tg.mean, tg.sd);
      std::printf("\ndecode at %.0f%% of the memory roofline (model bytes x tok/s over the measured read bandwidth, "
                  "%.1f GB/s)\n", 100 * roofline, bandwidth / 1e9);
    }
  }
  return 0;
}

int cmd_synth(const Argv& argv) {
  const Args a(argv, {"--arch", "--preset", "--dims", "--type", "-o", "--seed"}, {});
  SynthOptions o;
  if (a.has("--preset")) apply_preset(a.get("--preset"), o);
  if (a.has("--arch")) {
    const std::string arch = a.get("--arch");
    if (arch == "llama") o.arch = Arch::kLlama;
    else if (arch == "qwen2") o.arch = Arch::kQwen2;
    else if (arch == "qwen3") o.arch = Arch::kQwen3;
    else fail("--arch must be llama, qwen2 or qwen3");
  }
  if (a.has("--dims")) apply_dims(a.get("--dims"), o.shape);
  if (!a.has("--preset") && !a.has("--dims")) fail("give --preset NAME or --dims K=V,...");
  o.type = a.require("--type");
  o.seed = uint64_t(a.get_int("--seed", 1));
  const std::string out = a.require("-o");
  const auto t = Clock::now();
  const bool tty = isatty(STDERR_FILENO);
  synthesize(o, out, [tty](int done, int total) {
    if (tty) std::fprintf(stderr, "\rsynth: %d/%d tensors%s", done, total, done == total ? "\n" : "");
  });
  std::fprintf(stderr, "synth: wrote %s (%s) in %.1f s\n", out.c_str(), arch_name(o.arch), seconds_since(t));
  return 0;
}

}  // namespace muse
