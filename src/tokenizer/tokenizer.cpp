#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cstdlib>
#include <queue>
#include <utility>

#include "io/gguf.h"
#include "util/error.h"

namespace muse {

namespace {

// Regexes from the models' tokenizer.json files. Where those use `(?i:'s|'t|...)`, the explicit
// case classes below say the same without case folding beyond ASCII (as llama.cpp does).
constexpr const char* kContractions = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
constexpr const char* kGpt2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";

std::string llama3_like(const char* numbers) {
  return std::string(kContractions) + "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|" + numbers +
         "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
}

struct PreTokenizerRules {
  std::vector<std::string> patterns;
  bool clean_spaces = true;
  bool ignore_merges = false;
  bool add_bos = false;
};

PreTokenizerRules rules_for(const std::string& name) {
  auto is = [&](std::initializer_list<const char*> names) {
    for (const char* n : names)
      if (name == n) return true;
    return false;
  };
  if (name.empty() || is({"default"}))
    return {{"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2, "\\p{N}+", "[0-9][0-9][0-9]"}};
  if (is({"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0",
          "lfm2", "dbrx", "smaug-bpe"})) {
    const bool llama3 = !is({"dbrx", "smaug-bpe"});
    return {{llama3_like("\\p{N}{1,3}")}, true, llama3, llama3};
  }
  if (is({"qwen2", "deepseek-r1-qwen", "stablelm2", "hunyuan"})) {
    return {{llama3_like("\\p{N}")}, is({"stablelm2"})};
  }
  if (is({"qwen35"})) {
    return {{std::string(kContractions) +
             "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*"
             "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
            false};
  }
  if (is({"chatglm-bpe", "glm4"})) return {{llama3_like("\\p{N}{1,3}")}, true};
  if (is({"deepseek-llm"})) {
    return {{"[\r\n]",
             "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]+",
             "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+", "\\s+$", "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+", "\\p{N}+"},
            false};
  }
  if (is({"deepseek-coder"})) {
    return {{"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+", "\\p{N}"}, false};
  }
  if (is({"deepseek-v3"})) {
    return {{"\\p{N}{1,3}", "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
             "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}"
             "\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"},
            false};
  }
  if (is({"falcon"})) return {{"[\\p{P}\\$\\+<=>\\^~\\|`]+", kGpt2, "[0-9][0-9][0-9]"}};
  if (is({"starcoder", "refact", "codeshell", "exaone", "minerva-7b"}))
    return {{"\\p{N}", kGpt2}};
  if (is({"smollm", "command-r"})) return {{"\\p{N}", kGpt2}, false};
  if (is({"gpt-2", "phi-2", "mpt", "olmo", "jais", "trillion", "jina-es", "jina-de", "gigachat",
          "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum", "modern-bert", "roberta-bpe"}))
    return {{kGpt2}};
  if (is({"poro-chat", "bloom", "gpt3-finnish"}))
    return {{" ?[^(\\s|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{964}\\x{6D4}\\x{60C})]+"}, !is({"poro-chat"})};
  if (is({"viking"})) return {{" ?[^(\\s|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{964}\\x{6D4}\\x{60C})]+", "\\p{N}"}, false};
  if (is({"tekken"})) {
    return {{"[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
             "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*"
             "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
            false, true, true};
  }
  if (is({"gpt-4o", "llama4"})) {
    return {{"[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
             "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?"
             "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*"
             "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?"
             "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
            false};
  }
  fail("unknown pre-tokenizer \"", name, "\" (tokenizer.ggml.pre)");
}

bool is_special_type(TokenType t) {
  return t == TokenType::kControl || t == TokenType::kUserDefined || t == TokenType::kUnknown;
}

bool is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string_view::npos; pos = hit + from.size())
    (out += s.substr(pos, hit - pos)) += to;
  out += s.substr(pos);
  return out;
}

constexpr std::string_view kSpmSpace = "\xe2\x96\x81";  // U+2581, SentencePiece's visible space

// A symbol of the word being merged: a byte range, linked to its neighbours.
struct Symbol {
  uint32_t start, len;
  int prev, next;
};

// A candidate merge of two adjacent symbols. It is stale once either side has grown.
struct Bigram {
  float priority;  // higher merges first
  int left, right;
  uint32_t left_len, right_len;
  bool operator<(const Bigram& o) const {
    if (priority != o.priority) return priority < o.priority;
    return left > o.left;  // ties: leftmost first
  }
};

std::vector<Symbol> utf8_symbols(std::string_view text) {
  std::vector<Symbol> symbols;
  for (uint32_t at = 0; at < text.size();) {
    const uint32_t len = std::min<uint32_t>(utf8_sequence_length(uint8_t(text[at])),
                                            uint32_t(text.size()) - at);
    symbols.push_back({at, len, int(symbols.size()) - 1, int(symbols.size()) + 1});
    at += len;
  }
  if (!symbols.empty()) symbols.back().next = -1;
  return symbols;
}

// Merges adjacent symbols in priority order until no candidate is left; priority_of returns
// nullopt-like false when two symbols cannot merge.
template <typename PriorityOf>
void merge_symbols(std::string_view text, std::vector<Symbol>& symbols, PriorityOf priority_of) {
  std::priority_queue<Bigram> queue;
  auto consider = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    float priority;
    const Symbol& l = symbols[size_t(left)];
    const Symbol& r = symbols[size_t(right)];
    if (priority_of(text.substr(l.start, l.len), text.substr(r.start, r.len), &priority))
      queue.push({priority, left, right, l.len, r.len});
  };
  for (size_t i = 1; i < symbols.size(); ++i) consider(int(i) - 1, int(i));
  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& l = symbols[size_t(b.left)];
    Symbol& r = symbols[size_t(b.right)];
    if (l.len != b.left_len || r.len != b.right_len || l.next != b.right) continue;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) symbols[size_t(r.next)].prev = b.left;
    consider(l.prev, b.left);
    consider(b.left, l.next);
  }
}

}  // namespace

std::vector<std::string> pre_tokenizer_patterns(const std::string& name) {
  return rules_for(name).patterns;
}

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufFile& file) {
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  t->load(file);
  return t;
}

void Tokenizer::load(const GgufFile& file) {
  const std::string kind = file.get_string("tokenizer.ggml.model");
  if (kind.empty()) fail("the model has no tokenizer (tokenizer.ggml.model is missing)");
  const GgufValue* list = file.find("tokenizer.ggml.tokens");
  if (!list || list->type != GgufType::kArray || list->elem_type != GgufType::kString)
    fail("tokenizer.ggml.tokens is missing or not a string array");
  const size_t n = list->strings.size();
  if (n == 0 || n > (size_t(1) << 30)) fail("tokenizer.ggml.tokens has ", n, " tokens");

  std::vector<float> scores;
  if (const GgufValue* v = file.find("tokenizer.ggml.scores")) {
    scores = v->as_float_array("tokenizer.ggml.scores");
    if (scores.size() < n) fail("tokenizer.ggml.scores has fewer entries than tokens");
  }
  std::vector<int64_t> types;
  if (const GgufValue* v = file.find("tokenizer.ggml.token_type")) {
    types = v->as_int_array("tokenizer.ggml.token_type");
    if (types.size() < n) fail("tokenizer.ggml.token_type has fewer entries than tokens");
  }
  tokens_.resize(n);
  token_ids_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    Token& tok = tokens_[i];
    tok.text = std::string(list->strings[i]);
    if (tok.text.empty()) tok.text = "[EMPTY_" + std::to_string(i) + "]";
    if (!scores.empty()) tok.score = scores[i];
    if (!types.empty()) {
      const int64_t ty = types[i];
      tok.type = ty >= 1 && ty <= 6 ? TokenType(ty) : TokenType::kUndefined;
    }
    token_ids_[tok.text] = int32_t(i);
  }

  if (kind == "llama") {
    model_ = Model::kSentencePiece;
    bos_ = 1, eos_ = 2, unk_ = 0;
    add_bos_ = true;
    add_space_prefix_ = true;
  } else if (kind == "gpt2") {
    model_ = Model::kBpe;
    pre_ = file.get_string("tokenizer.ggml.pre", "default");
    PreTokenizerRules rules = rules_for(pre_);
    splitter_ = std::make_unique<RegexSplitter>(rules.patterns);
    clean_spaces_ = rules.clean_spaces;
    ignore_merges_ = rules.ignore_merges;
    add_bos_ = rules.add_bos;
    const GgufValue* merges = file.find("tokenizer.ggml.merges");
    if (!merges || merges->type != GgufType::kArray || merges->elem_type != GgufType::kString)
      fail("tokenizer.ggml.merges is missing or not a string array");
    merge_ranks_.reserve(merges->strings.size());
    for (size_t i = 0; i < merges->strings.size(); ++i) {
      const std::string_view m = merges->strings[i];
      const size_t space = m.find(' ', 1);
      if (space == std::string_view::npos) fail("tokenizer.ggml.merges[", i, "] has no space");
      std::string key(m);
      key[space] = '\0';
      merge_ranks_.emplace(std::move(key), int(i));
    }
  } else {
    fail("unsupported tokenizer \"", kind, "\" (Muse reads gpt2 and llama tokenizers)");
  }

  auto token_id = [&](const char* key, int32_t fallback) {
    const int64_t id = file.get_int(key, fallback);
    return id >= 0 && id < int64_t(n) ? int32_t(id) : fallback >= 0 && fallback < int64_t(n) ? fallback : -1;
  };
  bos_ = token_id("tokenizer.ggml.bos_token_id", bos_);
  eos_ = token_id("tokenizer.ggml.eos_token_id", eos_);
  unk_ = token_id("tokenizer.ggml.unknown_token_id", unk_);
  const int32_t eot = token_id("tokenizer.ggml.eot_token_id", -1);
  const int32_t eom = token_id("tokenizer.ggml.eom_token_id", -1);
  if (const GgufValue* v = file.find("tokenizer.ggml.add_bos_token")) add_bos_ = v->u != 0;
  if (const GgufValue* v = file.find("tokenizer.ggml.add_eos_token")) add_eos_ = v->u != 0;
  if (const GgufValue* v = file.find("tokenizer.ggml.add_space_prefix"))
    add_space_prefix_ = v->u != 0;
  if ((add_bos_ && bos_ < 0) || (add_eos_ && eos_ < 0))
    fail("the tokenizer asks for a BOS/EOS token it does not define");

  // End of generation: the declared ids plus the end-of-turn tokens chat models use (the same
  // list llama.cpp recognises), which are control tokens whatever the file says.
  static const char* const kEndOfTurn[] = {
      "<|eot_id|>", "<|im_end|>",      "<|end|>",       "<|return|>",   "<|call|>",
      "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",   "<EOT>",        "_<EOT>",
      "<|end_of_text|>", "<end_of_utterance>", "<|end▁of▁sentence|>"};
  for (const char* text : kEndOfTurn) {
    const int32_t id = find(text);
    if (id < 0) continue;
    eog_.push_back(id);
    if (!is_special_type(tokens_[size_t(id)].type)) tokens_[size_t(id)].type = TokenType::kControl;
  }
  for (int32_t id : {eos_, eot, eom})
    if (id >= 0 && !is_eog(id)) eog_.push_back(id);
  std::sort(eog_.begin(), eog_.end());

  // Phi-3's added tokens strip the whitespace that follows them (rstrip in its tokenizer
  // config), except the ones named below.
  std::string name = file.get_string("general.name");
  std::transform(name.begin(), name.end(), name.begin(), [](char c) { return char(std::tolower(uint8_t(c))); });
  const bool phi3 = name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos;

  for (size_t i = 0; i < n; ++i) {
    Token& tok = tokens_[i];
    if (!is_special_type(tok.type)) continue;
    special_by_length_.push_back(int32_t(i));
    if (phi3) tok.rstrip = tok.text != "<unk>" && tok.text != "<s>" && tok.text != "<|endoftext|>";
  }
  if (phi3)
    if (int32_t id = find("</s>"); id >= 0) tokens_[size_t(id)].rstrip = true;
  std::stable_sort(special_by_length_.begin(), special_by_length_.end(), [&](int32_t a, int32_t b) {
    return tokens_[size_t(a)].text.size() > tokens_[size_t(b)].text.size();
  });

  pieces_.reserve(n);
  for (size_t i = 0; i < n; ++i) pieces_.push_back(make_piece(int32_t(i)));
}

bool Tokenizer::is_eog(int32_t id) const { return std::binary_search(eog_.begin(), eog_.end(), id); }

int32_t Tokenizer::find(std::string_view text) const {
  const auto it = token_ids_.find(std::string(text));
  return it == token_ids_.end() ? -1 : it->second;
}

int Tokenizer::bpe_rank(std::string_view left, std::string_view right) const {
  std::string key;
  key.reserve(left.size() + right.size() + 1);
  ((key += left) += '\0') += right;
  const auto it = merge_ranks_.find(key);
  return it == merge_ranks_.end() ? -1 : it->second;
}

int32_t Tokenizer::byte_token(uint8_t byte) const {
  static const char* hex = "0123456789ABCDEF";
  const char name[7] = {'<', '0', 'x', hex[byte >> 4], hex[byte & 15], '>', 0};
  if (int32_t id = find(name); id >= 0) return id;
  return find(std::string(1, char(byte)));
}

std::vector<Tokenizer::Fragment> Tokenizer::partition_special(std::string_view text,
                                                              bool parse_special) const {
  std::vector<Fragment> fragments;
  if (!text.empty()) fragments.push_back({-1, text});  // "" gets no SentencePiece space prefix
  for (int32_t id : special_by_length_) {
    const Token& tok = tokens_[size_t(id)];
    if (!parse_special && tok.type != TokenType::kUserDefined) continue;
    std::vector<Fragment> next;
    for (const Fragment& f : fragments) {
      if (f.token >= 0 || f.text.find(tok.text) == std::string_view::npos) {
        next.push_back(f);
        continue;
      }
      std::string_view rest = f.text;
      for (size_t hit; (hit = rest.find(tok.text)) != std::string_view::npos;) {
        if (hit > 0) next.push_back({-1, rest.substr(0, hit)});
        next.push_back({id, tok.text});
        rest.remove_prefix(hit + tok.text.size());
        if (tok.rstrip)
          while (!rest.empty() && is_space(rest.front())) rest.remove_prefix(1);
      }
      if (!rest.empty()) next.push_back({-1, rest});
    }
    fragments = std::move(next);
  }
  return fragments;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  std::vector<int32_t> out;
  if (options.add_special && add_bos_) out.push_back(bos_);
  bool after_special = true;  // SentencePiece adds its space prefix at the start and after specials
  for (const Fragment& f : partition_special(text, options.parse_special)) {
    if (f.token >= 0) {
      out.push_back(f.token);
      after_special = true;
    } else if (model_ == Model::kSentencePiece) {
      std::string piece = add_space_prefix_ && after_special ? " " : "";
      piece += f.text;
      encode_spm(replace_all(piece, " ", kSpmSpace), out);
      after_special = false;
    } else {
      encode_bpe(f.text, out);
    }
  }
  if (options.add_special && add_eos_) out.push_back(eos_);
  return out;
}

void Tokenizer::encode_bpe(std::string_view text, std::vector<int32_t>& out) const {
  std::string encoded;
  for (std::string_view word : splitter_->split(text)) {
    encoded.clear();
    for (char c : word) encoded += byte_to_gpt2_char(uint8_t(c));
    bpe_word(encoded, out);
  }
}

void Tokenizer::bpe_word(std::string_view word, std::vector<int32_t>& out) const {
  if (ignore_merges_)
    if (int32_t id = find(word); id >= 0) {
      out.push_back(id);
      return;
    }
  std::vector<Symbol> symbols = utf8_symbols(word);
  merge_symbols(word, symbols, [&](std::string_view l, std::string_view r, float* priority) {
    const int rank = bpe_rank(l, r);
    *priority = -float(rank);  // lower rank merges first
    return rank >= 0;
  });
  for (const Symbol& s : symbols) {
    if (s.len == 0) continue;
    const std::string_view text = word.substr(s.start, s.len);
    if (int32_t id = find(text); id >= 0) {
      out.push_back(id);
      continue;
    }
    // Not in the vocabulary (an incomplete vocabulary): fall back to its characters.
    for (const Symbol& c : utf8_symbols(text)) {
      const int32_t id = find(text.substr(c.start, c.len));
      if (id >= 0) out.push_back(id);
      else if (unk_ >= 0) out.push_back(unk_);
    }
  }
}

void Tokenizer::encode_spm(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<Symbol> symbols = utf8_symbols(text);
  merge_symbols(text, symbols, [&](std::string_view l, std::string_view r, float* priority) {
    // Only adjacent symbols are ever merged, so l and r are contiguous in text.
    const int32_t id = find(std::string_view(l.data(), l.size() + r.size()));
    if (id < 0) return false;
    *priority = tokens_[size_t(id)].score;
    return true;
  });
  for (const Symbol& s : symbols) {
    if (s.len == 0) continue;
    const std::string_view piece = text.substr(s.start, s.len);
    if (int32_t id = find(piece); id >= 0) {
      out.push_back(id);
      continue;
    }
    for (char c : piece) {
      const int32_t id = byte_token(uint8_t(c));
      if (id >= 0) out.push_back(id);
      else if (unk_ >= 0) out.push_back(unk_);
    }
  }
}

std::string Tokenizer::make_piece(int32_t id) const {
  const Token& tok = tokens_[size_t(id)];
  switch (tok.type) {
    case TokenType::kControl:
    case TokenType::kUnknown:
    case TokenType::kUserDefined:
      return tok.text;
    case TokenType::kByte:
      if (tok.text.size() == 6 && tok.text.compare(0, 3, "<0x") == 0 && tok.text[5] == '>') {
        char* end = nullptr;
        const std::string hex = tok.text.substr(3, 2);
        const long byte = std::strtol(hex.c_str(), &end, 16);
        if (end == hex.c_str() + 2) return std::string(1, char(byte));
      }
      return tok.text;  // a byte token not named <0xXX>: its text
    case TokenType::kNormal:
    case TokenType::kUnused:
    case TokenType::kUndefined:
      break;
  }
  if (model_ == Model::kSentencePiece) return replace_all(tok.text, kSpmSpace, " ");
  // Byte-level BPE: every character of the text stands for one byte.
  std::string bytes;
  const std::string& t = tok.text;
  for (size_t at = 0; at < t.size();) {
    const int len = std::min<int>(utf8_sequence_length(uint8_t(t[at])), int(t.size() - at));
    uint32_t cp = uint8_t(t[at]);
    if (len > 1) {
      cp &= 0xFF >> (len + 1);
      for (int k = 1; k < len; ++k) cp = (cp << 6) | (uint8_t(t[at + size_t(k)]) & 0x3F);
    }
    uint8_t byte;
    if (gpt2_char_to_byte(cp, &byte)) bytes += char(byte);
    else bytes.append(t, at, size_t(len));  // not a byte character: keep it as text
    at += size_t(len);
  }
  return bytes;
}

std::string_view Tokenizer::piece(int32_t id, bool render_special) const {
  if (id < 0 || id >= n_vocab()) fail("token id ", id, " is outside the vocabulary (0..", n_vocab() - 1, ")");
  const TokenType t = tokens_[size_t(id)].type;
  if (!render_special && (t == TokenType::kControl || t == TokenType::kUnknown)) return {};
  return pieces_[size_t(id)];
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool render_special) const {
  std::string text;
  // SentencePiece's space prefix belongs to the encoding, not to the text: drop it from the
  // first text token (after BOS and other control tokens).
  bool strip_prefix = model_ == Model::kSentencePiece && add_space_prefix_;
  for (int32_t id : ids) {
    std::string_view p = piece(id, render_special);
    if (strip_prefix && type(id) != TokenType::kControl) {
      if (!p.empty() && p[0] == ' ') p.remove_prefix(1);
      strip_prefix = false;
    }
    text += p;
  }
  if (!clean_spaces_ || model_ != Model::kBpe) return text;
  // Hugging Face's clean_up_tokenization_spaces: " ." -> ".", " 's" -> "'s", " ' " -> "'"...
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == ' ' && i + 1 < text.size()) {
      const char x = text[i + 1];
      if (x == '?' || x == '!' || x == '.' || x == ',') continue;
      if (x == '\'' && i + 2 < text.size()) {
        const char y = text[i + 2];
        if (y == ' ') {  // " ' " -> "'"
          out += '\'';
          i += 2;
          continue;
        }
        if (y == 's' || y == 'm') continue;
        if (i + 3 < text.size() && ((y == 'r' && text[i + 3] == 'e') || (y == 'v' && text[i + 3] == 'e')))
          continue;
      }
    }
    out += c;
  }
  return out;
}

std::string StreamDecoder::push(int32_t id) {
  pending_ += tokenizer_.piece(id, render_special_);
  std::string ready;
  pending_.erase(0, append_valid_utf8(pending_, ready, /*final=*/false));
  return ready;
}

std::string StreamDecoder::flush() {
  std::string rest;
  append_valid_utf8(pending_, rest, /*final=*/true);
  pending_.clear();
  return rest;
}

}  // namespace muse
