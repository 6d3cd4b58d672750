#include "model/forward.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <unordered_map>

#include "quant/types.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace muse {

namespace {

// One input to several matrices (q, k and v read the same normed rows): quantized once for
// each activation format those matrices need, into buffers the pass keeps. Rows are quantized
// one by one as they become ready (inside the per-token step that writes them).
class SharedInput {
 public:
  SharedInput(const float* x, int ldx, int T, QuantizedActs (&slots)[3], std::initializer_list<const Matrix*> readers)
      : slots_(slots) {
    for (const Matrix* w : readers) {
      const int i = int(act_format(w->type));
      if (!ready_[i]) prepare_acts(x, ldx, T, int(w->cols), act_format(w->type), slots_[i]);
      ready_[i] = true;
    }
  }
  void quantize_row(int t) {
    for (int i = 0; i < 3; ++i)
      if (ready_[i]) quantize_act_row(slots_[i], t);
  }
  const QuantizedActs& for_matrix(const Matrix& w) const { return slots_[int(act_format(w.type))]; }

 private:
  QuantizedActs (&slots_)[3];
  bool ready_[3] = {};
};

// Each output (rows of w.rows values) = its w times each row of the input, all in one
// parallel loop.
struct Projection {
  const Matrix& w;
  float* y;
};
void project(std::initializer_list<Projection> outputs, const SharedInput& in, ThreadPool& pool) {
  MatmulJob jobs[4];
  int n = 0;
  for (const Projection& p : outputs) jobs[n++] = {&p.w, &in.for_matrix(p.w), p.y, p.w.rows};
  matmul_jobs(jobs, n, pool);
}

void add_bias(float* y, const std::vector<float>& b) {
  for (size_t j = 0; j < b.size(); ++j) y[j] += b[j];
}

}  // namespace

KvPoolConfig kv_pool_config(const ModelConfig& c, KvType type, int block_tokens, size_t budget_bytes) {
  KvPoolConfig k;
  k.n_layer = c.n_layer;
  k.kv_dim = c.kv_dim();
  k.v_dim = c.v_dim();
  k.n_heads = c.n_head_kv;
  k.block_tokens = block_tokens;
  k.type = type;
  k.budget_bytes = budget_bytes;
  return k;
}

BatchForward::BatchForward(const Model& model, ThreadPool& pool, int max_tokens, int max_ctx,
                           size_t max_scores)
    : model_(model),
      c_(model.config()),
      pool_(pool),
      max_tokens_(std::max(1, max_tokens)),
      max_ctx_(std::max(1, max_ctx)),
      max_scores_(std::max<size_t>(1, max_scores)),
      rope_(c_.n_rot, c_.rope_base, c_.rope_freq_scale, c_.rope_style, model.rope_freq_factors()) {
  const size_t B = size_t(max_tokens_);
  x_.resize(B * c_.n_embd);
  xn_.resize(B * std::max(c_.n_embd, c_.n_head * c_.head_dim_v));
  q_.resize(B * c_.q_dim());
  k_.resize(B * c_.kv_dim());
  v_.resize(B * c_.v_dim());
  attn_.resize(B * c_.n_head * c_.head_dim_v);
  gate_.resize(B * c_.n_ff);
  up_.resize(B * c_.n_ff);
  tmp_.resize(B * c_.n_embd);
  rope_cos_.resize(B * rope_.pairs());
  rope_sin_.resize(B * rope_.pairs());
}

// Which KV blocks each token reads, the same for every layer of a pass: tokens go through in
// ranges whose scores fit max_scores_ floats (a long prompt chunk over a long context would
// otherwise need gigabytes); within a range, uses are ordered by position in the sequence,
// then block, so a query meets its keys in position order and a block shared by several
// sequences (a common prompt) comes up once for all of them; then joined into spans.
void BatchForward::plan_attention(const std::vector<BatchToken>& batch, const KvPool& kv,
                                  const std::vector<const KvSequence*>& sequences) {
  const int n = int(batch.size()), bt = kv.block_tokens(), n_head = c_.n_head;
  ranges_.clear();
  for (int t0 = 0, t1; t0 < n; t0 = t1) {
    size_t need = 0;
    for (t1 = t0; t1 < n; ++t1) {
      const size_t more = size_t(batch[size_t(t1)].pos + 1) * n_head;
      if (t1 > t0 && need + more > max_scores_) break;
      need += more;
    }
    AttentionRange& range = ranges_.emplace_back();
    range.t0 = t0;
    range.t1 = t1;
    for (int i = t0; i < t1; ++i) {
      const KvSequence& seq = *sequences[size_t(batch[size_t(i)].seq)];
      const int n_keys = batch[size_t(i)].pos + 1;
      for (int b = 0; b * bt < n_keys; ++b)
        range.uses.push_back({b, seq.blocks()[size_t(b)], i, std::min(bt, n_keys - b * bt)});
    }
    std::sort(range.uses.begin(), range.uses.end(), [](const BlockUse& x, const BlockUse& y) {
      return x.index != y.index ? x.index < y.index : x.block != y.block ? x.block < y.block : x.token < y.token;
    });
    join_spans(range, kv);
    // Scores: per token, n_head rows of its key count.
    range.score_at.assign(size_t(t1 - t0) + 1, 0);
    for (int i = t0; i < t1; ++i)
      range.score_at[size_t(i - t0) + 1] = range.score_at[size_t(i - t0)] + size_t(batch[size_t(i)].pos + 1) * n_head;
  }
}

// Each block's readers (uses of one index and block) continue the span of the previous index
// when that span's readers are the same tokens and all saw its whole last block. Q8_0 rows
// are dequantized per block into scratch, so their spans stay one block long.
void BatchForward::join_spans(AttentionRange& range, const KvPool& kv) {
  const int bt = kv.block_tokens();
  const bool may_join = kv.config().type != KvType::kQ8_0;
  const std::vector<BlockUse>& uses = range.uses;
  range.spans.clear();
  range.reads.clear();
  // Spans that may take a block at the next index, by their first reader and that index.
  std::unordered_map<int64_t, size_t> open;
  auto next = [](int32_t token, int32_t index) { return (int64_t(token) << 32) | uint32_t(index); };
  std::vector<std::pair<size_t, int32_t>> blocks;  // each group's span and block, in index order
  for (size_t g = 0, end; g < uses.size(); g = end) {
    bool full = true;
    for (end = g;
         end < uses.size() && uses[end].index == uses[g].index && uses[end].block == uses[g].block;
         ++end)
      full = full && uses[end].rows == bt;
    const auto it = may_join ? open.find(next(uses[g].token, uses[g].index)) : open.end();
    size_t at = range.spans.size();
    if (it != open.end()) {
      const BlockSpan& span = range.spans[it->second];
      bool same = span.r1 - span.r0 == end - g;
      for (size_t k = 0; same && k < end - g; ++k)
        same = range.reads[span.r0 + k].token == uses[g + k].token;
      if (same) at = it->second;
      open.erase(it);
    }
    if (at < range.spans.size()) {
      BlockSpan& span = range.spans[at];
      for (size_t k = 0; k < end - g; ++k) range.reads[span.r0 + k].rows += uses[g + k].rows;
      ++span.blocks;
    } else {
      range.spans.push_back(
          {uses[g].index, 1, 0, range.reads.size(), range.reads.size() + (end - g)});
      for (size_t u = g; u < end; ++u) range.reads.push_back({uses[u].token, uses[u].rows});
    }
    blocks.emplace_back(at, uses[g].block);
    if (full) open[next(uses[g].token, uses[g].index + 1)] = at;
  }
  // Each span's blocks together, in index order.
  size_t offset = 0;
  for (BlockSpan& span : range.spans) {
    span.b0 = offset;
    offset += size_t(span.blocks);
  }
  range.blocks.resize(offset);
  std::vector<size_t> filled(range.spans.size(), 0);
  for (const auto& [span, block] : blocks)
    range.blocks[range.spans[span].b0 + filled[span]++] = block;
}

// Causal attention of every batch token over its own sequence's cached positions 0..pos.
//
// One task per KV head (and share of the tokens, when there are few heads) does all of that
// head's work: the scores of its grouped query heads span by span, their softmax, and the
// weighted values. Each span's rows are read by every query that needs them (the grouped
// heads, and every sequence that shares the blocks) while they are in cache: F16 and F32 rows
// as they are stored (the kernels convert F16 as they load it), Q8_0 rows dequantized to float
// once. A query sees its keys in position order with the same arithmetic as when it runs
// alone, so results do not depend on the batch.
void BatchForward::attention(int layer, const std::vector<BatchToken>& batch, const KvPool& kv) {
  const int hd = c_.head_dim, hdv = c_.head_dim_v, n_head = c_.n_head, n_kv = c_.n_head_kv;
  const int group = n_head / n_kv;
  const float scale = 1.0f / std::sqrt(float(hd));
  const KernelSet& kern = kernels();
  const int bt = kv.block_tokens();
  const KvType type = kv.config().type;
  const bool f16 = type == KvType::kF16;
  const size_t k_row = kv.k_head_bytes(), v_row = kv.v_head_bytes();
  // Q8_0 rows [0, rows) of one head's block as floats: values as rows, keys by dimension (a
  // block of `rows` keys, as the F16 and F32 caches store them), through the row after them.
  auto dequantize_rows = [&](const uint8_t* src, bool keys, int rows, float* out) {
    const int dim = keys ? hd : hdv;
    const size_t row_bytes = keys ? k_row : v_row;
    float* row = out + size_t(rows) * dim;
    for (int r = 0; r < rows; ++r) {
      dequantize_row(GgmlType::Q8_0, src + size_t(r) * row_bytes,
                     keys ? row : out + size_t(r) * dim, dim);
      if (keys)
        for (int i = 0; i < dim; ++i) out[size_t(i) * rows + r] = row[i];
    }
  };
  const size_t row_floats = type == KvType::kQ8_0 ? size_t(bt + 1) * std::max(hd, hdv) : 0;
  rows_.resize(size_t(pool_.size()) * row_floats);
  for (const AttentionRange& range : ranges_) {
    scores_.resize(range.score_at.back());
    auto scores = [&](int i, int h) {
      return scores_.data() + range.score_at[size_t(i - range.t0)] + size_t(h) * size_t(batch[size_t(i)].pos + 1);
    };
    const int shares = std::max(1, std::min(range.t1 - range.t0, (2 * pool_.size() + n_kv - 1) / n_kv));
    pool_.parallel_for(int64_t(n_kv) * shares, [&](int64_t task, int thread) {
      const int kvh = int(task / shares), share = int(task % shares);
      float* rows = rows_.data() + size_t(thread) * row_floats;
      // Per block: the queries that read it (their inputs, outputs and row counts).
      thread_local std::vector<const float*> in;
      thread_local std::vector<float*> out;
      thread_local std::vector<int> n_rows;
      thread_local std::vector<const uint8_t*> stored;
      const size_t most = size_t(range.t1 - range.t0) * group;
      if (in.size() < most) {
        in.resize(most);
        out.resize(most);
        n_rows.resize(most);
      }
      auto for_each_span = [&](bool values) {
        for (const BlockSpan& span : range.spans) {
          int need = 0;
          for (size_t r = span.r0; r < span.r1; ++r)
            if (range.reads[r].token % shares == share) need = std::max(need, range.reads[r].rows);
          if (need == 0) continue;
          // The span's blocks (Q8_0: its one block, dequantized).
          if (stored.size() < size_t(span.blocks)) stored.resize(size_t(span.blocks));
          for (int b = 0; b < span.blocks; ++b) {
            const int32_t block = range.blocks[span.b0 + size_t(b)];
            stored[size_t(b)] = values ? kv.values(block, layer, kvh) : kv.keys(block, layer, kvh);
          }
          if (type == KvType::kQ8_0) {
            dequantize_rows(stored[0], !values, need, rows);
            stored[0] = reinterpret_cast<const uint8_t*>(rows);
          }
          const int block = type == KvType::kQ8_0 ? need : bt;
          // Every query of this share that reads the span, in runs that see the same rows.
          size_t n_q = 0;
          for (size_t r = span.r0; r < span.r1; ++r) {
            const SpanRead& read = range.reads[r];
            if (read.token % shares != share) continue;
            const int i = read.token;
            for (int h = kvh * group; h < (kvh + 1) * group; ++h, ++n_q) {
              float* s = scores(i, h) + size_t(span.index) * bt;
              in[n_q] = values ? s : q_.data() + size_t(i) * c_.q_dim() + size_t(h) * hd;
              out[n_q] = values ? attn_.data() + size_t(i) * n_head * hdv + size_t(h) * hdv : s;
              n_rows[n_q] = read.rows;
            }
          }
          for (size_t j0 = 0, j1; j0 < n_q; j0 = j1) {
            for (j1 = j0 + 1; j1 < n_q && n_rows[j1] == n_rows[j0];) ++j1;
            const int n_q_run = int(j1 - j0), nr = n_rows[j0];
            if (f16) {
              const KvSpan<uint16_t> span_rows{
                  reinterpret_cast<const uint16_t* const*>(stored.data()), block, nr,
                  values ? hdv : hd};
              if (values)
                kern.weighted_rows_f16(&in[j0], &out[j0], n_q_run, span_rows);
              else
                kern.dot_keys_f16(&in[j0], &out[j0], n_q_run, span_rows, scale);
            } else {
              const KvSpan<float> span_rows{reinterpret_cast<const float* const*>(stored.data()),
                                            block, nr, values ? hdv : hd};
              if (values)
                kern.weighted_rows(&in[j0], &out[j0], n_q_run, span_rows);
              else
                kern.dot_keys(&in[j0], &out[j0], n_q_run, span_rows, scale);
            }
          }
        }
      };
      for_each_span(false);
      for (int i = range.t0 + (share - range.t0 % shares + shares) % shares; i < range.t1; i += shares)
        for (int h = kvh * group; h < (kvh + 1) * group; ++h) {
          kern.softmax(scores(i, h), batch[size_t(i)].pos + 1, f16);
          float* out = attn_.data() + size_t(i) * n_head * hdv + size_t(h) * hdv;
          std::fill(out, out + hdv, 0.0f);
        }
      for_each_span(true);
    });
  }
}

void BatchForward::run(const std::vector<BatchToken>& batch, KvPool& kv,
                       const std::vector<const KvSequence*>& sequences, float* logits) {
  const int n = int(batch.size());
  if (n == 0) return;
  if (n > max_tokens_) fail("batch of ", n, " tokens exceeds the pass's limit of ", max_tokens_);
  if (kv.config().type == KvType::kQ8_0 && (c_.head_dim % 32 || c_.head_dim_v % 32))
    fail("KV cache type q8_0 needs a head dimension that is a multiple of 32");
  for (const BatchToken& t : batch) {
    if (t.token < 0 || t.token >= c_.n_vocab) fail("token id ", t.token, " is outside the vocabulary");
    if (t.seq < 0 || size_t(t.seq) >= sequences.size()) fail("batch token refers to sequence ", t.seq);
    const KvSequence& s = *sequences[size_t(t.seq)];
    if (t.pos < 0 || t.pos >= max_ctx_ || size_t(t.pos / kv.block_tokens()) >= s.blocks().size())
      fail("position ", t.pos, " has no reserved KV slot");
  }
  plan_attention(batch, kv, sequences);
  const int E = c_.n_embd, A = c_.n_head * c_.head_dim_v;
  const Matrix& emb = model_.token_embedding();
  for (int i = 0; i < n; ++i)
    dequantize_row(emb.type, emb.data + size_t(batch[size_t(i)].token) * emb.row_bytes(), x_.data() + size_t(i) * E, E);
  const int pairs = rope_.pairs();
  for (int i = 0; i < n; ++i)
    rope_.angles(batch[size_t(i)].pos, &rope_cos_[size_t(i) * pairs], &rope_sin_[size_t(i) * pairs]);
  // The work between matrix products is per token: spread over the pool rather than left to
  // one thread while the others wait.
  auto per_token = [&](auto&& fn) { pool_.parallel_for(n, [&](int64_t i, int) { fn(int(i)); }); };
  auto add_rows = [&](float* x, const float* y, int i) {
    for (int j = 0; j < E; ++j) x[size_t(i) * E + j] += y[size_t(i) * E + j];
  };
  const bool f16_kv = kv.config().type == KvType::kF16;

  for (int l = 0; l < c_.n_layer; ++l) {
    const LayerWeights& L = model_.layers()[l];
    SharedInput attn_in(xn_.data(), E, n, acts_, {&L.wq, &L.wk, &L.wv});
    per_token([&](int i) {
      if (l > 0) add_rows(x_.data(), tmp_.data(), i);  // the previous layer's feed-forward output
      rms_norm(&x_[size_t(i) * E], L.attn_norm.data(), &xn_[size_t(i) * E], E, c_.rms_eps);
      attn_in.quantize_row(i);
    });
    project({{L.wq, q_.data()}, {L.wk, k_.data()}, {L.wv, v_.data()}}, attn_in, pool_);
    per_token([&](int i) {
      float* q = &q_[size_t(i) * c_.q_dim()];
      float* k = &k_[size_t(i) * c_.kv_dim()];
      float* v = &v_[size_t(i) * c_.v_dim()];
      add_bias(q, L.bq);
      add_bias(k, L.bk);
      add_bias(v, L.bv);
      if (!L.q_norm.empty()) {
        for (int h = 0; h < c_.n_head; ++h) rms_norm(q + h * c_.head_dim, L.q_norm.data(), q + h * c_.head_dim, c_.head_dim, c_.rms_eps);
        for (int h = 0; h < c_.n_head_kv; ++h) rms_norm(k + h * c_.head_dim, L.k_norm.data(), k + h * c_.head_dim, c_.head_dim, c_.rms_eps);
      }
      const float* cs = &rope_cos_[size_t(i) * pairs];
      const float* sn = &rope_sin_[size_t(i) * pairs];
      rope_.rotate(q, c_.n_head, c_.head_dim, cs, sn);
      rope_.rotate(k, c_.n_head_kv, c_.head_dim, cs, sn);
      const BatchToken& t = batch[size_t(i)];
      kv.write(sequences[size_t(t.seq)]->block_of(t.pos, kv), t.pos % kv.block_tokens(), l, k, v);
      // With an F16 cache, products are taken at F16 input precision (q and the attention
      // weights rounded to F16), as llama.cpp computes them: this keeps logits within 1e-3 of
      // the reference on F32 models instead of 5e-3.
      if (f16_kv) kernels().round_f16(q, c_.q_dim());
    });
    attention(l, batch, kv);
    SharedInput out_in(attn_.data(), A, n, acts_, {&L.wo});
    per_token([&](int i) { out_in.quantize_row(i); });
    project({{L.wo, tmp_.data()}}, out_in, pool_);

    SharedInput ffn_in(xn_.data(), E, n, acts_, {&L.w_gate, &L.w_up});
    per_token([&](int i) {
      add_rows(x_.data(), tmp_.data(), i);
      rms_norm(&x_[size_t(i) * E], L.ffn_norm.data(), &xn_[size_t(i) * E], E, c_.rms_eps);
      ffn_in.quantize_row(i);
    });
    project({{L.w_gate, gate_.data()}, {L.w_up, up_.data()}}, ffn_in, pool_);
    SharedInput down_in(up_.data(), c_.n_ff, n, acts_, {&L.w_down});
    per_token([&](int i) {
      kernels().swiglu(&gate_[size_t(i) * c_.n_ff], &up_[size_t(i) * c_.n_ff], c_.n_ff);
      down_in.quantize_row(i);
    });
    project({{L.w_down, tmp_.data()}}, down_in, pool_);
  }
  for (int i = 0; i < n; ++i) add_rows(x_.data(), tmp_.data(), i);
  if (!logits) return;
  // The output head only for the tokens that asked.
  int m = 0;
  for (int i = 0; i < n; ++i)
    if (batch[size_t(i)].logits)
      rms_norm(&x_[size_t(i) * E], model_.output_norm().data(), &xn_[size_t(m++) * E], E, c_.rms_eps);
  if (m == 0) return;
  SharedInput head_in(xn_.data(), E, m, acts_, {&model_.output()});
  for (int i = 0; i < m; ++i) head_in.quantize_row(i);
  project({{model_.output(), logits}}, head_in, pool_);
}

}  // namespace muse
