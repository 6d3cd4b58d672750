#include "synth/synth.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>
#include <vector>

#include "io/gguf.h"
#include "tokenizer/bpe_trainer.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace muse {
namespace {

// A short text to learn the first merges from, so common English pieces become tokens.
constexpr const char* kCorpus =
    "The quick brown fox jumps over the lazy dog. In the beginning there was the word, and the "
    "word was with the people who spoke it. To think is to reason about the world; to reason "
    "well is to think in few steps. A model that thinks before it answers can solve problems "
    "that need several steps: arithmetic, planning, search and proof. We measure how many "
    "tokens it spends, how long it takes, and whether the answer is right. The answer is 42. "
    "Countdown: reach the target from the given numbers with addition, subtraction, "
    "multiplication and division. First we add the two largest numbers, then we subtract the "
    "smallest one from the result, and then we check whether the result equals the target. "
    "If it does not, we try another order. Contemplating mode starts several agents that work "
    "on parts of the problem in parallel and then joins what they found into one answer. "
    "def main(): return sum(x * x for x in range(10)) # Python code is text as well. "
    "Hello, world! How are you today? I am fine, thank you. What is the capital of France? "
    "Paris is the capital of France, and Berlin is the capital of Germany. 1 + 2 = 3, "
    "12 * 12 = 144, 100 - 58 = 42, 7 / 7 = 1. ";

struct Vocab {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::vector<std::string> merges;
  int bos = 0, eos = 0;
};

// ChatML with the conventions of reasoning models: tools listed in the system turn and called
// as <tool_call>{json}</tool_call>, tool results in user turns as <tool_response>, and an empty
// <think></think> block when enable_thinking is false.
constexpr const char* kChatTemplate =
    "{%- if tools %}{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}"
    "{{- 'You may call these tools:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}"
    "{{- '\\n</tools>\\nCall one as <tool_call>{\\\"name\\\": ..., \\\"arguments\\\": {...}}</tool_call>.<|im_end|>\\n' }}"
    "{%- elif messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}{%- endif %}"
    "{%- for m in messages %}"
    "{%- if m.role == 'user' or (m.role == 'assistant' and not m.tool_calls) %}"
    "{{- '<|im_start|>' + m.role + '\\n' + (m.content or '') + '<|im_end|>\\n' }}"
    "{%- elif m.role == 'assistant' %}{{- '<|im_start|>assistant\\n' + (m.content or '') }}"
    "{%- for call in m.tool_calls %}{%- set f = call.function if call.function else call %}"
    "{{- '\\n<tool_call>\\n{\\\"name\\\": \\\"' + f.name + '\\\", \\\"arguments\\\": ' }}"
    "{{- (f.arguments if f.arguments is string else f.arguments | tojson) + '}\\n</tool_call>' }}"
    "{%- endfor %}{{- '<|im_end|>\\n' }}"
    "{%- elif m.role == 'tool' %}"
    "{{- '<|im_start|>user\\n<tool_response>\\n' + m.content + '\\n</tool_response><|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}";

Vocab make_vocab(int n_vocab, uint64_t seed) {
  const std::vector<std::string> specials = {"<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>",
                                             "<|im_end|>", "<think>", "</think>", "<tool_call>",
                                             "</tool_call>"};
  if (n_vocab < 256 + int(specials.size()) + 1)
    fail("vocabulary of ", n_vocab, " is too small (at least ", 256 + specials.size() + 1, ")");
  const int n_normal = n_vocab - int(specials.size());
  Vocab v;
  const std::vector<std::string> sym = byte_symbols();
  std::set<std::string> seen;
  for (const std::string& s : sym) {
    v.tokens.push_back(s);
    seen.insert(s);
  }
  // Learn merges on the corpus: words (with their leading space) as symbol sequences.
  std::vector<std::vector<std::string>> words;
  {
    std::string text = kCorpus, word;
    for (size_t i = 0; i <= text.size(); ++i) {
      const bool boundary = i == text.size() || text[i] == ' ';
      if (boundary) {
        if (!word.empty()) {
          std::vector<std::string> w;
          for (unsigned char ch : word) w.push_back(sym[ch]);
          words.push_back(w);
        }
        word = i < text.size() ? " " : "";
      } else {
        word += text[i];
      }
    }
  }
  std::vector<BpeWord> bpe_words;
  for (auto& w : words) bpe_words.push_back({std::move(w), 1});
  for (const std::string& m : learn_merges(bpe_words, n_normal - int(v.tokens.size()))) {
    const size_t space = m.find(' ');
    std::string ab = m.substr(0, space) + m.substr(space + 1);
    if (seen.insert(ab).second) {
      v.tokens.push_back(std::move(ab));
      v.merges.push_back(m);
    }
  }
  // Fill the rest with merges of random existing pieces, as a large tokenizer would have.
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 12345;
  auto next = [&] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  const std::string letters = "etaoinshrdlucmfwypvbgkjqxz";
  while (int(v.tokens.size()) < n_normal) {
    // Prefer pieces made of letters so the vocabulary looks like words.
    const std::string a = v.tokens[next() % v.tokens.size()];
    const std::string b = sym[uint8_t(letters[next() % letters.size()])];
    if (a.size() + b.size() > 24) continue;
    const std::string ab = a + b;
    if (seen.insert(ab).second) {
      v.tokens.push_back(ab);
      v.merges.push_back(a + " " + b);
    }
  }
  v.types.assign(v.tokens.size(), 1);
  v.bos = int(v.tokens.size());
  v.eos = v.bos + 1;
  // As in Qwen's vocabularies, the reasoning and tool-call markers are user-defined tokens
  // (text the model writes), the turn markers control tokens.
  for (const std::string& s : specials) {
    v.tokens.push_back(s);
    v.types.push_back(s.find('|') == std::string::npos ? 4 : 3);
  }
  return v;
}

// Deterministic per-tensor random numbers: approximately normal (sum of four uniforms).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed ? seed : 1) {}
  float normal() {
    float sum = 0;
    for (int i = 0; i < 4; ++i) sum += float(next() >> 40) * (1.0f / 16777216.0f);
    return (sum - 2.0f) * 1.7320508f;  // variance of the sum of 4 U(0,1) is 1/3
  }

 private:
  uint64_t next() {  // splitmix64
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t s_;
};

uint64_t hash_name(const std::string& s, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (char c : s) h = (h ^ uint8_t(c)) * 1099511628211ull;
  return h;
}

bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// The type a tensor gets under a file type, the way llama-quantize chooses (simplified).
GgmlType choose_type(const std::string& ftype, const std::string& name, int layer, int n_layer,
                     int64_t cols, bool is_output) {
  GgmlType t;
  if (ftype == "q4_k_m" || ftype == "q5_k_m") {
    const GgmlType base = ftype == "q4_k_m" ? GgmlType::Q4_K : GgmlType::Q5_K;
    t = base;
    if (is_output) t = GgmlType::Q6_K;
    else if ((name == "attn_v" || name == "ffn_down") && use_more_bits(layer, n_layer)) t = GgmlType::Q6_K;
  } else {
    const auto parsed = type_from_name(ftype);
    if (!parsed || !type_traits(*parsed).computable) fail("unknown or unsupported --type \"", ftype, "\"");
    t = *parsed;
    const bool legacy_or_k = t != GgmlType::F32 && t != GgmlType::F16 && t != GgmlType::BF16 && t != GgmlType::Q8_0;
    if (is_output && legacy_or_k) t = GgmlType::Q6_K;
  }
  // Rows that do not fill whole 256-blocks fall back as llama-quantize does.
  if (cols % type_traits(t).block_size) {
    switch (t) {
      case GgmlType::Q4_K: t = GgmlType::Q5_0; break;
      case GgmlType::Q5_K: t = GgmlType::Q5_1; break;
      case GgmlType::Q6_K: t = GgmlType::Q8_0; break;
      default: t = GgmlType::F16; break;
    }
    if (cols % type_traits(t).block_size) t = GgmlType::F16;
  }
  return t;
}

struct TensorPlan {
  std::string name;
  std::vector<int64_t> dims;  // ne[0] first
  GgmlType type;
  float stddev;
  float mean;  // norms: 1
  std::string data;
};

}  // namespace

const char* chatml_think_template() { return kChatTemplate; }

void apply_preset(const std::string& preset, SynthOptions& o) {
  SynthShape& s = o.shape;
  if (preset == "smollm2-135m") {
    o.arch = Arch::kLlama;
    s = {576, 30, 9, 3, 64, 1536, 49152, 8192, 100000, false, true};
  } else if (preset == "qwen3-0.6b") {
    o.arch = Arch::kQwen3;
    s = {1024, 28, 16, 8, 128, 3072, 151936, 40960, 1000000, false, true};
  } else if (preset == "llama3.2-1b") {
    o.arch = Arch::kLlama;
    s = {2048, 16, 32, 8, 64, 8192, 128256, 131072, 500000, true, true};
  } else {
    fail("unknown preset \"", preset, "\" (smollm2-135m, qwen3-0.6b, llama3.2-1b)");
  }
  o.name = preset + "-synth";
}

void apply_dims(const std::string& dims, SynthShape& s) {
  std::stringstream ss(dims);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos) fail("--dims: expected key=value, got \"", item, "\"");
    const std::string k = item.substr(0, eq), val = item.substr(eq + 1);
    double v;
    try {
      size_t used;
      v = std::stod(val, &used);
      if (used != val.size()) throw std::invalid_argument(val);
    } catch (const std::exception&) {
      fail("--dims: \"", k, "\" needs a number, got \"", val, "\"");
    }
    const int iv = int(v);
    if (k == "embd") s.n_embd = iv;
    else if (k == "layers") s.n_layer = iv;
    else if (k == "heads") s.n_head = iv;
    else if (k == "kv_heads") s.n_head_kv = iv;
    else if (k == "head_dim") s.head_dim = iv;
    else if (k == "ff") s.n_ff = iv;
    else if (k == "vocab") s.n_vocab = iv;
    else if (k == "ctx") s.n_ctx = iv;
    else if (k == "rope_base") s.rope_base = v;
    else if (k == "rope_freqs") s.rope_freqs = iv != 0;
    else if (k == "tied") s.tied_output = iv != 0;
    else fail("--dims: unknown key \"", k, "\"");
  }
  if (s.n_embd <= 0 || s.n_layer <= 0 || s.n_head <= 0 || s.n_head_kv <= 0 || s.head_dim <= 0 ||
      s.n_ff <= 0 || s.n_ctx <= 0 || s.n_head % s.n_head_kv || s.head_dim % 2)
    fail("--dims: inconsistent shape");
}

void synthesize(const SynthOptions& o, const std::string& path,
                const std::function<void(int, int)>& progress) {
  const SynthShape& s = o.shape;
  const std::string arch = arch_name(o.arch);
  const Vocab vocab = make_vocab(s.n_vocab, o.seed);

  GgufWriter w;
  w.set_string("general.architecture", arch);
  w.set_string("general.name", o.name);
  w.set_u32("general.alignment", 32);
  w.set_u32(arch + ".context_length", uint32_t(s.n_ctx));
  w.set_u32(arch + ".embedding_length", uint32_t(s.n_embd));
  w.set_u32(arch + ".block_count", uint32_t(s.n_layer));
  w.set_u32(arch + ".feed_forward_length", uint32_t(s.n_ff));
  w.set_u32(arch + ".attention.head_count", uint32_t(s.n_head));
  w.set_u32(arch + ".attention.head_count_kv", uint32_t(s.n_head_kv));
  w.set_u32(arch + ".attention.key_length", uint32_t(s.head_dim));
  w.set_u32(arch + ".attention.value_length", uint32_t(s.head_dim));
  w.set_u32(arch + ".rope.dimension_count", uint32_t(s.head_dim));
  w.set_f32(arch + ".rope.freq_base", float(s.rope_base));
  w.set_f32(arch + ".attention.layer_norm_rms_epsilon", o.arch == Arch::kLlama ? 1e-5f : 1e-6f);
  w.set_u32(arch + ".vocab_size", uint32_t(s.n_vocab));
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", o.arch == Arch::kLlama ? "llama-bpe" : "qwen2");
  w.set_string_array("tokenizer.ggml.tokens", vocab.tokens);
  w.set_i32_array("tokenizer.ggml.token_type", vocab.types);
  w.set_string_array("tokenizer.ggml.merges", vocab.merges);
  w.set_u32("tokenizer.ggml.bos_token_id", uint32_t(vocab.bos));
  w.set_u32("tokenizer.ggml.eos_token_id", uint32_t(vocab.eos));
  w.set_bool("tokenizer.ggml.add_bos_token", o.arch == Arch::kLlama);
  w.set_string("tokenizer.chat_template", kChatTemplate);
  w.set_string("general.file_type_name", o.type);

  // Plan every tensor, then generate them in parallel (each from its own seed).
  std::vector<TensorPlan> plan;
  const float emb_std = 2.0f / std::sqrt(float(s.n_embd));
  auto matrix = [&](const std::string& name, const std::string& role, int layer, int64_t cols,
                    int64_t rows, bool is_output) {
    plan.push_back({name, {cols, rows}, choose_type(o.type, role, layer, s.n_layer, cols, is_output),
                    is_output ? emb_std : 1.0f / std::sqrt(float(cols)), 0.0f, {}});
  };
  auto vector = [&](const std::string& name, int64_t n, float mean, float stddev) {
    plan.push_back({name, {n}, GgmlType::F32, stddev, mean, {}});
  };
  const int q_dim = s.n_head * s.head_dim, kv_dim = s.n_head_kv * s.head_dim;
  matrix("token_embd.weight", "token_embd", 0, s.n_embd, s.n_vocab, s.tied_output);
  vector("output_norm.weight", s.n_embd, 1.0f, 0.1f);
  if (!s.tied_output) matrix("output.weight", "output", 0, s.n_embd, s.n_vocab, true);
  if (s.rope_freqs) {
    // Llama 3.1's factors: 1 for high frequencies, up to 8 for the lowest.
    TensorPlan p{"rope_freqs.weight", {s.head_dim / 2}, GgmlType::F32, 0, 0, {}};
    std::vector<float> f(s.head_dim / 2);
    for (int i = 0; i < s.head_dim / 2; ++i) f[i] = 1.0f + 7.0f * float(i) / float(s.head_dim / 2 - 1 + (s.head_dim == 2));
    p.data.assign(reinterpret_cast<const char*>(f.data()), f.size() * 4);
    plan.push_back(std::move(p));
  }
  for (int l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    vector(p + "attn_norm.weight", s.n_embd, 1.0f, 0.1f);
    matrix(p + "attn_q.weight", "attn_q", l, s.n_embd, q_dim, false);
    matrix(p + "attn_k.weight", "attn_k", l, s.n_embd, kv_dim, false);
    matrix(p + "attn_v.weight", "attn_v", l, s.n_embd, kv_dim, false);
    if (o.arch == Arch::kQwen2) {
      vector(p + "attn_q.bias", q_dim, 0.0f, 0.1f);
      vector(p + "attn_k.bias", kv_dim, 0.0f, 0.1f);
      vector(p + "attn_v.bias", kv_dim, 0.0f, 0.1f);
    }
    if (o.arch == Arch::kQwen3) {
      vector(p + "attn_q_norm.weight", s.head_dim, 1.0f, 0.1f);
      vector(p + "attn_k_norm.weight", s.head_dim, 1.0f, 0.1f);
    }
    matrix(p + "attn_output.weight", "attn_output", l, q_dim, s.n_embd, false);
    vector(p + "ffn_norm.weight", s.n_embd, 1.0f, 0.1f);
    matrix(p + "ffn_gate.weight", "ffn_gate", l, s.n_embd, s.n_ff, false);
    matrix(p + "ffn_up.weight", "ffn_up", l, s.n_embd, s.n_ff, false);
    matrix(p + "ffn_down.weight", "ffn_down", l, s.n_ff, s.n_embd, false);
  }

  ThreadPool pool(default_thread_count());
  std::atomic<int> done{0};
  pool.parallel_for(int64_t(plan.size()), [&](int64_t i, int thread) {
    TensorPlan& t = plan[i];
    if (t.data.empty()) {
      Rng rng(hash_name(t.name, o.seed));
      const int64_t cols = t.dims[0], rows = t.dims.size() > 1 ? t.dims[1] : 1;
      std::vector<float> row(cols);
      t.data.resize(row_bytes(t.type, cols) * rows);
      for (int64_t r = 0; r < rows; ++r) {
        for (float& x : row) x = t.mean + t.stddev * rng.normal();
        quantize_row(t.type, row.data(), t.data.data() + r * row_bytes(t.type, cols), cols);
      }
    }
    const int n = ++done;
    if (progress && thread == 0) progress(n, int(plan.size()));
  });
  for (const TensorPlan& t : plan) w.add_tensor(t.name, t.type, t.dims, t.data.data(), t.data.size());
  if (progress) progress(int(plan.size()), int(plan.size()));
  w.write(path);
}

}  // namespace muse
