// The `muse` binary as users and scripts call it: exact command forms, JSON shapes, and one
// clear error line with a non-zero exit for bad input.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "testing/test_support.h"
#include "util/json.h"

namespace muse {
namespace {

struct Result {
  int code;
  std::string out, err;
};

// "[1,2,3]" -> "1,2,3", for passing ids back with --tokens.
std::string id_list(const Json& ids) {
  std::string list;
  for (const Json& id : ids.as_array()) {
    if (!list.empty()) list += ',';
    list += std::to_string(id.as_int());
  }
  return list;
}

Result muse(const std::string& args) {
  const std::string err_path = testing::temp_path("stderr.txt");
  const std::string cmd = std::string(MUSE_BINARY) + " " + args + " 2>" + err_path;
  FILE* p = popen(cmd.c_str(), "r");
  Result r{-1, "", ""};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  r.err = testing::read_file(err_path);
  return r;
}

class Cli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = new std::string(testing::temp_path("cli.gguf"));
    const Result r = muse("synth --arch qwen3 --dims embd=128,layers=2,heads=4,kv_heads=2,head_dim=32,ff=256,vocab=400 "
                          "--type q8_0 -o " + *model_ + " --seed 3");
    ASSERT_EQ(r.code, 0) << r.err;
  }
  static void TearDownTestSuite() {
    std::remove(model_->c_str());
    delete model_;
  }
  static std::string* model_;
};
std::string* Cli::model_ = nullptr;

TEST_F(Cli, InfoDescribesTheModel) {
  const Result r = muse("info -m " + *model_);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("architecture: qwen3"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("head dim 32"), std::string::npos);
  EXPECT_NE(r.out.find("q8_0"), std::string::npos);
  EXPECT_NE(r.out.find("tokenizer: gpt2"), std::string::npos);
  EXPECT_NE(r.out.find("chat template:"), std::string::npos);
}

TEST_F(Cli, LogitsPrintsTopKPerPositionAndDumpsAll) {
  const std::string dump = testing::temp_path("logits.f32");
  const Result r = muse("logits -m " + *model_ + " --tokens 1,2,3 --top 4 --dump " + dump);
  ASSERT_EQ(r.code, 0) << r.err;
  const Json j = Json::parse(r.out);
  EXPECT_EQ(j.at("tokens").size(), 3u);
  ASSERT_EQ(j.at("top").size(), 3u);
  for (const Json& pos : j.at("top").as_array()) {
    ASSERT_EQ(pos.size(), 4u);
    for (size_t k = 1; k < 4; ++k) EXPECT_GE(pos[k - 1][1].as_number(), pos[k][1].as_number());
  }
  const std::string raw = testing::read_file(dump);
  ASSERT_EQ(raw.size(), 3u * 400 * 4);
  const float* f = reinterpret_cast<const float*>(raw.data());
  EXPECT_FLOAT_EQ(f[2 * 400 + j.at("top")[2][0][0].as_int()], float(j.at("top")[2][0][1].as_number()));
}

TEST_F(Cli, GreedyRunIsDeterministicAndSampledRunFollowsTheSeed) {
  const Result a = muse("run -m " + *model_ + " --tokens 5,6,7 -n 8 --temp 0 --json");
  const Result b = muse("run -m " + *model_ + " --tokens 5,6,7 -n 8 --temp 0 --json -t 1");
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_EQ(Json::parse(a.out).at("generated").size(), 8u);
  EXPECT_EQ(a.out, b.out);
  const std::string sampled = "run -m " + *model_ + " --tokens 5,6,7 -n 8 --temp 1.5 --top-k 0 --top-p 1 --min-p 0 --json";
  EXPECT_EQ(muse(sampled + " --seed 11").out, muse(sampled + " --seed 11").out);
  EXPECT_NE(muse(sampled + " --seed 11").out, muse(sampled + " --seed 12").out);
}

TEST_F(Cli, TokenizeAndDetokenizeRoundTrip) {
  const std::string text = "Hello, wörld! <|im_start|> 12345";
  const Result ids = muse("tokenize -m " + *model_ + " -p '" + text + "'");
  ASSERT_EQ(ids.code, 0) << ids.err;
  const Json j = Json::parse(ids.out);
  const std::string list = id_list(j);
  const Json special = Json::parse(muse("tokenize -m " + *model_ + " --no-bos -p '<|im_start|>'").out);
  ASSERT_EQ(special.size(), 1u);  // parsed as one control token by default
  EXPECT_NE(list.find("," + std::to_string(special[0].as_int()) + ","), std::string::npos) << list;
  const Result back = muse("detokenize -m " + *model_ + " --tokens " + list);
  ASSERT_EQ(back.code, 0) << back.err;
  EXPECT_EQ(back.out, text);
  // --no-special spells the control token out in ordinary tokens.
  const Json plain = Json::parse(muse("tokenize -m " + *model_ + " --no-special -p '<|im_start|>'").out);
  EXPECT_GT(plain.size(), 1u);
}

TEST_F(Cli, TokenizeMatchesLlamaCppOnReferenceModels) {
  MUSE_REQUIRE_REFERENCE(dir);
  for (const char* name : {"tiny-llama-spm-f32", "tiny-llama3-q8_0", "tiny-qwen2-f16", "tiny-qwen3-q4_k_m"}) {
    const std::string base = dir + "/models/" + name;
    const Json ref = Json::parse(testing::read_file(base + ".ref.json"));
    const std::string prompt_file = testing::temp_path("prompt.txt");
    std::ofstream(prompt_file, std::ios::binary) << ref.at("prompt").as_string();
    const Result r = muse("tokenize -m " + base + ".gguf -f " + prompt_file);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(Json::parse(r.out).dump(), ref.at("tokens").dump()) << name;
  }
}

TEST_F(Cli, RunAndLogitsTakeTextPrompts) {
  const Result a = muse("run -m " + *model_ + " -p 'Once upon a time' -n 6 --temp 0 --json");
  ASSERT_EQ(a.code, 0) << a.err;
  const Json j = Json::parse(a.out);
  EXPECT_TRUE(j.at("text").is_string());
  EXPECT_LE(j.at("generated").size(), 6u);
  EXPECT_EQ(a.out, muse("run -m " + *model_ + " -p 'Once upon a time' -n 6 --temp 0 --json").out);
  const Result ids = muse("tokenize -m " + *model_ + " -p 'Once upon a time'");
  const std::string list = id_list(Json::parse(ids.out));
  const Result by_text = muse("logits -m " + *model_ + " -p 'Once upon a time' --top 3");
  const Result by_ids = muse("logits -m " + *model_ + " --tokens " + list + " --top 3");
  ASSERT_EQ(by_text.code, 0) << by_text.err;
  EXPECT_EQ(by_text.out, by_ids.out);
}

TEST_F(Cli, BenchPrintsJson) {
  const Result r = muse("bench -m " + *model_ + " -p 16 -n 4 -r 1 -t 2 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const Json j = Json::parse(r.out);
  EXPECT_GT(j.at("pp_tps").as_number(), 0);
  EXPECT_GT(j.at("tg_tps").as_number(), 0);
}

TEST_F(Cli, ParallelBenchReportsAggregateAndKvBytes) {
  const Result r = muse("bench -m " + *model_ + " --parallel 3 --shared-prefix 40 -n 4 -t 2 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const Json j = Json::parse(r.out);
  EXPECT_GT(j.at("aggregate_tg_tps").as_number(), 0);
  EXPECT_GT(j.at("per_seq_tg_tps").as_number(), 0);
  EXPECT_GT(j.at("kv_bytes").as_number(), 0);
  EXPECT_GE(j.at("cached_prompt_tokens").as_int(), 2 * 32);  // the prefix is computed once
}

TEST_F(Cli, ContemplateRunsAgentsOnASharedPromptAndWritesTheTrace) {
  const std::string trace = testing::temp_path("contemplate.json");
  const Result r = muse("contemplate -m " + *model_ + " -p 'What is 2+2?' --agents 3 --budget 6 --json " + trace);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("3 agents"), std::string::npos) << r.err;
  const Json j = Json::parse(testing::read_file(trace));
  ASSERT_EQ(j.at("traces").as_array().size(), 3u);
  int64_t generated = 0, shared = 0;
  for (const Json& t : j.at("traces").as_array()) {
    EXPECT_LE(t.at("tokens").as_int(), 6);
    generated += t.at("tokens").as_int();
    shared += t.at("cached_prompt_tokens").as_int() > 0;
  }
  EXPECT_EQ(j.at("generated_tokens").as_int(), generated);
  EXPECT_GE(shared, 2);  // the agents after the first read the prompt from the cache
  EXPECT_NE(muse("contemplate -m " + *model_ + " -p hi --agents 0").code, 0);
}

// Sub-agents from the terminal: the tool and markup ways in run, write their trace and refuse
// options that belong to another mode.
TEST_F(Cli, ContemplateWithSubAgentsWritesTheAgentTrace) {
  for (const char* mode : {"tool", "markup"}) {
    const std::string trace = testing::temp_path(std::string("agents-") + mode + ".json");
    const Result r = muse("contemplate -m " + *model_ + " -p 'What is (2+3)*(4+5)?' --mode " + mode +
                          " --budget 8 --depth 1 --json " + trace);
    ASSERT_EQ(r.code, 0) << r.err;
    const Json j = Json::parse(testing::read_file(trace));
    EXPECT_EQ(j.at("mode").as_string(), mode);
    ASSERT_GE(j.at("agents").as_array().size(), 1u);
    EXPECT_LE(j.at("agents")[0].at("tokens").as_int(), 8);
    EXPECT_EQ(j.at("agents")[0].at("parent").as_int(), -1);
  }
  EXPECT_NE(muse("contemplate -m " + *model_ + " -p hi --mode vote --depth 2").code, 0);
  EXPECT_NE(muse("contemplate -m " + *model_ + " -p hi --mode swarm").code, 0);
  EXPECT_NE(muse("contemplate -m " + *model_ + " -p hi --mode tool --join synthesis").code, 0);
  // Parallel thinking joined by a synthesis pass instead of the vote.
  const std::string trace = testing::temp_path("synthesis.json");
  const Result r = muse("contemplate -m " + *model_ + " -p 'What is 2+2?' --agents 2 --budget 5 --join synthesis --json " + trace);
  ASSERT_EQ(r.code, 0) << r.err;
  const Json j = Json::parse(testing::read_file(trace));
  EXPECT_EQ(j.at("join").as_string(), "synthesis");
  EXPECT_GT(j.at("synthesis_tokens").as_int(), 0);
  EXPECT_LE(j.at("synthesis_tokens").as_int(), 5);
}

// `muse eval-data` writes a question set `muse eval` reads; eval reports every mode as a
// table, JSON and a plot, and refuses a bad mode before running anything.
TEST_F(Cli, EvalRunsModesOnAGeneratedSet) {
  const std::string data = testing::temp_path("eval.jsonl"), json = testing::temp_path("eval.json"),
                    plot = testing::temp_path("eval.svg");
  ASSERT_EQ(muse("eval-data --task countdown --count 3 --seed 2 -o " + data).code, 0);
  const Result r = muse("eval -m " + *model_ + " --data " + data + " --mode no-think --mode contemplate:2 -n 6 --json " +
                        json + " --plot " + plot);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("| contemplate:2 |"), std::string::npos) << r.out;
  const Json j = Json::parse(testing::read_file(json));
  ASSERT_EQ(j.at("modes").as_array().size(), 2u);
  EXPECT_EQ(j.at("questions").as_int(), 3);
  EXPECT_LE(j.at("modes")[1].at("mean_total_tokens").as_number(), 12);
  EXPECT_NE(testing::read_file(plot).find("<svg"), std::string::npos);
  // eval-plot: runs together, each mode named after its model file; a file that is not eval
  // JSON is refused with its name.
  const std::string both = testing::temp_path("both.svg");
  const Result joined = muse("eval-plot --results " + json + " --results " + json + " -o " + both);
  ASSERT_EQ(joined.code, 0) << joined.err;
  const std::string stem = std::filesystem::path(*model_).stem().string();
  EXPECT_NE(joined.out.find("| " + stem + " contemplate:2 |"), std::string::npos) << joined.out;
  EXPECT_NE(testing::read_file(both).find("<svg"), std::string::npos);
  const Result not_eval = muse("eval-plot --results " + data);
  EXPECT_NE(not_eval.code, 0);
  EXPECT_NE(not_eval.err.find(data), std::string::npos) << not_eval.err;
  const Result bad = muse("eval -m " + *model_ + " --data " + data + " --mode think --mode budget:x");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("budget:x"), std::string::npos);
  EXPECT_EQ(bad.out, "");  // nothing ran
  const Result greedy_vote = muse("eval -m " + *model_ + " --data " + data +
                                  " --mode think --mode contemplate:2 --temp 0");
  EXPECT_NE(greedy_vote.code, 0);
  EXPECT_NE(greedy_vote.err.find("--temp above 0"), std::string::npos) << greedy_vote.err;
  EXPECT_EQ(greedy_vote.out, "");
  EXPECT_NE(muse("eval -m " + *model_ + " --data /nonexistent.jsonl").code, 0);
  EXPECT_NE(muse("eval-data --task chess").code, 0);
  // The small range: Countdown numbers 1..10 only; a bad range or one for logic is refused.
  const Result small = muse("eval-data --task countdown --count 20 --seed 3 --numbers small");
  ASSERT_EQ(small.code, 0) << small.err;
  std::istringstream lines(small.out);
  int items = 0;
  for (std::string line; std::getline(lines, line); ++items) {
    const Json item = Json::parse(line);
    for (const Json& x : item.at("numbers").as_array()) EXPECT_LE(x.as_int(), 10) << line;
  }
  EXPECT_EQ(items, 20);
  const Result huge = muse("eval-data --task countdown --numbers huge");
  EXPECT_NE(huge.code, 0);
  EXPECT_NE(huge.err.find("--numbers must be default or small"), std::string::npos) << huge.err;
  EXPECT_NE(muse("eval-data --task logic --numbers small").code, 0);
}

// The benchmark history: a drop beyond the threshold at the latest Muse commit fails the
// check, a missing field does not, other engines' records never count as Muse's (llama.cpp's,
// measured at both commits, make the change relative), and the plots are drawn.
TEST_F(Cli, BenchReportFlagsRegressionsAtTheLatestCommit) {
  const std::string history = testing::temp_path("history.jsonl"), dir = testing::temp_path("bench-svg");
  mkdir(dir.c_str(), 0755);
  auto write = [&](const std::string& text) { std::ofstream(history) << text; };
  const std::string base =
      R"({"commit":"a1","engine":"muse","model":"m","threads":2,"pp_tps":100,"tg_tps":50,"model_bytes":4e8,"read_bandwidth_gbs":40})"
      "\n"
      R"({"commit":"a1","engine":"llama.cpp","model":"m","threads":2,"pp_tps":80,"tg_tps":40,"model_bytes":4e8})"
      "\n";
  write(base + R"({"commit":"b2","engine":"muse","model":"m","threads":2,"tg_tps":49})" "\n");
  Result r = muse("bench-report --history " + history + " --svg-dir " + dir);
  EXPECT_EQ(r.code, 0) << r.out << r.err;  // tg -2%, pp missing: no regression
  EXPECT_NE(testing::read_file(dir + "/roofline.svg").find("<svg"), std::string::npos);
  write(base + R"({"commit":"b2","engine":"muse","model":"m","threads":2,"pp_tps":100,"tg_tps":30})" "\n"
               R"({"commit":"c3","engine":"llama.cpp","model":"m","threads":2,"pp_tps":80,"tg_tps":40})" "\n");
  r = muse("bench-report --history " + history);
  EXPECT_EQ(r.code, 1);  // tg -40% at b2, the latest Muse commit (c3 is llama.cpp's)
  EXPECT_NE(r.out.find("slower"), std::string::npos) << r.out;
  // With llama.cpp measured at both commits, a slower machine (both 30% down) is no regression;
  // Muse falling behind llama.cpp in the same run is.
  auto muse_30_percent_down = [&](const std::string& llama_pp, const std::string& llama_tg) {
    write(base +
          R"({"commit":"b2","engine":"muse","model":"m","threads":2,"pp_tps":70,"tg_tps":35})"
          "\n"
          R"({"commit":"b2","engine":"llama.cpp","model":"m","threads":2,"pp_tps":)" +
          llama_pp + R"(,"tg_tps":)" + llama_tg + "}\n");
    return muse("bench-report --history " + history);
  };
  r = muse_30_percent_down("56", "28");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("+0.0% vs llama.cpp"), std::string::npos) << r.out;
  r = muse_30_percent_down("80", "40");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("-30.0% vs llama.cpp **slower**"), std::string::npos) << r.out;
  write("");
  EXPECT_NE(muse("bench-report --history " + history).code, 0);
  write("{not json\n");
  EXPECT_NE(muse("bench-report --history " + history).code, 0);
}

TEST_F(Cli, BadInputGetsOneLineErrorAndNonZeroExit) {
  const std::string corrupt = testing::temp_path("corrupt.gguf");
  {
    std::string bytes = testing::read_file(*model_);
    bytes.resize(bytes.size() / 2);
    std::ofstream(corrupt, std::ios::binary) << bytes;
  }
  const std::string not_gguf = testing::temp_path("text.gguf");
  std::ofstream(not_gguf) << "hello, I am not a model\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"info -m /nonexistent/model.gguf", "cannot open"},
      {"info -m " + not_gguf, "not a GGUF file"},
      {"logits -m " + corrupt + " --tokens 1", "truncated"},
      {"logits -m " + *model_ + " --tokens 1,x", "not an integer"},
      {"logits -m " + *model_ + " --tokens 400", "outside the vocabulary"},
      {"run -m " + *model_ + " --tokens 1 --top-p 2", "out of range"},
      {"bench -m " + *model_ + " --bogus 1", "unknown argument"},
      {"synth --arch mamba --dims embd=64 --type q8_0 -o /tmp/x.gguf", "--arch"},
      {"synth --preset gpt5 --type q8_0 -o /tmp/x.gguf", "unknown preset"},
      {"frobnicate", "unknown command"},
      {"bench -m " + *model_ + " --parallel 0 --shared-prefix 8", "--parallel must be"},
      {"bench -m " + *model_ + " --parallel 2 --kv-type q3", "unknown KV cache type"},
      {"tokenize -m " + *model_, "exactly one of -p TEXT or -f FILE"},
      {"tokenize -m " + *model_ + " -f /nonexistent.txt", "cannot read"},
      {"detokenize -m " + *model_ + " --tokens 5,400", "outside the vocabulary"},
      {"run -m " + *model_ + " -p hi --tokens 1", "exactly one of"},
  };
  for (const auto& [args, message] : cases) {
    const Result r = muse(args);
    EXPECT_NE(r.code, 0) << args;
    EXPECT_NE(r.err.find(message), std::string::npos) << args << " printed: " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << args << " printed: " << r.err;
  }
  std::remove(corrupt.c_str());
  std::remove(not_gguf.c_str());
}

TEST_F(Cli, ChatTemplateRendersExactlyAndReportsRaisedErrors) {
  const std::string tpl = testing::temp_path("chat.jinja");
  const std::string ctx = testing::temp_path("chat.json");
  std::ofstream(tpl) << "{{ bos_token }}{% for m in messages %}"
                        "{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
                        "<{{ m.role }}>{{ m.content }}\n{% endfor %}{{ strftime_now('%d %b %Y') }}\n";
  std::ofstream(ctx) << R"({"messages": [{"role": "user", "content": "caf\u00e9"}], "bos_token": "<s>"})";
  Result r = muse("chat-template --template " + tpl + " --context " + ctx + " --now 2026-11-22T12:00:00");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "<s><user>caf\xc3\xa9\n22 Nov 2026");  // the template's trailing newline is dropped, as Jinja does
  std::ofstream(ctx) << R"({"messages": [{"role": "system", "content": "x"}]})";
  r = muse("chat-template --template " + tpl + " --context " + ctx);
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(r.err, "muse chat-template: error: System role not supported\n");
  // The model's own template (the synthetic model ships one), with its BOS/EOS texts.
  std::ofstream(ctx) << R"({"messages": [{"role": "user", "content": "hello"}], "add_generation_prompt": true})";
  r = muse("chat-template -m " + *model_ + " --context " + ctx);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("hello"), std::string::npos) << r.out;
  r = muse("chat-template --template " + tpl);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--context is required"), std::string::npos) << r.err;
  std::remove(tpl.c_str());
  std::remove(ctx.c_str());
}

}  // namespace
}  // namespace muse

namespace muse {
namespace {

// The whole pipeline at toy size: tokenizer, both stages, evaluations, export. The losses must
// fall and the model must load and run; what it learns in seconds is not judged here.
TEST(CliTrain, SmokeRecipeTrainsAndWritesAModelMuseRuns) {
  const std::string dir = testing::temp_path("train-smoke");
  const Result r = muse("train --recipe smoke --time-scale 0.5 -t 2 --run-dir " + dir + " -o " + dir + "/m.gguf");
  if (r.code != 0 && r.err.find("without libtorch") != std::string::npos) GTEST_SKIP() << "built without libtorch";
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("| sft | countdown-3 + arithmetic | think |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| grpo | countdown-4 | markup:4 |"), std::string::npos) << r.out;
  // Stage 1's loss falls; stage 2 logged its steps.
  std::istringstream log(testing::read_file(dir + "/log.csv"));
  std::string line;
  std::vector<double> sft_loss;
  int grpo_steps = 0;
  while (std::getline(log, line)) {
    if (line.rfind("sft,", 0) == 0) sft_loss.push_back(std::stod(line.substr(line.find(',', 4) + 1)));
    if (line.rfind("grpo,", 0) == 0) ++grpo_steps;
  }
  ASSERT_GE(sft_loss.size(), 10u);
  EXPECT_LT(sft_loss.back(), sft_loss.front() - 0.5);
  EXPECT_GE(grpo_steps, 2);
  for (const char* f : {"/loss.svg", "/rl.svg", "/accuracy_vs_tokens.svg", "/countdown4_vs_time.svg", "/results.json", "/sft.gguf", "/grpo.gguf", "/held_out_single.jsonl", "/held_out_countdown4.jsonl"})
    EXPECT_FALSE(testing::read_file(dir + f).empty()) << f;
  const Result info = muse("info -m " + dir + "/m.gguf");
  ASSERT_EQ(info.code, 0) << info.err;
  const Result run = muse("run -m " + dir + "/m.gguf --chat -p \"Compute 2 + 3.\" -n 8 --temp 0");
  EXPECT_EQ(run.code, 0) << run.err;
  // Stage 2 alone into a new directory, from the stage-1 model given with --init: the results
  // compare against that model.
  const std::string dir2 = testing::temp_path("train-smoke-grpo");
  const Result grpo = muse("train --recipe smoke --stage grpo --init " + dir +
                           "/sft.gguf --time-scale 0.2 -t 2 --run-dir " + dir2);
  ASSERT_EQ(grpo.code, 0) << grpo.err;
  EXPECT_NE(grpo.out.find("| sft | countdown-3 + arithmetic | think |"), std::string::npos)
      << grpo.out;
  const Result bad = muse("train --recipe huge");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("unknown recipe"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace muse
