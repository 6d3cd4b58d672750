#include "util/utf8.h"

namespace muse {

int utf8_sequence_length(uint8_t b) {
  if (b < 0x80) return 1;
  if ((b & 0xE0) == 0xC0) return 2;
  if ((b & 0xF0) == 0xE0) return 3;
  if ((b & 0xF8) == 0xF0) return 4;
  return 1;
}

size_t append_valid_utf8(std::string_view in, std::string& out, bool final) {
  size_t at = 0;
  while (at < in.size()) {
    const uint8_t lead = uint8_t(in[at]);
    const int len = utf8_sequence_length(lead);
    if (len == 1) {
      if (lead < 0x80) out += char(lead);
      else out += "\xef\xbf\xbd";  // stray continuation or invalid lead byte
      ++at;
      continue;
    }
    // Check the continuation bytes that are there, and the code point range when complete
    // (no overlong forms, no surrogates, nothing above U+10FFFF).
    size_t have = 1;
    while (have < size_t(len) && at + have < in.size() && (uint8_t(in[at + have]) & 0xC0) == 0x80) ++have;
    if (have < size_t(len) && at + have == in.size() && !final) break;  // wait for the rest
    bool ok = have == size_t(len);
    if (ok) {
      uint32_t cp = lead & (0xFF >> (len + 1));
      for (int k = 1; k < len; ++k) cp = (cp << 6) | (uint8_t(in[at + size_t(k)]) & 0x3F);
      static const uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
      ok = cp >= kMin[len] && cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF);
    }
    if (ok) {
      out.append(in.substr(at, size_t(len)));
      at += size_t(len);
    } else {
      out += "\xef\xbf\xbd";
      ++at;  // resynchronise on the next byte
    }
  }
  return at;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

}  // namespace muse
