#include "ops/ops.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace muse {

void rms_norm(const float* x, const float* weight, float* y, int n, float eps) {
  // In double, as llama.cpp sums it; four partial sums so the adds do not wait on each other.
  double part[4] = {};
  int i = 0;
  for (; i + 4 <= n; i += 4)
    for (int j = 0; j < 4; ++j) part[j] += double(x[i + j]) * x[i + j];
  for (; i < n; ++i) part[0] += double(x[i]) * x[i];
  const double ss = (part[0] + part[1]) + (part[2] + part[3]);
  const float scale = float(1.0 / std::sqrt(ss / n + eps));
  for (int k = 0; k < n; ++k) y[k] = x[k] * scale * weight[k];
}

Rope::Rope(int n_rot, double base, double freq_scale, RopeStyle style,
           std::vector<float> freq_factors)
    : n_rot_(n_rot), style_(style), inv_freq_(n_rot / 2) {
  if (!freq_factors.empty() && int(freq_factors.size()) < n_rot / 2)
    fail("rope_freqs has ", freq_factors.size(), " factors, need ", n_rot / 2);
  for (int i = 0; i < n_rot / 2; ++i) {
    double f = std::pow(base, -2.0 * i / n_rot) * freq_scale;
    if (!freq_factors.empty()) f /= freq_factors[i];
    inv_freq_[i] = f;
  }
}

void Rope::angles(int64_t pos, float* cs, float* sn) const {
  for (int i = 0; i < n_rot_ / 2; ++i) {
    const double theta = double(pos) * inv_freq_[i];
    cs[i] = float(std::cos(theta));
    sn[i] = float(std::sin(theta));
  }
}

void Rope::rotate(float* x, int n_heads, int head_dim, const float* cs, const float* sn) const {
  const int half = n_rot_ / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + int64_t(h) * head_dim;
    for (int i = 0; i < half; ++i) {
      const int a = style_ == RopeStyle::kAdjacent ? 2 * i : i;
      const int b = style_ == RopeStyle::kAdjacent ? 2 * i + 1 : i + half;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * cs[i] - x1 * sn[i];
      v[b] = x0 * sn[i] + x1 * cs[i];
    }
  }
}

void swiglu(const float* gate, float* x, int n) {
  for (int i = 0; i < n; ++i) x[i] *= gate[i] / (1.0f + std::exp(-gate[i]));
}

void softmax(float* x, int n) {
  const float mx = *std::max_element(x, x + n);
  float sum = 0;
  for (int i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (int i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace muse
