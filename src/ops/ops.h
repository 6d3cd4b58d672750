// Element-wise and normalisation operations of the transformer forward pass.
#pragma once
#include <cstdint>
#include <vector>

namespace muse {

// y = x / rms(x) * weight, over n values.
void rms_norm(const float* x, const float* weight, float* y, int n, float eps);

enum class RopeStyle {
  kAdjacent,  // rotate (x[2i], x[2i+1]): llama in GGUF (its q/k weights were permuted for it)
  kHalves,    // rotate (x[i], x[i + n_rot/2]): GPT-NeoX style, qwen2/qwen3
};

// Rotary position embedding tables for one model.
class Rope {
 public:
  // freq_factors (may be empty) divide each pair's frequency, as Llama 3.1's rope_freqs does.
  Rope(int n_rot, double base, double freq_scale, RopeStyle style,
       std::vector<float> freq_factors);
  int pairs() const { return n_rot_ / 2; }
  // cos and sin of each pair's angle at position pos (pairs() values each).
  void angles(int64_t pos, float* cs, float* sn) const;
  // Rotates n_heads vectors of head_dim (the first n_rot values of each) by those angles.
  void rotate(float* x, int n_heads, int head_dim, const float* cs, const float* sn) const;

 private:
  int n_rot_;
  RopeStyle style_;
  std::vector<double> inv_freq_;
};

// In place: x = silu(gate) * x.
void swiglu(const float* gate, float* x, int n);
// In place softmax over n values.
void softmax(float* x, int n);

}  // namespace muse
