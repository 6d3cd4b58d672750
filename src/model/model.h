// A transformer's weights, mapped from a GGUF file and checked against its config.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "model/config.h"
#include "ops/matmul.h"
#include "util/large_buffer.h"

namespace muse {

struct LayerWeights {
  Matrix wq, wk, wv, wo, w_gate, w_up, w_down;
  std::vector<float> attn_norm, ffn_norm;
  std::vector<float> q_norm, k_norm;  // qwen3: per-head RMSNorm of q and k
  std::vector<float> bq, bk, bv;      // qwen2: attention biases
};

class Model {
 public:
  // Maps the file and validates every tensor the architecture needs (names, shapes, types).
  static std::unique_ptr<Model> load(const std::string& path);
  static std::unique_ptr<Model> from_file(std::unique_ptr<GgufFile> file);

  const ModelConfig& config() const { return config_; }
  const GgufFile& file() const { return *file_; }
  const Matrix& token_embedding() const { return tok_embd_; }
  const Matrix& output() const { return output_; }
  bool tied_output() const { return tied_output_; }
  const std::vector<float>& output_norm() const { return output_norm_; }
  const std::vector<float>& rope_freq_factors() const { return rope_freqs_; }
  const std::vector<LayerWeights>& layers() const { return layers_; }
  size_t weight_bytes() const;  // bytes of all tensors: what one decode step streams

 private:
  Model() = default;
  // Repacks the matrices this CPU's kernels have a packed layout for (ops/packed_weights.h)
  // and copies the others onto huge pages.
  void pack_weights();
  std::unique_ptr<GgufFile> file_;
  ModelConfig config_;
  Matrix tok_embd_, output_;
  bool tied_output_ = false;
  std::vector<float> output_norm_, rope_freqs_;
  std::vector<LayerWeights> layers_;
  // The packed copies that Matrix::packed points into, and the other matrices' copies on huge
  // pages that their Matrix::data points into.
  std::vector<LargeBuffer> weight_copies_;
};

}  // namespace muse
