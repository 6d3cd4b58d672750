#include "chat/jinja_text.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "util/utf8.h"

namespace muse::jinja::text {

std::u32string decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    int n = 0;
    char32_t cp = 0;
    if (c < 0x80) {
      out += char32_t(c);
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      n = 1, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3, cp = c & 0x07;
    } else {
      n = -1;
    }
    bool ok = n > 0 && i + n < s.size();
    if (ok) {
      for (int k = 1; k <= n; ++k) {
        const unsigned char cc = s[i + k];
        if ((cc & 0xc0) != 0x80) {
          ok = false;
          break;
        }
        cp = (cp << 6) | (cc & 0x3f);
      }
    }
    // Overlong forms and surrogates are invalid too.
    if (ok && ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
               cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000)))
      ok = false;
    if (ok) {
      out += cp;
      i += n + 1;
    } else {
      out += char32_t(0xdc00 + c);
      ++i;
    }
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp >= 0xdc80 && cp <= 0xdcff) out += char(cp - 0xdc00);  // an undecodable byte, restored
  else muse::append_utf8(out, uint32_t(cp));
}

std::string encode(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

bool is_ascii(std::string_view s) {
  for (unsigned char c : s)
    if (c >= 0x80) return false;
  return true;
}

size_t length(std::string_view s) {
  if (is_ascii(s)) return s.size();
  return decode(s).size();
}

bool is_space(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
  return c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 ||
         c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

char32_t to_lower(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  if (c >= 0xc0 && c <= 0xde && c != 0xd7) return c + 32;
  if (c >= 0x100 && c <= 0x17f) {
    if (c == 0x130) return 'i';
    if (c == 0x178) return 0xff;
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e)) return c % 2 ? c + 1 : c;
    if ((c >= 0x100 && c <= 0x137) || (c >= 0x14a && c <= 0x177)) return c % 2 ? c : c + 1;
    return c;
  }
  if (c >= 0x391 && c <= 0x3a9 && c != 0x3a2) return c + 32;
  if (c == 0x386) return 0x3ac;
  if (c >= 0x388 && c <= 0x38a) return c + 37;
  if (c == 0x38c) return 0x3cc;
  if (c == 0x38e || c == 0x38f) return c + 63;
  if (c >= 0x410 && c <= 0x42f) return c + 32;
  if (c >= 0x400 && c <= 0x40f) return c + 80;
  if ((c >= 0x460 && c <= 0x481) || (c >= 0x48a && c <= 0x4bf) || (c >= 0x4d0 && c <= 0x52f))
    return c % 2 ? c : c + 1;
  if (c >= 0x4c1 && c <= 0x4ce) return c % 2 ? c + 1 : c;
  if (c >= 0x531 && c <= 0x556) return c + 48;
  if (c >= 0xff21 && c <= 0xff3a) return c + 32;
  return c;
}

char32_t to_upper(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') ? c - 32 : c;
  if (c >= 0xe0 && c <= 0xfe && c != 0xf7) return c - 32;
  if (c == 0xff) return 0x178;
  if (c == 0xb5) return 0x39c;
  if (c >= 0x100 && c <= 0x17f) {
    if (c == 0x131) return 'I';
    if (c == 0x17f) return 'S';
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e)) return c % 2 ? c : c - 1;
    if ((c >= 0x100 && c <= 0x137) || (c >= 0x14a && c <= 0x177)) return c % 2 ? c - 1 : c;
    return c;
  }
  if (c >= 0x3b1 && c <= 0x3c9 && c != 0x3c2) return c - 32;
  if (c == 0x3c2) return 0x3a3;
  if (c == 0x3ac) return 0x386;
  if (c >= 0x3ad && c <= 0x3af) return c - 37;
  if (c == 0x3cc) return 0x38c;
  if (c == 0x3cd || c == 0x3ce) return c - 63;
  if (c >= 0x430 && c <= 0x44f) return c - 32;
  if (c >= 0x450 && c <= 0x45f) return c - 80;
  if ((c >= 0x460 && c <= 0x481) || (c >= 0x48a && c <= 0x4bf) || (c >= 0x4d0 && c <= 0x52f))
    return c % 2 ? c - 1 : c;
  if (c >= 0x4c1 && c <= 0x4ce) return c % 2 ? c : c - 1;
  if (c >= 0x561 && c <= 0x586) return c - 48;
  if (c >= 0xff41 && c <= 0xff5a) return c - 32;
  return c;
}

bool is_lower(char32_t c) {
  return to_upper(c) != c || c == 0xdf || c == 0x138 || c == 0x149 || c == 0xaa || c == 0xba;
}
bool is_upper(char32_t c) { return to_lower(c) != c; }
bool is_digit(char32_t c) {
  return (c >= '0' && c <= '9') || (c >= 0x660 && c <= 0x669) || (c >= 0x6f0 && c <= 0x6f9) ||
         (c >= 0x966 && c <= 0x96f) || (c >= 0xff10 && c <= 0xff19) || c == 0xb2 || c == 0xb3 ||
         c == 0xb9;
}
bool is_alpha(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  if (is_lower(c) || is_upper(c)) return true;
  return (c >= 0xc0 && c <= 0x24f && c != 0xd7 && c != 0xf7) || (c >= 0x370 && c <= 0x3ff) ||
         (c >= 0x400 && c <= 0x52f) || (c >= 0x5d0 && c <= 0x5ea) || (c >= 0x620 && c <= 0x64a) ||
         (c >= 0x904 && c <= 0x939) || (c >= 0x3041 && c <= 0x30ff) ||
         (c >= 0x3400 && c <= 0x4dbf) || (c >= 0x4e00 && c <= 0x9fff) ||
         (c >= 0xac00 && c <= 0xd7a3);
}
bool is_alnum(char32_t c) { return is_alpha(c) || is_digit(c); }

namespace {

template <typename Fn>
std::string map_chars(std::string_view s, Fn fn) {
  std::string out;
  out.reserve(s.size());
  if (is_ascii(s)) {
    for (char c : s) out += char(fn(char32_t(c)));
    return out;
  }
  for (char32_t c : decode(s)) append_utf8(out, fn(c));
  return out;
}

bool is_cased(char32_t c) { return is_lower(c) || is_upper(c); }

// Python's str.upper() maps ß to "SS"; everything else here maps one to one.
void append_upper(std::string& out, char32_t c) {
  if (c == 0xdf) {
    out += "SS";
  } else {
    append_utf8(out, to_upper(c));
  }
}

}  // namespace

std::string lower(std::string_view s) { return map_chars(s, to_lower); }

std::string upper(std::string_view s) {
  if (is_ascii(s)) return map_chars(s, to_upper);
  std::string out;
  for (char32_t c : decode(s)) append_upper(out, c);
  return out;
}

std::string capitalize(std::string_view s) {
  std::string out;
  bool first = true;
  for (char32_t c : decode(s)) {
    if (first)
      append_upper(out, c);
    else
      append_utf8(out, to_lower(c));
    first = false;
  }
  return out;
}

std::string py_title(std::string_view s) {
  std::string out;
  bool previous_cased = false;
  for (char32_t c : decode(s)) {
    if (previous_cased)
      append_utf8(out, to_lower(c));
    else
      append_upper(out, c);
    previous_cased = is_cased(c);
  }
  return out;
}

std::string jinja_title(std::string_view s) {
  std::string out;
  bool word_start = true;
  for (char32_t c : decode(s)) {
    const bool separator = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || is_space(c);
    if (separator) {
      append_utf8(out, c);
      word_start = true;
    } else {
      if (word_start)
        append_upper(out, c);
      else
        append_utf8(out, to_lower(c));
      word_start = false;
    }
  }
  return out;
}

std::string swapcase(std::string_view s) {
  return map_chars(s, [](char32_t c) { return is_upper(c) ? to_lower(c) : to_upper(c); });
}

std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left,
                  bool right) {
  if (is_ascii(s) && (!chars || is_ascii(*chars))) {
    auto strip_it = [&](char c) {
      return chars ? chars->find(c) != std::string::npos : is_space(char32_t(c));
    };
    size_t b = 0, e = s.size();
    if (left)
      while (b < e && strip_it(s[b])) ++b;
    if (right)
      while (e > b && strip_it(s[e - 1])) --e;
    return std::string(s.substr(b, e - b));
  }
  const std::u32string u = decode(s);
  const std::u32string set = chars ? decode(*chars) : std::u32string();
  auto strip_it = [&](char32_t c) {
    return chars ? set.find(c) != std::u32string::npos : is_space(c);
  };
  size_t b = 0, e = u.size();
  if (left)
    while (b < e && strip_it(u[b])) ++b;
  if (right)
    while (e > b && strip_it(u[e - 1])) --e;
  return encode(std::u32string_view(u).substr(b, e - b));
}

std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep,
                               int64_t maxsplit, bool from_right) {
  std::vector<std::string> parts;
  if (maxsplit < 0) maxsplit = INT64_MAX;
  if (sep) {
    if (!from_right) {
      size_t pos = 0;
      while (maxsplit-- > 0) {
        const size_t hit = s.find(*sep, pos);
        if (hit == std::string_view::npos) break;
        parts.emplace_back(s.substr(pos, hit - pos));
        pos = hit + sep->size();
      }
      parts.emplace_back(s.substr(pos));
      return parts;
    }
    size_t end = s.size();
    while (maxsplit-- > 0 && end >= sep->size()) {
      const size_t hit = s.rfind(*sep, end - sep->size());
      if (hit == std::string_view::npos) break;
      parts.emplace_back(s.substr(hit + sep->size(), end - hit - sep->size()));
      end = hit;
    }
    parts.emplace_back(s.substr(0, end));
    std::reverse(parts.begin(), parts.end());
    return parts;
  }
  // Whitespace runs; with a limit the rest stays whole (its far-side whitespace kept).
  const std::u32string u = decode(s);
  if (!from_right) {
    size_t i = 0;
    while (true) {
      while (i < u.size() && is_space(u[i])) ++i;
      if (i == u.size()) break;
      if (maxsplit-- <= 0) {
        size_t e = u.size();
        while (e > i && is_space(u[e - 1])) --e;
        parts.push_back(encode(std::u32string_view(u).substr(i, e - i)));
        break;
      }
      size_t j = i;
      while (j < u.size() && !is_space(u[j])) ++j;
      parts.push_back(encode(std::u32string_view(u).substr(i, j - i)));
      i = j;
    }
    return parts;
  }
  size_t e = u.size();
  while (true) {
    while (e > 0 && is_space(u[e - 1])) --e;
    if (e == 0) break;
    if (maxsplit-- <= 0) {
      size_t b = 0;
      while (b < e && is_space(u[b])) ++b;
      parts.push_back(encode(std::u32string_view(u).substr(b, e - b)));
      break;
    }
    size_t b = e;
    while (b > 0 && !is_space(u[b - 1])) --b;
    parts.push_back(encode(std::u32string_view(u).substr(b, e - b)));
    e = b;
  }
  std::reverse(parts.begin(), parts.end());
  return parts;
}

std::vector<std::string> splitlines(std::string_view s, bool keepends) {
  std::vector<std::string> lines;
  const std::u32string u = decode(s);
  size_t start = 0, i = 0;
  while (i < u.size()) {
    const char32_t c = u[i];
    const bool brk = c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || c == 0x1c || c == 0x1d ||
                     c == 0x1e || c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!brk) {
      ++i;
      continue;
    }
    size_t eol = i + 1;
    if (c == '\r' && eol < u.size() && u[eol] == '\n') ++eol;
    lines.push_back(encode(std::u32string_view(u).substr(start, (keepends ? eol : i) - start)));
    start = i = eol;
  }
  if (start < u.size()) lines.push_back(encode(std::u32string_view(u).substr(start)));
  return lines;
}

std::string replace(std::string_view s, std::string_view from, std::string_view to, int64_t count) {
  if (count < 0) count = INT64_MAX;
  std::string out;
  if (from.empty()) {
    // Python inserts `to` before every character and at the end.
    const std::u32string u = decode(s);
    for (char32_t c : u) {
      if (count-- > 0) out += to;
      append_utf8(out, c);
    }
    if (count > 0) out += to;
    return out;
  }
  size_t pos = 0;
  while (count-- > 0) {
    const size_t hit = s.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s.substr(pos));
  return out;
}

namespace {

// Python's adjustment of start/end arguments of find() and count().
void clamp_range(int64_t len, int64_t& start, int64_t& end) {
  if (end > len) end = len;
  if (end < 0) end = std::max<int64_t>(end + len, 0);
  if (start < 0) start = std::max<int64_t>(start + len, 0);
}

}  // namespace

int64_t find(std::string_view s, std::string_view sub, int64_t start, int64_t end, bool last) {
  const std::u32string u = decode(s), w = decode(sub);
  const int64_t len = int64_t(u.size());
  clamp_range(len, start, end);
  if (start > len || end - start < int64_t(w.size())) return -1;
  const std::u32string_view window =
      std::u32string_view(u).substr(size_t(start), size_t(end - start));
  const size_t hit = last ? window.rfind(w) : window.find(w);
  return hit == std::u32string_view::npos ? -1 : start + int64_t(hit);
}

int64_t count(std::string_view s, std::string_view sub, int64_t start, int64_t end) {
  const std::u32string u = decode(s), w = decode(sub);
  const int64_t len = int64_t(u.size());
  clamp_range(len, start, end);
  if (start > len || end < start) return 0;
  if (w.empty()) return end - start + 1;
  const std::u32string_view window =
      std::u32string_view(u).substr(size_t(start), size_t(end - start));
  int64_t n = 0;
  for (size_t pos = window.find(w); pos != std::u32string_view::npos;
       pos = window.find(w, pos + w.size()))
    ++n;
  return n;
}

std::vector<int64_t> slice_positions(int64_t len, std::optional<int64_t> start,
                                     std::optional<int64_t> stop, int64_t step) {
  int64_t b, e;
  if (step > 0) {
    b = start ? *start : 0;
    e = stop ? *stop : len;
    if (b < 0) b = std::max<int64_t>(b + len, 0);
    if (e < 0) e = std::max<int64_t>(e + len, 0);
    b = std::min(b, len);
    e = std::min(e, len);
  } else {
    b = start ? *start : len - 1;
    e = stop ? *stop : -1 - len;  // "before the first item"
    if (b < 0) b = std::max<int64_t>(b + len, -1);
    if (e < 0) e = std::max<int64_t>(e + len, -1);
    b = std::min(b, len - 1);
    e = std::min(e, len - 1);
  }
  std::vector<int64_t> positions;
  if (step > 0)
    for (int64_t i = b; i < e; i += step) positions.push_back(i);
  else
    for (int64_t i = b; i > e; i += step) positions.push_back(i);
  return positions;
}

std::string slice(std::string_view s, std::optional<int64_t> start, std::optional<int64_t> stop,
                  std::optional<int64_t> step) {
  const int64_t st = step ? *step : 1;
  if (is_ascii(s) && st == 1) {
    const auto pos = slice_positions(int64_t(s.size()), start, stop, 1);
    return pos.empty() ? std::string() : std::string(s.substr(size_t(pos.front()), pos.size()));
  }
  const std::u32string u = decode(s);
  std::string out;
  for (int64_t i : slice_positions(int64_t(u.size()), start, stop, st))
    append_utf8(out, u[size_t(i)]);
  return out;
}

std::optional<std::string> at(std::string_view s, int64_t i) {
  const std::u32string u = decode(s);
  const int64_t len = int64_t(u.size());
  if (i < 0) i += len;
  if (i < 0 || i >= len) return std::nullopt;
  std::string out;
  append_utf8(out, u[size_t(i)]);
  return out;
}

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

namespace {
std::string repeat(std::string_view fill, int64_t n) {
  std::string out;
  for (int64_t i = 0; i < n; ++i) out += fill;
  return out;
}
}  // namespace

std::string center(std::string_view s, int64_t width, std::string_view fill) {
  const int64_t len = int64_t(length(s));
  if (width <= len) return std::string(s);
  const int64_t margin = width - len;
  const int64_t left = margin / 2 + (margin & width & 1);
  return repeat(fill, left) + std::string(s) + repeat(fill, margin - left);
}

std::string ljust(std::string_view s, int64_t width, std::string_view fill) {
  const int64_t len = int64_t(length(s));
  return width <= len ? std::string(s) : std::string(s) + repeat(fill, width - len);
}

std::string rjust(std::string_view s, int64_t width, std::string_view fill) {
  const int64_t len = int64_t(length(s));
  return width <= len ? std::string(s) : repeat(fill, width - len) + std::string(s);
}

namespace {

// Removes Python's digit-group underscores ("1_000"); nothing when they are misplaced.
std::optional<std::string> without_underscores(std::string_view s, bool (*is_digit_char)(char)) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '_') {
      out += s[i];
      continue;
    }
    if (i == 0 || i + 1 == s.size() || !is_digit_char(s[i - 1]) || !is_digit_char(s[i + 1]))
      return std::nullopt;
  }
  return out;
}

std::string_view trim_space(std::string_view s) {
  // Python's int() and float() strip Unicode whitespace too; ASCII covers the practical cases.
  while (!s.empty() && is_space(char32_t((unsigned char)s.front()))) s.remove_prefix(1);
  while (!s.empty() && is_space(char32_t((unsigned char)s.back()))) s.remove_suffix(1);
  return s;
}

bool is_dec_char(char c) { return c >= '0' && c <= '9'; }

}  // namespace

std::optional<int64_t> parse_int(std::string_view s, int base) {
  s = trim_space(s);
  bool negative = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  auto has_prefix = [&](char p) {
    return s.size() >= 2 && s[0] == '0' && (s[1] == p || s[1] == char(p - 32));
  };
  if (base == 0) {
    if (has_prefix('x'))
      base = 16;
    else if (has_prefix('o'))
      base = 8;
    else if (has_prefix('b'))
      base = 2;
    else
      base = 10;
    if (base == 10 && s.size() > 1 && s[0] == '0' &&
        s.find_first_not_of("0_") != std::string_view::npos)
      return std::nullopt;  // "012" is not an int literal
  }
  if ((base == 16 && has_prefix('x')) || (base == 8 && has_prefix('o')) ||
      (base == 2 && has_prefix('b'))) {
    s.remove_prefix(2);
    if (!s.empty() && s[0] == '_') s.remove_prefix(1);
  }
  if (s.empty() || base < 2 || base > 36) return std::nullopt;
  auto digits = without_underscores(s, [](char c) { return std::isalnum((unsigned char)c) != 0; });
  if (!digits || digits->empty()) return std::nullopt;
  uint64_t v = 0;
  for (char c : *digits) {
    int d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'a' && c <= 'z')
      d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'Z')
      d = c - 'A' + 10;
    else
      return std::nullopt;
    if (d >= base) return std::nullopt;
    if (v > (uint64_t(INT64_MAX) + 1 - d) / uint64_t(base)) return std::nullopt;  // overflow
    v = v * base + d;
  }
  if (!negative && v > uint64_t(INT64_MAX)) return std::nullopt;
  return negative ? int64_t(0 - v) : int64_t(v);
}

std::optional<double> parse_float(std::string_view s) {
  s = trim_space(s);
  std::string_view body = s;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) body.remove_prefix(1);
  std::string lowered;
  for (char c : body) lowered += char(std::tolower((unsigned char)c));
  const bool negative = !s.empty() && s[0] == '-';
  if (lowered == "inf" || lowered == "infinity") return negative ? -HUGE_VAL : HUGE_VAL;
  if (lowered == "nan") return std::nan("");
  // [digits][.digits][e[+-]digits] with at least one digit in the mantissa.
  size_t i = 0;
  bool mantissa_digits = false;
  auto run = [&] {
    const size_t b = i;
    while (i < lowered.size() && (is_dec_char(lowered[i]) || lowered[i] == '_')) ++i;
    return i > b;
  };
  mantissa_digits |= run();
  if (i < lowered.size() && lowered[i] == '.') {
    ++i;
    mantissa_digits |= run();
  }
  if (!mantissa_digits) return std::nullopt;
  if (i < lowered.size() && lowered[i] == 'e') {
    ++i;
    if (i < lowered.size() && (lowered[i] == '+' || lowered[i] == '-')) ++i;
    if (!run()) return std::nullopt;
  }
  if (i != lowered.size()) return std::nullopt;
  // Underscores only between digits: check each run separately.
  for (size_t k = 0; k < lowered.size(); ++k)
    if (lowered[k] == '_' && (k == 0 || k + 1 == lowered.size() || !is_dec_char(lowered[k - 1]) ||
                              !is_dec_char(lowered[k + 1])))
      return std::nullopt;
  std::string clean(s.substr(0, s.size() - body.size()));
  for (char c : body)
    if (c != '_') clean += c;
  errno = 0;
  return std::strtod(clean.c_str(), nullptr);
}

}  // namespace muse::jinja::text
