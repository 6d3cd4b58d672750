// Jinja's lexer as configured by Hugging Face: trim_blocks (one newline after a block or
// comment tag is dropped), lstrip_blocks (spaces and tabs before a block or comment tag at the
// start of a line are dropped), "-" and "+" whitespace control, raw blocks, and comments.
#include <cstring>

#include "chat/jinja_internal.h"
#include "chat/jinja_text.h"

namespace muse::jinja {
namespace {

[[noreturn]] void syntax_error(int line, const std::string& msg) {
  fail("template syntax error (line ", line, "): ", msg);
}

bool is_py_space_at(std::string_view s, size_t i, size_t* len) {
  const unsigned char c = s[i];
  if (c < 0x80) {
    *len = 1;
    return text::is_space(c);
  }
  // Decode one multi-byte character to check for Unicode whitespace.
  size_t n = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 1;
  if (i + n > s.size()) n = 1;
  const std::u32string u = text::decode(s.substr(i, n));
  *len = n;
  return u.size() == 1 && text::is_space(u[0]);
}

// Python's str.rstrip(): trailing whitespace, Unicode included.
std::string_view rstrip_space(std::string_view s) {
  const std::u32string u = text::decode(s);
  size_t keep = u.size();
  while (keep > 0 && text::is_space(u[keep - 1])) --keep;
  if (keep == u.size()) return s;
  return s.substr(0, text::encode(std::u32string_view(u).substr(0, keep)).size());
}

size_t skip_space(std::string_view s, size_t i) {
  size_t len;
  while (i < s.size() && is_py_space_at(s, i, &len)) i += len;
  return i;
}

int count_newlines(std::string_view s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

bool is_name_start(unsigned char c) { return std::isalpha(c) || c == '_' || c >= 0x80; }
bool is_name_char(unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// (\d+_)*\d+ : digits with single underscores between them. Returns the end, or `i` if none.
size_t match_digits(std::string_view s, size_t i) {
  size_t j = i;
  if (j >= s.size() || !is_digit(s[j])) return i;
  while (j < s.size() && is_digit(s[j])) {
    ++j;
    if (j + 1 < s.size() && s[j] == '_' && is_digit(s[j + 1])) ++j;
  }
  return j;
}

// Jinja's float_re; 0 when there is no float at i.
size_t match_float(std::string_view s, size_t i) {
  if (i > 0 && s[i - 1] == '.') return 0;
  const size_t int_end = match_digits(s, i);
  if (int_end == i) return 0;
  size_t j = int_end;
  bool fraction = false;
  if (j < s.size() && s[j] == '.') {
    const size_t f = match_digits(s, j + 1);
    if (f != j + 1) {
      j = f;
      fraction = true;
    }
  }
  if (j < s.size() && (s[j] == 'e' || s[j] == 'E')) {
    size_t k = j + 1;
    if (k < s.size() && (s[k] == '+' || s[k] == '-')) ++k;
    const size_t e = match_digits(s, k);
    if (e != k) return e;
  }
  return fraction ? j : 0;
}

// Jinja's integer_re at i (which holds a digit): decimal, 0b, 0o, 0x, "_" between digits.
void parse_integer(std::string_view s, size_t i, size_t* end, int64_t* value, int line) {
  auto digit_value = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return 99;
  };
  int base = 10;
  size_t j = i;
  if (s[j] == '0' && j + 1 < s.size() && std::strchr("bBoOxX", s[j + 1]) && s[j + 1] != 0) {
    const char p = char(std::tolower(s[j + 1]));
    base = p == 'b' ? 2 : p == 'o' ? 8 : 16;
    size_t k = j + 2;
    if (k < s.size() && s[k] == '_') ++k;
    if (k >= s.size() || digit_value(s[k]) >= base) {
      base = 10;  // just "0"
    } else {
      j = k;
    }
  }
  uint64_t v = 0;
  size_t k = j;
  if (base == 10 && s[j] == '0') {
    // 0(_?0)* : zero only
    ++k;
    while (k < s.size() && (s[k] == '0' || (s[k] == '_' && k + 1 < s.size() && s[k + 1] == '0')))
      ++k;
    *end = k;
    *value = 0;
    return;
  }
  while (k < s.size()) {
    if (s[k] == '_' && k + 1 < s.size() && digit_value(s[k + 1]) < base) {
      ++k;
      continue;
    }
    const int d = digit_value(s[k]);
    if (d >= base) break;
    if (v > (uint64_t(INT64_MAX) - d) / base) syntax_error(line, "integer literal too large");
    v = v * base + d;
    ++k;
  }
  *end = k;
  *value = int64_t(v);
}

// Python's "unicode-escape" decoding of a string literal's body.
std::string unescape(std::string_view body, int line) {
  std::string out;
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] != '\\' || i + 1 >= body.size()) {
      out += body[i];
      continue;
    }
    const char e = body[++i];
    auto hex = [&](int n) {
      uint32_t v = 0;
      for (int k = 1; k <= n; ++k) {
        if (i + k >= body.size() || !std::isxdigit((unsigned char)body[i + k]))
          syntax_error(line, "truncated escape sequence in string literal");
        const char c = body[i + k];
        v = v * 16 + uint32_t(is_digit(c) ? c - '0' : std::tolower(c) - 'a' + 10);
      }
      i += n;
      return v;
    };
    switch (e) {
      case '\n':
        break;  // line continuation
      case '\\':
        out += '\\';
        break;
      case '\'':
        out += '\'';
        break;
      case '"':
        out += '"';
        break;
      case 'a':
        out += '\a';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'v':
        out += '\v';
        break;
      case 'x':
        text::append_utf8(out, hex(2));
        break;
      case 'u':
        text::append_utf8(out, hex(4));
        break;
      case 'U': {
        const uint32_t cp = hex(8);
        if (cp > 0x10ffff) syntax_error(line, "illegal Unicode character in string literal");
        text::append_utf8(out, cp);
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          uint32_t v = uint32_t(e - '0');
          for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7';
               ++k)
            v = v * 8 + uint32_t(body[++i] - '0');
          text::append_utf8(out, v);
        } else if (e == 'N') {
          syntax_error(line, "\\N{...} escapes are not supported");
        } else {
          out += '\\';
          out += e;  // unknown escapes stay as written
        }
    }
  }
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string_view source) {
    // Newlines become "\n" everywhere, and one trailing newline is dropped
    // (keep_trailing_newline=False).
    src_.reserve(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
      if (source[i] == '\r') {
        src_ += '\n';
        if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
      } else {
        src_ += source[i];
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
  }

  std::vector<Token> run() {
    std::string_view s = src_;
    while (pos_ < s.size()) {
      const size_t tag = find_tag(pos_);
      if (tag == std::string_view::npos) {
        emit_data(s.substr(pos_));
        pos_ = s.size();
        break;
      }
      std::string_view text = s.substr(pos_, tag - pos_);
      const char kind = s[tag + 1];
      const char sign =
          tag + 2 < s.size() && (s[tag + 2] == '-' || s[tag + 2] == '+') ? s[tag + 2] : 0;
      const int text_lines = count_newlines(text);
      emit_data(strip_before_tag(text, sign, kind != '{'));
      line_ += text_lines;
      pos_ = tag + 2 + (sign ? 1 : 0);
      if (kind == '#') {
        lex_comment();
      } else if (kind == '%' && try_raw()) {
        // handled
      } else {
        lex_tag(kind == '{');
      }
    }
    tokens_.push_back(Token{Tok::kEof, "", 0, 0, line_});
    return std::move(tokens_);
  }

 private:
  size_t find_tag(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1))
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#'))
        return i;
    return std::string::npos;
  }

  // The data before a tag: "-" strips all trailing whitespace; lstrip_blocks drops a
  // whitespace-only start of line before block and comment tags unless "+" says otherwise.
  std::string_view strip_before_tag(std::string_view text, char sign, bool block_or_comment) const {
    if (sign == '-') return rstrip_space(text);
    if (sign == '+' || !block_or_comment) return text;
    const size_t nl = text.rfind('\n');
    const size_t line_start = nl == std::string_view::npos ? 0 : nl + 1;
    if ((line_start == 0 && !line_starting_) || line_start == text.size()) return text;
    for (size_t i = line_start, len; i < text.size(); i += len)
      if (!is_py_space_at(text, i, &len)) return text;
    return text.substr(0, line_start);
  }

  void emit_data(std::string_view text) {
    if (text.empty()) return;
    tokens_.push_back(Token{Tok::kData, std::string(text), 0, 0, line_});
  }

  // After "%}" / "#}": "-" strips all following whitespace, "+" nothing, otherwise one newline.
  // Returns the position after the end tag; `sign_pos` is where the optional sign sits.
  size_t finish_end_tag(size_t sign_pos, size_t after_tag) {
    std::string_view s = src_;
    size_t end = after_tag;
    if (sign_pos != std::string::npos && s[sign_pos] == '-')
      end = skip_space(s, after_tag);
    else if ((sign_pos == std::string::npos || s[sign_pos] != '+') && end < s.size() &&
             s[end] == '\n')
      ++end;  // trim_blocks
    line_starting_ = end > 0 && s[end - 1] == '\n';
    line_ += count_newlines(s.substr(after_tag, end - after_tag));
    return end;
  }

  void lex_comment() {
    const size_t close = src_.find("#}", pos_);
    if (close == std::string::npos) syntax_error(line_, "Missing end of comment tag");
    const size_t sign_pos = close > pos_ && (src_[close - 1] == '-' || src_[close - 1] == '+')
                                ? close - 1
                                : std::string::npos;
    line_ += count_newlines(std::string_view(src_).substr(pos_, close - pos_));
    pos_ = finish_end_tag(sign_pos, close + 2);
  }

  // {% raw %} ... {% endraw %}: the text between is data, untouched.
  bool try_raw() {
    std::string_view s = src_;
    size_t i = skip_space(s, pos_);
    if (s.substr(i, 3) != "raw") return false;
    i = skip_space(s, i + 3);
    size_t body_start;
    if (s.substr(i, 3) == "-%}") {
      body_start = skip_space(s, i + 3);
    } else if (s.substr(i, 2) == "%}") {
      body_start = i + 2;  // no trim_blocks after {% raw %}
    } else {
      return false;
    }
    line_ += count_newlines(s.substr(pos_, body_start - pos_));
    line_starting_ = body_start > 0 && s[body_start - 1] == '\n';
    // Find {%[-+]? endraw [-+]?%}
    for (size_t tag = s.find("{%", body_start); tag != std::string_view::npos;
         tag = s.find("{%", tag + 1)) {
      size_t j = tag + 2;
      const char sign = j < s.size() && (s[j] == '-' || s[j] == '+') ? s[j] : 0;
      if (sign) ++j;
      j = skip_space(s, j);
      if (s.substr(j, 6) != "endraw") continue;
      j = skip_space(s, j + 6);
      size_t sign_pos = std::string::npos;
      if (j < s.size() && (s[j] == '-' || s[j] == '+')) sign_pos = j++;
      if (s.substr(j, 2) != "%}") continue;
      const std::string_view text = s.substr(body_start, tag - body_start);
      const int text_lines = count_newlines(text);
      emit_data(strip_before_tag(text, sign, true));
      line_ += text_lines + count_newlines(s.substr(tag, j - tag));
      pos_ = finish_end_tag(sign_pos, j + 2);
      return true;
    }
    syntax_error(line_, "Missing end of raw directive");
  }

  void lex_tag(bool variable) {
    std::string_view s = src_;
    tokens_.push_back(Token{variable ? Tok::kVarBegin : Tok::kBlockBegin, "", 0, 0, line_});
    std::vector<char> balance;
    static const char* kOps[] = {"**", "//", "==", "!=", ">=", "<=", "+", "-", "/",
                                 "*",  "%",  "~",  "[",  "]",  "(",  ")", "{", "}",
                                 ">",  "<",  "=",  ".",  ":",  "|",  ",", ";"};
    while (true) {
      if (pos_ >= s.size())
        syntax_error(line_, variable
                                ? "unexpected end of template, expected 'end of print statement'"
                                : "unexpected end of template, expected 'end of statement block'");
      if (balance.empty()) {
        if (variable) {
          if (s.substr(pos_, 3) == "-}}") {
            const size_t end = skip_space(s, pos_ + 3);
            line_ += count_newlines(s.substr(pos_, end - pos_));
            line_starting_ = s[end - 1] == '\n';
            pos_ = end;
            break;
          }
          if (s.substr(pos_, 2) == "}}") {
            pos_ += 2;
            line_starting_ = false;
            break;
          }
        } else {
          if (s.substr(pos_, 3) == "-%}" || s.substr(pos_, 3) == "+%}") {
            pos_ = finish_end_tag(pos_, pos_ + 3);
            break;
          }
          if (s.substr(pos_, 2) == "%}") {
            pos_ = finish_end_tag(std::string::npos, pos_ + 2);
            break;
          }
        }
      }
      const unsigned char c = s[pos_];
      size_t len;
      if (is_py_space_at(s, pos_, &len)) {
        line_ += c == '\n';
        pos_ += len;
        continue;
      }
      if (is_digit(char(c))) {
        if (const size_t end = match_float(s, pos_)) {
          std::string digits;
          for (size_t i = pos_; i < end; ++i)
            if (s[i] != '_') digits += s[i];
          tokens_.push_back(Token{Tok::kFloat, std::string(s.substr(pos_, end - pos_)), 0,
                                  std::strtod(digits.c_str(), nullptr), line_});
          pos_ = end;
          continue;
        }
        size_t end = pos_ + 1;
        int64_t value = 0;
        parse_integer(s, pos_, &end, &value, line_);
        tokens_.push_back(
            Token{Tok::kInt, std::string(s.substr(pos_, end - pos_)), value, 0, line_});
        pos_ = end;
        continue;
      }
      if (is_name_start(c)) {
        size_t end = pos_;
        while (end < s.size() && is_name_char((unsigned char)s[end])) ++end;
        tokens_.push_back(Token{Tok::kName, std::string(s.substr(pos_, end - pos_)), 0, 0, line_});
        pos_ = end;
        continue;
      }
      if (c == '\'' || c == '"') {
        size_t end = pos_ + 1;
        while (end < s.size() && s[end] != char(c)) end += s[end] == '\\' ? 2 : 1;
        if (end >= s.size())
          syntax_error(line_, str_cat("unexpected char ", py_string_repr(std::string(1, char(c))),
                                      " at ", pos_));
        const std::string_view body = s.substr(pos_ + 1, end - pos_ - 1);
        tokens_.push_back(Token{Tok::kString, unescape(body, line_), 0, 0, line_});
        line_ += count_newlines(body);
        pos_ = end + 1;
        continue;
      }
      const char* op = nullptr;
      for (const char* candidate : kOps)
        if (s.substr(pos_, std::strlen(candidate)) == candidate) {
          op = candidate;
          break;
        }
      if (!op) {
        syntax_error(line_, str_cat("unexpected char ", py_string_repr(std::string(1, char(c))),
                                    " at ", pos_));
      }
      const std::string o = op;
      if (o == "{" || o == "(" || o == "[") {
        balance.push_back(o == "{" ? '}' : o == "(" ? ')' : ']');
      } else if (o == "}" || o == ")" || o == "]") {
        if (balance.empty()) syntax_error(line_, str_cat("unexpected '", o, "'"));
        if (balance.back() != o[0])
          syntax_error(line_, str_cat("unexpected '", o, "', expected '", balance.back(), "'"));
        balance.pop_back();
      }
      tokens_.push_back(Token{Tok::kOp, o, 0, 0, line_});
      pos_ += o.size();
    }
    tokens_.push_back(Token{variable ? Tok::kVarEnd : Tok::kBlockEnd, "", 0, 0, line_});
  }

  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source) { return Lexer(source).run(); }

}  // namespace muse::jinja
