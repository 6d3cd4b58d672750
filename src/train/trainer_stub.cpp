// The trainer in a build without libtorch: everything says so.
#include "train/trainer.h"
#include "util/error.h"

namespace muse {

namespace {
[[noreturn]] void unavailable() {
  fail(
      "this muse was built without libtorch, so it cannot train (install libtorch-dev and "
      "rebuild)");
}
}  // namespace

bool trainer_available() { return false; }

struct Trainer::Impl {};
Trainer::Trainer(const NetShape&, uint64_t, int, const OptimizerSettings&) { unavailable(); }
Trainer::~Trainer() = default;
const NetShape& Trainer::shape() const { unavailable(); }
SftStepStats Trainer::sft_step(const std::vector<TokenizedExample>&, double, int64_t) {
  unavailable();
}
GrpoStepStats Trainer::grpo_step(const std::vector<PolicySample>&, const GrpoStepSettings&) {
  unavailable();
}
void Trainer::set_reference() { unavailable(); }
double Trainer::evaluate(const std::vector<TokenizedExample>&, int64_t) { unavailable(); }
std::vector<float> Trainer::logits(const std::vector<int32_t>&) { unavailable(); }
std::vector<NamedTensor> Trainer::tensors() const { unavailable(); }
void Trainer::load_tensors(const std::vector<NamedTensor>&) { unavailable(); }
void Trainer::save_checkpoint(const std::string&) const { unavailable(); }
void Trainer::load_checkpoint(const std::string&) { unavailable(); }
double trainer_blas_gflops(int) { unavailable(); }

}  // namespace muse
