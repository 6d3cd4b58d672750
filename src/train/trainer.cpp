#include "train/trainer.h"

#include <dlfcn.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <mutex>

#include "util/error.h"

namespace muse {

namespace F = torch::nn::functional;

bool trainer_available() { return true; }

namespace {

// Once per process: torch's intra-op threads and OpenBLAS's own pool (present only when
// OpenBLAS is the BLAS alternative; found at run time).
void set_threads(int threads) {
  static std::once_flag once;
  std::call_once(once, [threads] {
    at::set_num_interop_threads(1);
    at::set_num_threads(threads);
    using SetThreads = void (*)(int);
    if (auto f = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads")))
      f(threads);
  });
}

struct Layer {
  torch::Tensor attn_norm, wq, wk, wv, wo, ffn_norm, w_gate, w_up, w_down;
};

constexpr int64_t kQueryBlock = 128;  // queries per attention block

struct Net : torch::nn::Module {
  NetShape s;
  torch::Tensor tok_embd, output_norm;
  std::vector<Layer> layers;
  torch::Tensor rope_cos, rope_sin;  // [n_ctx, head_dim / 2]

  Net(const NetShape& shape, uint64_t seed) : s(shape) {
    // A generator of its own: making a net (a reference copy too) leaves torch's global one be.
    at::Generator generator = at::detail::createCPUGenerator(seed);
    const double std = 0.02, residual_std = 0.02 / std::sqrt(2.0 * s.n_layer);
    auto matrix = [&](const std::string& name, int64_t out, int64_t in, double sd) {
      return register_parameter(name, torch::randn({out, in}, generator) * sd);
    };
    auto norm = [&](const std::string& name) {
      return register_parameter(name, torch::ones({s.n_embd}));
    };
    const int64_t q = int64_t(s.n_head) * s.head_dim, kv = int64_t(s.n_head_kv) * s.head_dim;
    tok_embd = matrix("token_embd", s.n_vocab, s.n_embd, std);
    output_norm = norm("output_norm");
    for (int l = 0; l < s.n_layer; ++l) {
      const std::string p = "blk" + std::to_string(l) + "_";
      Layer L;
      L.attn_norm = norm(p + "attn_norm");
      L.wq = matrix(p + "attn_q", q, s.n_embd, std);
      L.wk = matrix(p + "attn_k", kv, s.n_embd, std);
      L.wv = matrix(p + "attn_v", kv, s.n_embd, std);
      L.wo = matrix(p + "attn_output", s.n_embd, q, residual_std);
      L.ffn_norm = norm(p + "ffn_norm");
      L.w_gate = matrix(p + "ffn_gate", s.n_ff, s.n_embd, std);
      L.w_up = matrix(p + "ffn_up", s.n_ff, s.n_embd, std);
      L.w_down = matrix(p + "ffn_down", s.n_embd, s.n_ff, residual_std);
      layers.push_back(L);
    }
    // θ_i = pos · base^(-2i / head_dim), in double as Muse computes its angles.
    const int pairs = s.head_dim / 2;
    auto inv = torch::arange(0, pairs, torch::kFloat64).mul(-2.0 / s.head_dim);
    inv = torch::pow(torch::full({pairs}, double(s.rope_base), torch::kFloat64), inv);
    auto angles = torch::arange(0, s.n_ctx, torch::kFloat64).unsqueeze(1) * inv.unsqueeze(0);
    rope_cos = angles.cos().to(torch::kFloat32);
    rope_sin = angles.sin().to(torch::kFloat32);
  }

  torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& w) const {
    return x * torch::rsqrt(x.pow(2).mean(-1, true) + s.norm_eps) * w;
  }

  // x: [B, T, heads, head_dim]; rotates the pairs (2i, 2i+1).
  torch::Tensor rope(const torch::Tensor& x) const {
    const int64_t B = x.size(0), T = x.size(1), H = x.size(2);
    auto pairs = x.reshape({B, T, H, s.head_dim / 2, 2});
    auto x0 = pairs.select(-1, 0), x1 = pairs.select(-1, 1);
    auto c = rope_cos.slice(0, 0, T).view({1, T, 1, s.head_dim / 2});
    auto sn = rope_sin.slice(0, 0, T).view({1, T, 1, s.head_dim / 2});
    return torch::stack({x0 * c - x1 * sn, x0 * sn + x1 * c}, -1).reshape({B, T, H, s.head_dim});
  }

  // ids: [B, T] int64 -> logits [B, T, n_vocab]. Causal; right padding needs no other mask.
  torch::Tensor forward(const torch::Tensor& ids) {
    const int64_t B = ids.size(0), T = ids.size(1);
    if (T > s.n_ctx)
      fail("train: a sequence of ", T, " tokens is longer than the context (", s.n_ctx, ")");
    auto x = F::embedding(ids, tok_embd);
    const auto causal = torch::full({T, T}, -INFINITY).triu(1);
    const double scale = 1.0 / std::sqrt(double(s.head_dim));
    const int64_t group = s.n_head / s.n_head_kv;
    for (const Layer& L : layers) {
      auto h = rms_norm(x, L.attn_norm);
      auto q = rope(F::linear(h, L.wq).view({B, T, s.n_head, s.head_dim})).transpose(1, 2);
      auto k = rope(F::linear(h, L.wk).view({B, T, s.n_head_kv, s.head_dim})).transpose(1, 2);
      auto v = F::linear(h, L.wv).view({B, T, s.n_head_kv, s.head_dim}).transpose(1, 2);
      if (group > 1) {  // head h reads kv head h / group, as llama.cpp and Muse do
        k = k.repeat_interleave(group, 1);
        v = v.repeat_interleave(group, 1);
      }
      // At these widths attention over long sequences costs more than the weights, so: queries
      // in blocks that each read only the keys up to their end (the causal triangle, not the
      // square), and scores as one fused product plus mask (baddbmm), with no extra passes.
      const int64_t BH = B * s.n_head;
      const auto qs = (q * scale).reshape({BH, T, s.head_dim});
      const auto kt = k.reshape({BH, T, s.head_dim}).transpose(1, 2);
      const auto vs = v.reshape({BH, T, s.head_dim});
      std::vector<torch::Tensor> blocks;
      for (int64_t b0 = 0; b0 < T; b0 += kQueryBlock) {
        const int64_t b1 = std::min(T, b0 + kQueryBlock);
        auto scores = torch::baddbmm(causal.slice(0, b0, b1).slice(1, 0, b1), qs.slice(1, b0, b1),
                                     kt.slice(2, 0, b1));
        blocks.push_back(torch::bmm(torch::softmax(scores, -1), vs.slice(1, 0, b1)));
      }
      auto o = (blocks.size() == 1 ? blocks[0] : torch::cat(blocks, 1))
                   .view({B, s.n_head, T, s.head_dim})
                   .transpose(1, 2)
                   .reshape({B, T, int64_t(s.n_head) * s.head_dim});
      x = x + F::linear(o, L.wo);
      h = rms_norm(x, L.ffn_norm);
      x = x + F::linear(F::silu(F::linear(h, L.w_gate)) * F::linear(h, L.w_up), L.w_down);
    }
    return F::linear(rms_norm(x, output_norm), tok_embd);
  }

  // GGUF name -> parameter, in net_tensor_layout's order.
  std::vector<std::pair<std::string, torch::Tensor>> gguf_parameters() {
    std::vector<std::pair<std::string, torch::Tensor>> out = {{"token_embd.weight", tok_embd},
                                                              {"output_norm.weight", output_norm}};
    for (size_t l = 0; l < layers.size(); ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      const Layer& L = layers[l];
      for (auto [name, t] : {std::pair{"attn_norm", L.attn_norm},
                             {"attn_q", L.wq},
                             {"attn_k", L.wk},
                             {"attn_v", L.wv},
                             {"attn_output", L.wo},
                             {"ffn_norm", L.ffn_norm},
                             {"ffn_gate", L.w_gate},
                             {"ffn_up", L.w_up},
                             {"ffn_down", L.w_down}})
        out.emplace_back(p + name + ".weight", t);
    }
    return out;
  }
};

// A padded batch: ids [B, T] and, per position t, the token predicted there (ids[t + 1]) or -100.
struct Batch {
  torch::Tensor ids, targets, weights;  // weights: 0 where targets is -100
  int64_t tokens = 0, target_tokens = 0;
};

Batch make_batch(const std::vector<const TokenizedExample*>& examples) {
  size_t T = 0;
  for (const TokenizedExample* e : examples) T = std::max(T, e->ids.size());
  const int64_t B = int64_t(examples.size());
  Batch b;
  b.ids = torch::zeros({B, int64_t(T)}, torch::kInt64);
  b.targets = torch::full({B, int64_t(T)}, -100, torch::kInt64);
  b.weights = torch::zeros({B, int64_t(T)});
  auto ids = b.ids.accessor<int64_t, 2>();
  auto tg = b.targets.accessor<int64_t, 2>();
  auto w = b.weights.accessor<float, 2>();
  for (int64_t i = 0; i < B; ++i) {
    const TokenizedExample& e = *examples[size_t(i)];
    if (e.weight.size() != e.ids.size())
      fail("train: an example's weights and ids differ in length");
    for (size_t t = 0; t < e.ids.size(); ++t) {
      ids[i][int64_t(t)] = e.ids[t];
      if (t > 0 && e.weight[t] > 0) {
        tg[i][int64_t(t) - 1] = e.ids[t];
        w[i][int64_t(t) - 1] = e.weight[t];
        ++b.target_tokens;
      }
    }
    b.tokens += int64_t(e.ids.size());
  }
  return b;
}

// Splits examples (in order) into micro-batches of at most `max_tokens` padded tokens.
template <class T, class Length>
std::vector<std::vector<const T*>> micro_batches(const std::vector<T>& items, int64_t max_tokens,
                                                 Length length) {
  std::vector<const T*> sorted;
  for (const T& x : items) sorted.push_back(&x);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [&](const T* a, const T* b) { return length(*a) > length(*b); });
  std::vector<std::vector<const T*>> out;
  int64_t longest = 0;
  for (const T* x : sorted) {
    const int64_t n = length(*x);
    if (out.empty() || (int64_t(out.back().size()) + 1) * std::max(longest, n) > max_tokens) {
      out.emplace_back();
      longest = 0;
    }
    out.back().push_back(x);
    longest = std::max(longest, n);
  }
  return out;
}

}  // namespace

struct Trainer::Impl {
  std::shared_ptr<Net> net;
  std::shared_ptr<Net> reference;  // frozen, for grpo_step's KL term; null until set_reference
  std::unique_ptr<torch::optim::AdamW> optimizer;
  OptimizerSettings settings;

  void set_lr(double lr) {
    for (auto& g : optimizer->param_groups())
      static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
  }
  double clip_and_step(double lr) {
    set_lr(lr);
    const double norm =
        torch::nn::utils::clip_grad_norm_(net->parameters(), settings.clip_grad_norm);
    optimizer->step();
    return norm;
  }
};

Trainer::Trainer(const NetShape& shape, uint64_t seed, int threads, const OptimizerSettings& o)
    : impl_(std::make_unique<Impl>()) {
  if (shape.n_head % shape.n_head_kv || shape.head_dim % 2) fail("train: inconsistent head shape");
  set_threads(threads);
  impl_->settings = o;
  impl_->net = std::make_shared<Net>(shape, seed);
  // Matrices decay; norms and the embedding (also the output) do not.
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& [name, t] : impl_->net->gguf_parameters())
    (t.dim() == 2 && name != "token_embd.weight" ? decay : no_decay).push_back(t);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(
      decay,
      std::make_unique<torch::optim::AdamWOptions>(
          torch::optim::AdamWOptions(o.lr).betas({o.beta1, o.beta2}).weight_decay(o.weight_decay)));
  groups.emplace_back(
      no_decay, std::make_unique<torch::optim::AdamWOptions>(
                    torch::optim::AdamWOptions(o.lr).betas({o.beta1, o.beta2}).weight_decay(0)));
  impl_->optimizer = std::make_unique<torch::optim::AdamW>(std::move(groups));
}

Trainer::~Trainer() = default;

const NetShape& Trainer::shape() const { return impl_->net->s; }

SftStepStats Trainer::sft_step(const std::vector<TokenizedExample>& batch, double lr,
                               int64_t max_batch_tokens) {
  Net& net = *impl_->net;
  net.train();
  impl_->optimizer->zero_grad();
  SftStepStats st;
  for (const TokenizedExample& e : batch) st.target_tokens += e.targets();
  if (st.target_tokens == 0) fail("train: a batch with nothing to learn");
  double loss_sum = 0;
  for (const auto& mb : micro_batches(batch, max_batch_tokens, [](const TokenizedExample& e) {
         return int64_t(e.ids.size());
       })) {
    const Batch b = make_batch(mb);
    auto logits = net.forward(b.ids);
    auto losses =
        F::cross_entropy(logits.view({-1, net.s.n_vocab}), b.targets.view({-1}),
                         F::CrossEntropyFuncOptions().ignore_index(-100).reduction(torch::kNone));
    ((losses * b.weights.view({-1})).sum() / double(st.target_tokens)).backward();
    loss_sum += losses.sum().item<double>();
    st.tokens += b.tokens;
  }
  st.loss = loss_sum / double(st.target_tokens);
  st.grad_norm = impl_->clip_and_step(lr);
  return st;
}

double Trainer::evaluate(const std::vector<TokenizedExample>& batch, int64_t max_batch_tokens) {
  torch::NoGradGuard no_grad;
  Net& net = *impl_->net;
  net.eval();
  double loss_sum = 0;
  int64_t n = 0;
  for (const auto& mb : micro_batches(batch, max_batch_tokens, [](const TokenizedExample& e) {
         return int64_t(e.ids.size());
       })) {
    const Batch b = make_batch(mb);
    auto logits = net.forward(b.ids);
    loss_sum +=
        F::cross_entropy(logits.view({-1, net.s.n_vocab}), b.targets.view({-1}),
                         F::CrossEntropyFuncOptions().ignore_index(-100).reduction(torch::kSum))
            .item<double>();
    n += b.target_tokens;
  }
  return n ? loss_sum / double(n) : 0;
}

void Trainer::set_reference() {
  torch::NoGradGuard no_grad;
  impl_->reference = std::make_shared<Net>(impl_->net->s, 0);  // initial weights overwritten
  const auto from = impl_->net->gguf_parameters();
  const auto to = impl_->reference->gguf_parameters();
  for (size_t i = 0; i < from.size(); ++i) to[i].second.copy_(from[i].second);
  for (auto& p : impl_->reference->parameters()) p.requires_grad_(false);
  impl_->reference->eval();
}

GrpoStepStats Trainer::grpo_step(const std::vector<PolicySample>& samples,
                                 const GrpoStepSettings& settings) {
  Net& net = *impl_->net;
  net.train();
  impl_->optimizer->zero_grad();
  const double clip_epsilon = settings.clip_epsilon, normalizer = settings.normalizer;
  const bool with_kl = settings.kl_coef > 0;
  if (with_kl && !impl_->reference) fail("train: a KL coefficient without reference weights");
  GrpoStepStats st;
  double loss_sum = 0, ratio_sum = 0, clipped = 0, gap = 0, kl_sum = 0;
  auto length = [](const PolicySample& s) {
    return int64_t(s.prompt.size() + s.completion.size());
  };
  for (const auto& mb : micro_batches(samples, settings.max_batch_tokens, length)) {
    int64_t T = 0;
    for (const PolicySample* s : mb) T = std::max(T, length(*s));
    const int64_t B = int64_t(mb.size());
    auto ids = torch::zeros({B, T}, torch::kInt64);
    auto next = torch::zeros({B, T}, torch::kInt64);  // the token sampled after position t
    auto mask = torch::zeros({B, T});  // 1 where position t predicted a sampled token
    auto old_lp = torch::zeros({B, T});
    auto adv = torch::zeros({B, 1});
    auto I = ids.accessor<int64_t, 2>();
    auto N = next.accessor<int64_t, 2>();
    auto M = mask.accessor<float, 2>();
    auto O = old_lp.accessor<float, 2>();
    for (int64_t i = 0; i < B; ++i) {
      const PolicySample& s = *mb[size_t(i)];
      if (s.old_logprobs.size() != s.completion.size())
        fail("train: a sample's logprobs and tokens differ in length");
      if (s.prompt.empty()) fail("train: a sample without a prompt");
      const int64_t P = int64_t(s.prompt.size());
      for (int64_t t = 0; t < P; ++t) I[i][t] = s.prompt[size_t(t)];
      for (size_t j = 0; j < s.completion.size(); ++j) {
        const int64_t t = P + int64_t(j);
        I[i][t] = s.completion[j];
        N[i][t - 1] = s.completion[j];
        M[i][t - 1] = 1;
        O[i][t - 1] = s.old_logprobs[j];
      }
      adv[i][0] = s.advantage;
      st.tokens += int64_t(s.completion.size());
    }
    // Each position's log-probability of the token sampled after it.
    auto token_logprobs = [&](Net& model) {
      return torch::log_softmax(model.forward(ids), -1).gather(-1, next.unsqueeze(-1)).squeeze(-1);
    };
    auto logp = token_logprobs(net);
    auto ratio = torch::exp(logp - old_lp);
    auto unclipped = ratio * adv;
    auto clipped_obj = torch::clamp(ratio, 1 - clip_epsilon, 1 + clip_epsilon) * adv;
    auto objective = torch::min(unclipped, clipped_obj) * mask;
    auto loss = -objective.sum() / normalizer;
    if (with_kl) {
      torch::Tensor ref_logp;
      {
        torch::NoGradGuard no_grad;
        ref_logp = token_logprobs(*impl_->reference);
      }
      // k3: exp(r - p) - (r - p) - 1, non-negative, an unbiased estimate of KL(policy ||
      // reference) over the policy's own samples. Padding is masked before exp, where it
      // could overflow.
      auto d = (ref_logp - logp) * mask;
      auto kl = torch::exp(d) - d - 1;  // 0 where masked
      loss = loss + settings.kl_coef * kl.sum() / normalizer;
      kl_sum += kl.sum().item<double>();
    }
    loss.backward();
    loss_sum += loss.item<double>();
    {
      torch::NoGradGuard no_grad;
      ratio_sum += (ratio * mask).sum().item<double>();
      clipped +=
          (((ratio - 1).abs() > clip_epsilon).to(torch::kFloat32) * mask).sum().item<double>();
      gap += ((logp - old_lp).abs() * mask).sum().item<double>();
    }
  }
  st.loss = loss_sum;
  if (st.tokens) {
    st.mean_ratio = ratio_sum / double(st.tokens);
    st.clipped_fraction = clipped / double(st.tokens);
    st.old_new_logprob_gap = gap / double(st.tokens);
    st.kl = kl_sum / double(st.tokens);
  }
  st.grad_norm = impl_->clip_and_step(settings.lr);
  return st;
}

std::vector<float> Trainer::logits(const std::vector<int32_t>& ids) {
  torch::NoGradGuard no_grad;
  impl_->net->eval();
  auto t = torch::zeros({1, int64_t(ids.size())}, torch::kInt64);
  for (size_t i = 0; i < ids.size(); ++i) t[0][int64_t(i)] = ids[i];
  auto out = impl_->net->forward(t).contiguous();
  return std::vector<float>(out.data_ptr<float>(), out.data_ptr<float>() + out.numel());
}

std::vector<NamedTensor> Trainer::tensors() const {
  torch::NoGradGuard no_grad;
  std::vector<NamedTensor> layout = net_tensor_layout(impl_->net->s);
  const auto params = impl_->net->gguf_parameters();
  for (size_t i = 0; i < layout.size(); ++i) {
    auto t = params[i].second.detach().contiguous();
    layout[i].data.assign(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
  }
  return layout;
}

void Trainer::load_tensors(const std::vector<NamedTensor>& tensors) {
  torch::NoGradGuard no_grad;
  const auto params = impl_->net->gguf_parameters();
  if (tensors.size() != params.size())
    fail("train: ", tensors.size(), " tensors for a network of ", params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const torch::Tensor& p = params[i].second;
    if (tensors[i].name != params[i].first || int64_t(tensors[i].data.size()) != p.numel())
      fail("train: tensor ", tensors[i].name, " does not fit ", params[i].first);
    p.copy_(
        torch::from_blob(const_cast<float*>(tensors[i].data.data()), p.sizes(), torch::kFloat32));
  }
}

void Trainer::save_checkpoint(const std::string& path) const {
  torch::serialize::OutputArchive archive;
  impl_->net->save(archive);
  torch::serialize::OutputArchive opt;
  impl_->optimizer->save(opt);
  archive.write("optimizer", opt);
  archive.save_to(path);
}

void Trainer::load_checkpoint(const std::string& path) {
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path);
    impl_->net->load(archive);
    torch::serialize::InputArchive opt;
    archive.read("optimizer", opt);
    impl_->optimizer->load(opt);
  } catch (const c10::Error& e) {
    fail(path, ": not a checkpoint of this network (", e.what_without_backtrace(), ")");
  }
}

double trainer_blas_gflops(int threads) {
  set_threads(threads);
  torch::NoGradGuard no_grad;
  auto a = torch::randn({512, 512}), b = torch::randn({512, 512});
  torch::mm(a, b);
  const auto t0 = std::chrono::steady_clock::now();
  const int reps = 8;
  for (int i = 0; i < reps; ++i) torch::mm(a, b);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return 2.0 * 512 * 512 * 512 * reps / s / 1e9;
}

}  // namespace muse
