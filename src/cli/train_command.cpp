// `muse train` (the muse-train executable, which `muse train` runs): trains Muse's own reasoning
// model from nothing, by a named recipe (see train/recipe.h): tokenizer, stage 1 (think long),
// stage 2 (compress), evaluations, export.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/cli_common.h"
#include "train/recipe.h"
#include "train/trainer.h"
#include "util/error.h"

namespace muse {

namespace {

int run_train(const std::vector<std::string>& argv) {
  const Args a(argv, {"--recipe", "-o", "--run-dir", "--stage", "--init", "-t", "--time-scale"},
               {});
  if (!trainer_available())
    fail(
        "this muse was built without libtorch, so it cannot train (scripts/setup.sh installs "
        "libtorch-dev; rebuild)");
  const Recipe recipe = recipe_by_name(a.get("--recipe", "nano"));
  TrainOptions o;
  o.run_dir = a.get("--run-dir", "muse-train-" + recipe.name);
  o.output = a.get("-o");
  o.stage = a.get("--stage", "all");
  o.init = a.get("--init");
  o.threads = thread_count(a);
  o.time_scale = a.get_double("--time-scale", 1.0);
  const std::string table = run_recipe(recipe, o);
  std::fputs(table.c_str(), stdout);
  return 0;
}

}  // namespace
}  // namespace muse

int main(int argc, char** argv) {
  // Idle OpenMP threads must sleep, not spin: spinning, they fight OpenBLAS's threads and Muse's
  // for 2 cores, and a training step takes 2.5 times as long. libgomp reads the policy when it
  // is loaded, before main, so the process starts again with it set (a user's setting wins).
  if (!std::getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);
  }
  try {
    return muse::run_train(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const muse::Error& e) {
    std::fprintf(stderr, "muse train: error: %s\n", e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "muse train: error: %s\n", e.what());
  }
  return 1;
}
