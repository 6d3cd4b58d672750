#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "util/error.h"

namespace {

constexpr const char* kUsage =
    "muse: a local reasoning engine for GGUF models\n"
    "\n"
    "usage: muse COMMAND [options]\n"
    "  info   -m FILE [--tensors]                 describe a model file\n"
    "  logits -m FILE (--tokens 1,2,3 | -p TEXT | -f FILE) [--top K] [--dump OUT.f32]\n"
    "                                             teacher-forced logits as JSON\n"
    "  run    [-m FILE] (-p TEXT | -f FILE | --tokens 1,2,3) [generation options] [--json]\n"
    "                                             generate text (default model if no -m)\n"
    "         --chat [-s SYSTEM] [--think on|off] one chat turn through the model's template\n"
    "  chat   [-m FILE] [-s SYSTEM] [--think on|off] [--think-budget N] [generation options]\n"
    "                                             talk to the model in the terminal\n"
    "  contemplate [-m FILE] (-p TEXT | -f FILE) [--agents N] [--budget T] [--stop-below C]\n"
    "         [--json FILE] [generation options]  N traces in parallel, live lanes, voted answer\n"
    "  eval   [-m FILE] --data FILE.jsonl [--mode M]... [--limit N] [--concurrency C] [--json OUT]\n"
    "         [--plot OUT.svg] [generation options]  accuracy, tokens and time per reasoning mode\n"
    "         (modes: no-think, think, budget:N, deer[:THRESHOLD], contemplate:N, markup:W)\n"
    "  eval-plot --results FILE.json [--results FILE.json]... [-o OUT.svg] [--title T]\n"
    "                                             several eval runs in one table and plot\n"
    "  eval-data --task arithmetic|countdown|logic [--count N] [--seed S] [--size K] [-o FILE.jsonl]\n"
    "                                             a synthetic question set with checked answers\n"
    "         [--numbers default|small]           (--size: arithmetic steps, Countdown numbers;\n"
    "                                             small: values below 1000, Countdown 1..10 only)\n"
    "  train  [--recipe nano|smoke] [-o FILE] [--run-dir DIR] [--stage all|sft|grpo|eval] [--init FILE]\n"
    "         [--time-scale X]                    train Muse's own reasoning model (needs libtorch)\n"
    "  serve  [-m FILE] [--host 127.0.0.1] [--port 8080] [--api-key-file FILE] [-c CONTEXT]\n"
    "                                             OpenAI-compatible API (/v1) and web app (/)\n"
    "  chat-template (--template FILE.jinja | -m FILE) --context CONTEXT.json [--now ISO-TIME]\n"
    "                                             render a chat template (Jinja) as-is\n"
    "  tokenize   -m FILE [--no-bos] [--no-special] (-p TEXT | -f FILE)\n"
    "                                             token ids as a JSON array\n"
    "  detokenize -m FILE --tokens 1,2,3 [--no-special]\n"
    "                                             the text of token ids\n"
    "  bench  -m FILE [-p 256] [-n 64] [-t THREADS] [-r REPS] [--json]\n"
    "                                             prompt and decode speed\n"
    "  bench  -m FILE --parallel N --shared-prefix P [-n G] [--kv-type f16|f32|q8_0] [--json]\n"
    "                                             N sequences sharing a P-token prompt, batched\n"
    "  bench-report --history FILE.jsonl [--svg-dir DIR] [--threshold PCT]\n"
    "                                             speed per commit, regressions, roofline plot\n"
    "  synth  --arch llama|qwen2|qwen3 (--preset NAME | --dims K=V,...) --type TYPE -o FILE\n"
    "         [--seed S]                          write a random-weight test model\n"
    "\n"
    "common options: -t THREADS (default: all cores), -c CONTEXT\n"
    "environment: MUSE_SIMD=scalar|avx2 caps the kernels (default: best for this CPU)\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help") ||
      !std::strcmp(argv[1], "help")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    std::fputs(muse::kGenerationUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  const muse::Argv args(argv + 2, argv + argc);
  try {
    if (cmd == "info") return muse::cmd_info(args);
    if (cmd == "logits") return muse::cmd_logits(args);
    if (cmd == "run") return muse::cmd_run(args);
    if (cmd == "bench") return muse::cmd_bench(args);
    if (cmd == "bench-report") return muse::cmd_bench_report(args);
    if (cmd == "synth") return muse::cmd_synth(args);
    if (cmd == "tokenize") return muse::cmd_tokenize(args);
    if (cmd == "detokenize") return muse::cmd_detokenize(args);
    if (cmd == "chat") return muse::cmd_chat(args);
    if (cmd == "contemplate") return muse::cmd_contemplate(args);
    if (cmd == "eval") return muse::cmd_eval(args);
    if (cmd == "eval-data") return muse::cmd_eval_data(args);
    if (cmd == "eval-plot") return muse::cmd_eval_plot(args);
    if (cmd == "serve") return muse::cmd_serve(args);
    if (cmd == "train") return muse::cmd_train(args);
    if (cmd == "chat-template") return muse::cmd_chat_template(args);
    std::fprintf(stderr, "muse: unknown command \"%s\" (try muse --help)\n", cmd.c_str());
    return 2;
  } catch (const muse::Error& e) {
    std::fprintf(stderr, "muse %s: error: %s\n", cmd.c_str(), e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "muse %s: error: out of memory\n", cmd.c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "muse %s: error: %s\n", cmd.c_str(), e.what());
    return 1;
  }
}
