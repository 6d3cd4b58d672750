// Writes a trained network as a GGUF file that Muse and llama.cpp both load: Llama
// architecture, tied output, byte-level BPE tokenizer with the qwen2 pre-tokenizer, ChatML
// template with thinking, and Muse's spawn/join tags. No torch here: the trainer hands over
// plain float tensors under their GGUF names.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "quant/types.h"
#include "tokenizer/bpe_trainer.h"

namespace muse {

class Tokenizer;

struct NetShape {
  int n_vocab = 768, n_embd = 256, n_layer = 6, n_head = 8, n_head_kv = 4, head_dim = 32,
      n_ff = 640;
  int n_ctx = 1024;
  float rope_base = 10000.0f;
  float norm_eps = 1e-5f;
  int64_t parameters() const;
};

// A tensor under its GGUF name ("blk.0.attn_q.weight"), dims ne[0] (contiguous) first: a torch
// Linear weight [out, in] is {in, out}.
struct NamedTensor {
  std::string name;
  std::vector<int64_t> dims;
  std::vector<float> data;
};

// Every tensor a NetShape has, in GGUF order, with its dims (data empty).
std::vector<NamedTensor> net_tensor_layout(const NetShape& shape);

struct ExportOptions {
  std::string name = "muse-nano";
  GgmlType matrix_type = GgmlType::F16;  // matrices; norms stay F32
  std::string description;               // general.description, e.g. the recipe
};

// The special tokens Muse's own models have: turn markers (control) and the tags the model
// writes (user-defined, so both tokenizers match them in plain text and render them).
std::vector<SpecialToken> muse_special_tokens();

// The vocabulary's tokenizer metadata (model gpt2, pre-tokenizer qwen2, BOS/EOS/padding), and a
// tokenizer for it without a model (to tokenize training text before any network exists).
void write_vocab(GgufWriter& writer, const BpeVocab& vocab);
std::unique_ptr<Tokenizer> vocab_tokenizer(const BpeVocab& vocab);

// Checks every tensor's name, dims and size against the shape; throws muse::Error.
GgufWriter net_to_gguf(const NetShape& shape, const std::vector<NamedTensor>& tensors,
                       const BpeVocab& vocab, const ExportOptions& options);

// Back from a file this module wrote (to continue training from an exported model): the shape,
// the vocabulary, and every tensor as floats. Throw muse::Error when the file does not fit.
NetShape net_shape_from_gguf(const GgufFile& file);
BpeVocab vocab_from_gguf(const GgufFile& file);
std::vector<NamedTensor> net_tensors_from_gguf(const GgufFile& file);

}  // namespace muse
