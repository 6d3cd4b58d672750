// Writes random-weight models with a real-looking tokenizer, for tests and benchmarks.
// Both Muse and llama.cpp load them.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "model/config.h"
#include "quant/types.h"

namespace muse {

struct SynthShape {
  int n_embd = 256, n_layer = 2, n_head = 8, n_head_kv = 2, head_dim = 32, n_ff = 768;
  int n_vocab = 2048, n_ctx = 4096;
  double rope_base = 10000;
  bool rope_freqs = false;   // Llama 3.1-style rope_freqs.weight
  bool tied_output = true;
};

struct SynthOptions {
  Arch arch = Arch::kLlama;
  SynthShape shape;
  std::string type = "q8_0";  // a tensor type, or a mix: q4_k_m, q5_k_m
  uint64_t seed = 1;
  std::string name = "muse-synth";
};

// Presets with the shapes of real models: smollm2-135m, qwen3-0.6b, llama3.2-1b.
// Throws muse::Error for an unknown name; sets arch too.
void apply_preset(const std::string& preset, SynthOptions& opts);
// "embd=256,layers=2,heads=8,kv_heads=2,head_dim=32,ff=768,vocab=2048,ctx=4096,rope_base=1e4"
void apply_dims(const std::string& dims, SynthShape& shape);

// The chat template of Muse's own models: ChatML with <think> reasoning and <tool_call> calls.
const char* chatml_think_template();

// Writes the model; progress(done, total) is called as tensors are generated.
void synthesize(const SynthOptions& opts, const std::string& path,
                const std::function<void(int, int)>& progress = {});

}  // namespace muse
