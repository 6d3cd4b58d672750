// The `muse` subcommands. Each takes its arguments (after the subcommand name) and returns
// the process exit code; errors are thrown as muse::Error and printed by main.
#pragma once
#include <string>
#include <vector>

namespace muse {

using Argv = std::vector<std::string>;
int cmd_info(const Argv& args);
int cmd_logits(const Argv& args);
int cmd_run(const Argv& args);
int cmd_bench(const Argv& args);
int cmd_bench_report(const Argv& args);
int cmd_synth(const Argv& args);
int cmd_tokenize(const Argv& args);
int cmd_detokenize(const Argv& args);
int cmd_chat(const Argv& args);
int cmd_contemplate(const Argv& args);
int cmd_eval(const Argv& args);
int cmd_eval_plot(const Argv& args);
int cmd_eval_data(const Argv& args);
int cmd_serve(const Argv& args);
int cmd_train(const Argv& args);
int cmd_chat_template(const Argv& args);

}  // namespace muse
