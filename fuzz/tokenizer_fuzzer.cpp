// libFuzzer target for the tokenizers: any bytes (valid UTF-8 or not, special tokens or not)
// encode with a byte-level BPE vocabulary and a SentencePiece one; BPE gives the bytes back
// exactly, and the streaming decoder's text is always valid UTF-8.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "io/gguf.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace {

struct Vocab {
  std::string bytes;  // the GGUF file, kept alive for the tokenizer's views
  std::unique_ptr<muse::GgufFile> file;
  std::unique_ptr<muse::Tokenizer> tokenizer;
};

Vocab make_vocab(bool sentencepiece) {
  muse::GgufWriter w;
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::vector<float> scores;
  std::vector<std::string> merges;
  if (sentencepiece) {
    tokens = {"<unk>", "<s>", "</s>"};
    types = {2, 3, 3};
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      tokens.push_back(name);
      types.push_back(6);
    }
    for (const char* t : {"\xe2\x96\x81", "a", "b", "\xe2\x96\x81" "a", "ab", "\xc3\xa9", "\xe2\x96\x81" "ab"}) {
      tokens.push_back(t);
      types.push_back(1);
    }
    for (size_t i = 0; i < tokens.size(); ++i) scores.push_back(-float(i % 7));
  } else {
    for (int b = 0; b < 256; ++b) tokens.push_back(muse::byte_to_gpt2_char(uint8_t(b)));
    const std::string sp = muse::byte_to_gpt2_char(' ');
    merges = {"a b", sp + " a", sp + "a b", "1 2", "\xc3\x83 \xc2\xa9"};
    for (const std::string& m : merges) {
      const size_t space = m.find(' ', 1);
      tokens.push_back(m.substr(0, space) + m.substr(space + 1));
    }
    types.assign(tokens.size(), 1);
    tokens.push_back("<|im_start|>");
    types.push_back(3);
    tokens.push_back("<tool>");
    types.push_back(4);
  }
  w.set_string("tokenizer.ggml.model", sentencepiece ? "llama" : "gpt2");
  if (!sentencepiece) {
    w.set_string("tokenizer.ggml.pre", "qwen2");
    w.set_string_array("tokenizer.ggml.merges", merges);
  } else {
    w.set_f32_array("tokenizer.ggml.scores", scores);
  }
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_i32_array("tokenizer.ggml.token_type", types);
  Vocab v;
  v.bytes = w.to_bytes();
  v.file = muse::GgufFile::from_memory(reinterpret_cast<const uint8_t*>(v.bytes.data()), v.bytes.size());
  v.tokenizer = muse::Tokenizer::from_gguf(*v.file);
  return v;
}

bool valid_utf8(std::string_view s) {
  std::string copy;
  return muse::append_valid_utf8(s, copy, true) == s.size() && copy == s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Vocab bpe = make_vocab(false);
  static const Vocab spm = make_vocab(true);
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (const Vocab* v : {&bpe, &spm}) {
    for (bool special : {false, true}) {
      const std::vector<int32_t> ids = v->tokenizer->encode(text, {.add_special = true, .parse_special = special});
      muse::StreamDecoder stream(*v->tokenizer);
      std::string streamed;
      for (int32_t id : ids) {
        const std::string piece = stream.push(id);
        if (!valid_utf8(piece)) __builtin_trap();
        streamed += piece;
      }
      streamed += stream.flush();
      std::string raw;
      for (int32_t id : ids) raw += v->tokenizer->piece(id);
      if (v == &bpe && raw != text) __builtin_trap();  // byte-level BPE loses nothing
      (void)v->tokenizer->decode(ids);
    }
  }
  return 0;
}
