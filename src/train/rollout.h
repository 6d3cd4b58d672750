// GRPO's rollouts come from Muse's own batched engine: the trainer's current weights become an
// in-memory GGUF model, and each prompt's group of samples runs in one batch (the prefix cache
// shares the prompt), with the sampler's log-probability of every sampled token.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "train/gguf_export.h"

namespace muse {

class ChatTemplate;
class Model;
class Scheduler;
class Tokenizer;

// A model built from weights in memory (no file); owns the bytes the model maps.
class InMemoryModel {
 public:
  InMemoryModel(const NetShape& shape, const std::vector<NamedTensor>& tensors,
                const BpeVocab& vocab, const ExportOptions& options);
  ~InMemoryModel();
  const Model& model() const { return *model_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const ChatTemplate& chat_template() const { return *template_; }

 private:
  std::string bytes_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ChatTemplate> template_;
};

struct RolloutSettings {
  int group_size = 8;
  int max_tokens = 768;
  float temperature = 1.0f;  // plain sampling from the policy: no top-k/top-p/min-p filters
  uint64_t seed = 1;
};

struct Rollout {
  std::vector<int32_t> completion;  // sampled tokens, the end-of-turn token included
  std::vector<float> logprobs;      // the sampler's, one per token
  std::string text;                 // decoded (tags rendered), without the end-of-turn token
  int reasoning_tokens = 0;         // before the end-of-thinking token (all of them without one)
  bool truncated = false;           // stopped by max_tokens, not by the model
};

// `group_size` samples for each prompt (sample j of prompt i seeded with seed + i * group + j),
// all submitted at once; steps the scheduler until every one has finished.
std::vector<std::vector<Rollout>> sample_groups(Scheduler& scheduler, const Tokenizer& tokenizer,
                                                const std::vector<std::vector<int32_t>>& prompts,
                                                const RolloutSettings& settings);

}  // namespace muse
