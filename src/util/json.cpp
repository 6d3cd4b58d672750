#include "util/json.h"

#include <charconv>
#include <cmath>
#include <cstdio>

#include "util/error.h"
#include "util/utf8.h"

namespace muse {
namespace {

constexpr int kMaxDepth = 256;

class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}

  Json parse_document() {
    Json v = parse_value(0);
    skip_ws();
    if (pos_ != s_.size()) error("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void error(const char* what) {
    fail("invalid JSON at byte ", pos_, ": ", what);
  }
  void skip_ws() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }
  bool consume(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  Json parse_value(int depth) {
    if (depth > kMaxDepth) error("nesting too deep");
    skip_ws();
    if (pos_ >= s_.size()) error("unexpected end");
    const char c = s_[pos_];
    if (c == '{') return parse_object(depth);
    if (c == '[') return parse_array(depth);
    if (c == '"') return Json(parse_string());
    if (consume("true")) return Json(true);
    if (consume("false")) return Json(false);
    if (consume("null")) return Json();
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number();
    error("unexpected character");
  }

  Json parse_object(int depth) {
    ++pos_;
    Json::Object obj;
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return Json(std::move(obj));
    }
    for (;;) {
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != '"') error("expected a string key");
      std::string key = parse_string();
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != ':') error("expected ':'");
      ++pos_;
      obj.insert_or_assign(std::move(key), parse_value(depth + 1));
      skip_ws();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == '}') {
        ++pos_;
        return Json(std::move(obj));
      }
      error("expected ',' or '}'");
    }
  }

  Json parse_array(int depth) {
    ++pos_;
    Json::Array arr;
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return Json(std::move(arr));
    }
    for (;;) {
      arr.push_back(parse_value(depth + 1));
      skip_ws();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == ']') {
        ++pos_;
        return Json(std::move(arr));
      }
      error("expected ',' or ']'");
    }
  }

  Json parse_number() {
    const size_t start = pos_;
    if (s_[pos_] == '-') ++pos_;
    auto digits = [&] {
      const size_t d = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      return pos_ - d;
    };
    if (pos_ < s_.size() && s_[pos_] == '0') {
      ++pos_;
    } else if (digits() == 0) {
      error("bad number");
    }
    bool integral = true;
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      integral = false;
      if (digits() == 0) error("bad number");
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      integral = false;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (digits() == 0) error("bad number");
    }
    if (integral) {
      int64_t n = 0;
      auto res = std::from_chars(s_.data() + start, s_.data() + pos_, n);
      // "-0" stays a float so that its sign survives; out-of-range integers become floats.
      if (res.ec == std::errc() && !(n == 0 && s_[start] == '-')) return Json(n);
    }
    double v = 0;
    auto res = std::from_chars(s_.data() + start, s_.data() + pos_, v);
    if (res.ec == std::errc::result_out_of_range) v = s_[start] == '-' ? -HUGE_VAL : HUGE_VAL;
    return Json(v);
  }

  unsigned parse_hex4() {
    if (pos_ + 4 > s_.size()) error("bad \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= c - '0';
      else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
      else error("bad \\u escape");
    }
    return v;
  }

  std::string parse_string() {
    ++pos_;  // opening quote
    std::string out;
    for (;;) {
      if (pos_ >= s_.size()) error("unterminated string");
      const unsigned char c = s_[pos_++];
      if (c == '"') return out;
      if (c < 0x20) error("control character in string");
      if (c != '\\') {
        out += char(c);
        continue;
      }
      if (pos_ >= s_.size()) error("unterminated string");
      const char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = parse_hex4();
          if (cp >= 0xd800 && cp < 0xdc00) {
            if (s_.substr(pos_, 2) != "\\u") error("unpaired surrogate");
            pos_ += 2;
            const unsigned lo = parse_hex4();
            if (lo < 0xdc00 || lo >= 0xe000) error("unpaired surrogate");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          } else if (cp >= 0xdc00 && cp < 0xe000) {
            error("unpaired surrogate");
          }
          append_utf8(out, cp);
          break;
        }
        default: error("bad escape");
      }
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
};

[[noreturn]] void type_error(const char* want) { fail("JSON value is not ", want); }

}  // namespace

Json Json::parse(std::string_view text) { return Parser(text).parse_document(); }

bool Json::as_bool() const {
  if (kind_ != Kind::kBool) type_error("a boolean");
  return bool_;
}
double Json::as_number() const {
  if (kind_ != Kind::kNumber) type_error("a number");
  return number_;
}
int64_t Json::as_int() const {
  if (integer_) return int_;
  const double v = as_number();
  // Floats convert only when they hold an integer exactly representable on both sides.
  if (v != std::floor(v) || std::fabs(v) > 9.007199254740992e15) type_error("an integer");
  return int64_t(v);
}
const std::string& Json::as_string() const {
  if (kind_ != Kind::kString) type_error("a string");
  return string_;
}
const Json::Array& Json::as_array() const {
  if (kind_ != Kind::kArray) type_error("an array");
  return *array_;
}
const Json::Object& Json::as_object() const {
  if (kind_ != Kind::kObject) type_error("an object");
  return *object_;
}
Json::Array& Json::mutable_array() {
  if (kind_ != Kind::kArray) type_error("an array");
  if (array_.use_count() > 1) array_ = std::make_shared<Array>(*array_);
  return *array_;
}
Json::Object& Json::mutable_object() {
  if (kind_ != Kind::kObject) type_error("an object");
  if (object_.use_count() > 1) object_ = std::make_shared<Object>(*object_);
  return *object_;
}
const Json* Json::find(const std::string& key) const {
  const Object& o = as_object();
  auto it = o.find(key);
  return it == o.end() ? nullptr : &it->second;
}
const Json& Json::at(const std::string& key) const {
  const Json* v = find(key);
  if (!v) fail("JSON object has no member \"", key, "\"");
  return *v;
}
size_t Json::size() const {
  if (kind_ == Kind::kArray) return array_->size();
  if (kind_ == Kind::kObject) return object_->size();
  type_error("an array or object");
}

JsonObject::JsonObject(std::initializer_list<value_type> members) {
  for (const value_type& m : members) insert_or_assign(m.first, m.second);
}

ptrdiff_t JsonObject::index_of(std::string_view key) const {
  if (items_.size() >= kIndexFrom) {
    const auto it = index_.find(std::string(key));
    return it == index_.end() ? -1 : ptrdiff_t(it->second);
  }
  for (size_t i = 0; i < items_.size(); ++i)
    if (items_[i].first == key) return ptrdiff_t(i);
  return -1;
}

void JsonObject::rebuild_index() {
  index_.clear();
  if (items_.size() < kIndexFrom) return;
  for (size_t i = 0; i < items_.size(); ++i) index_.emplace(items_[i].first, i);
}

JsonObject::iterator JsonObject::find(std::string_view key) {
  const ptrdiff_t i = index_of(key);
  return i < 0 ? items_.end() : items_.begin() + i;
}

JsonObject::const_iterator JsonObject::find(std::string_view key) const {
  const ptrdiff_t i = index_of(key);
  return i < 0 ? items_.end() : items_.begin() + i;
}

const Json& JsonObject::at(std::string_view key) const {
  const ptrdiff_t i = index_of(key);
  if (i < 0) fail("JSON object has no member \"", key, "\"");
  return items_[size_t(i)].second;
}

Json& JsonObject::operator[](std::string_view key) {
  return emplace(std::string(key), Json()).first->second;
}

std::pair<JsonObject::iterator, bool> JsonObject::emplace(std::string key, Json value) {
  if (const ptrdiff_t i = index_of(key); i >= 0) return {items_.begin() + i, false};
  items_.emplace_back(std::move(key), std::move(value));
  if (items_.size() == kIndexFrom) rebuild_index();
  else if (items_.size() > kIndexFrom) index_.emplace(items_.back().first, items_.size() - 1);
  return {items_.end() - 1, true};
}

std::pair<JsonObject::iterator, bool> JsonObject::insert_or_assign(std::string key, Json value) {
  if (const ptrdiff_t i = index_of(key); i >= 0) {
    items_[size_t(i)].second = std::move(value);
    return {items_.begin() + i, false};
  }
  return emplace(std::move(key), std::move(value));
}

size_t JsonObject::erase(std::string_view key) {
  const ptrdiff_t i = index_of(key);
  if (i < 0) return 0;
  items_.erase(items_.begin() + i);
  rebuild_index();  // positions after i moved
  return 1;
}

void JsonObject::clear() {
  items_.clear();
  index_.clear();
}

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += char(c);
        }
    }
  }
  out += '"';
}

std::string format_float(float v) {
  if (!std::isfinite(v)) return v != v ? "NaN" : (v > 0 ? "Infinity" : "-Infinity");
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, res.ptr);
}

void Json::dump_to(std::string& out) const {
  switch (kind_) {
    case Kind::kNull: out += "null"; break;
    case Kind::kBool: out += bool_ ? "true" : "false"; break;
    case Kind::kNumber: {
      if (integer_) {
        char buf[24];
        auto res = std::to_chars(buf, buf + sizeof buf, int_);
        out.append(buf, res.ptr);
        break;
      }
      if (!std::isfinite(number_)) {
        out += "null";
        break;
      }
      char buf[32];
      auto res = std::to_chars(buf, buf + sizeof buf, number_);
      out.append(buf, res.ptr);
      break;
    }
    case Kind::kString: append_json_string(out, string_); break;
    case Kind::kArray: {
      out += '[';
      bool first = true;
      for (const Json& v : *array_) {
        if (!first) out += ',';
        first = false;
        v.dump_to(out);
      }
      out += ']';
      break;
    }
    case Kind::kObject: {
      out += '{';
      bool first = true;
      for (const auto& [k, v] : *object_) {
        if (!first) out += ',';
        first = false;
        append_json_string(out, k);
        out += ':';
        v.dump_to(out);
      }
      out += '}';
      break;
    }
  }
}

std::string Json::dump() const {
  std::string out;
  dump_to(out);
  return out;
}

}  // namespace muse
