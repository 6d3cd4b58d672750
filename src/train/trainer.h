// The network `muse train` trains, behind an interface free of torch (only trainer.cpp includes
// it, so the rest of the trainer compiles fast and without it). Llama-style: RMSNorm, adjacent-
// pair RoPE, grouped-query causal attention written out, SwiGLU, tied embeddings; exactly what
// Muse's forward pass computes for the exported GGUF.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "train/gguf_export.h"

namespace muse {

// Whether this build has the trainer (libtorch found at configure time).
bool trainer_available();

// One sequence and which positions are trained: the loss on predicting ids[t] counts with
// weight[t] (0: not trained).
struct TokenizedExample {
  std::vector<int32_t> ids;
  std::vector<float> weight;
  int targets() const {
    int n = 0;
    for (float w : weight) n += w > 0;
    return n;
  }
};

struct SftStepStats {
  double loss = 0;  // mean over target tokens, unweighted (comparable across weightings)
  double grad_norm = 0;
  int64_t tokens = 0, target_tokens = 0;
};

// A sampled completion for GRPO: the prompt, the sampled tokens with the sampler's
// log-probabilities (the old policy's), and the advantage of its sample.
struct PolicySample {
  std::vector<int32_t> prompt;
  std::vector<int32_t> completion;
  std::vector<float> old_logprobs;  // one per completion token
  float advantage = 0;
};

struct GrpoStepSettings {
  double lr = 1e-4;
  double clip_epsilon = 0.2;
  // The clipped objective is summed over tokens and divided by this constant (samples x maximum
  // length, as Dr. GRPO does), so no sequence's length scales its own tokens' weight.
  double normalizer = 1;
  // Weight of the per-token KL divergence from the reference weights (set_reference; k3
  // estimator, as in DeepSeekMath's GRPO): it damps the drift that the noise of a few dozen
  // samples per step causes. Needs set_reference when positive.
  double kl_coef = 0;
  int64_t max_batch_tokens = 4096;  // bounds each micro-batch (gradients accumulate)
};

struct GrpoStepStats {
  double loss = 0;  // the minimised objective, the KL term included
  double grad_norm = 0;
  double mean_ratio = 0, clipped_fraction = 0;
  double old_new_logprob_gap = 0;  // mean |new - old| over tokens: how off-policy the rollouts are
  double kl = 0;                   // mean k3 KL from the reference over tokens (0 without one)
  int64_t tokens = 0;
};

struct OptimizerSettings {
  double lr = 2e-3;
  double weight_decay = 0.1;
  double beta1 = 0.9, beta2 = 0.95;
  double clip_grad_norm = 1.0;
};

class Trainer {
 public:
  // Fresh weights from `seed`; `threads` for torch and its BLAS.
  Trainer(const NetShape& shape, uint64_t seed, int threads,
          const OptimizerSettings& optimizer = {});
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  const NetShape& shape() const;
  // One optimizer step on a batch (padded and masked here) minimising the weighted loss summed
  // over target tokens, divided by their count; `max_batch_tokens` bounds each micro-batch
  // (gradients accumulate across them).
  SftStepStats sft_step(const std::vector<TokenizedExample>& batch, double lr,
                        int64_t max_batch_tokens);
  // One step of Dr. GRPO's clipped objective, minus settings.kl_coef times the KL divergence
  // from the reference weights when they are set.
  GrpoStepStats grpo_step(const std::vector<PolicySample>& samples,
                          const GrpoStepSettings& settings);
  // Freezes a copy of the current weights as grpo_step's KL reference.
  void set_reference();
  // Mean loss over target tokens (unweighted), without training.
  double evaluate(const std::vector<TokenizedExample>& batch, int64_t max_batch_tokens);
  // Logits [ids.size() x n_vocab] for one sequence (tests compare them with Muse's).
  std::vector<float> logits(const std::vector<int32_t>& ids);

  // The weights under their GGUF names, and back (e.g. from an exported F32 GGUF).
  std::vector<NamedTensor> tensors() const;
  void load_tensors(const std::vector<NamedTensor>& tensors);
  // The weights and the optimizer state, for resuming.
  void save_checkpoint(const std::string& path) const;
  void load_checkpoint(const std::string& path);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Matrix multiply throughput of torch's BLAS in GFLOP/s (a 512x512 product), to warn when it is
// the slow reference BLAS.
double trainer_blas_gflops(int threads);

}  // namespace muse
