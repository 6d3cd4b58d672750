// `muse train` runs the muse-train executable beside this one (built where libtorch is), so
// that libtorch and the threads its BLAS starts when loaded stay out of every other command.
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "util/error.h"

namespace muse {

int cmd_train(const Argv& args) {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  const std::filesystem::path trainer = self.parent_path() / "muse-train";
  if (ec || access(trainer.c_str(), X_OK) != 0)
    fail(
        "this muse was built without libtorch, so it cannot train (scripts/setup.sh installs "
        "libtorch-dev; "
        "rebuild to get muse-train)");
  std::vector<std::string> owned = {trainer.string()};
  owned.insert(owned.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : owned) argv.push_back(a.data());
  argv.push_back(nullptr);
  execv(trainer.c_str(), argv.data());
  fail("cannot run ", trainer.string());
}

}  // namespace muse
