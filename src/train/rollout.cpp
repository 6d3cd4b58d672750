#include "train/rollout.h"

#include "chat/chat_template.h"
#include "io/gguf.h"
#include "model/model.h"
#include "runtime/scheduler.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace muse {

InMemoryModel::InMemoryModel(const NetShape& shape, const std::vector<NamedTensor>& tensors,
                             const BpeVocab& vocab, const ExportOptions& options)
    : bytes_(net_to_gguf(shape, tensors, vocab, options).to_bytes()) {
  model_ = Model::from_file(GgufFile::from_memory(reinterpret_cast<const uint8_t*>(bytes_.data()),
                                                  bytes_.size(), options.name));
  tokenizer_ = Tokenizer::from_gguf(model_->file());
  template_ = ChatTemplate::from_gguf(model_->file());
}

InMemoryModel::~InMemoryModel() = default;

std::vector<std::vector<Rollout>> sample_groups(Scheduler& scheduler, const Tokenizer& tokenizer,
                                                const std::vector<std::vector<int32_t>>& prompts,
                                                const RolloutSettings& settings) {
  if (settings.group_size < 1) fail("rollouts: the group size must be at least 1");
  const int32_t end_of_thinking = tokenizer.find("</think>");
  std::vector<std::vector<Rollout>> groups(prompts.size(),
                                           std::vector<Rollout>(size_t(settings.group_size)));
  std::vector<RequestId> ids;
  for (size_t i = 0; i < prompts.size(); ++i) {
    for (int j = 0; j < settings.group_size; ++j) {
      Request r;
      r.prompt = prompts[i];
      r.max_tokens = settings.max_tokens;
      r.sampling.temperature = settings.temperature;
      r.sampling.top_k = 0;
      r.sampling.top_p = 1;
      r.sampling.min_p = 0;
      r.sampling.seed = settings.seed + uint64_t(i) * uint64_t(settings.group_size) + uint64_t(j);
      r.logprobs = 0;
      Rollout* out = &groups[i][size_t(j)];
      ids.push_back(scheduler.submit(std::move(r), [out](const TokenEvent& e) {
        if (e.token >= 0) {
          out->completion.push_back(e.token);
          out->logprobs.push_back(e.logprob);
        }
        if (e.done) out->truncated = e.finish != FinishReason::kEndOfGeneration;
      }));
    }
  }
  scheduler.run_until_idle();
  for (RequestId id : ids) scheduler.forget(id);
  for (auto& group : groups) {
    for (Rollout& r : group) {
      // The text without the end-of-turn token, so the answer on its last line is clean.
      std::vector<int32_t> text_tokens;
      for (int32_t t : r.completion)
        if (!tokenizer.is_eog(t)) text_tokens.push_back(t);
      r.text = tokenizer.decode(text_tokens);
      r.reasoning_tokens = int(r.completion.size());
      for (size_t t = 0; t < r.completion.size(); ++t)
        if (r.completion[t] == end_of_thinking) {
          r.reasoning_tokens = int(t);
          break;
        }
    }
  }
  return groups;
}

}  // namespace muse
