#include "chat/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "chat/jinja_text.h"

namespace muse::jinja {

SizeLimits& size_limits() {
  thread_local SizeLimits limits;
  return limits;
}

namespace {
// Nesting beyond this in equality, ordering, str() or json.dumps() is an error (Python raises
// RecursionError at about this depth, and a list that contains itself would never end).
constexpr int kMaxValueDepth = 400;

void check_depth(int depth) {
  if (depth > kMaxValueDepth) type_error("maximum recursion depth exceeded (nesting too deep)");
}
}  // namespace

void check_list_size(size_t n) {
  if (n > size_limits().max_list_items)
    type_error("list too long (", n, " items; the limit is ", size_limits().max_list_items, ")");
}

std::string Object::repr() const { return str_cat("<", type_name(), " object>"); }

Value Object::get_attr(Interp&, std::string_view name) {
  return Value::undefined(str_cat("'", type_name(), " object' has no attribute '", name, "'"));
}

Value Object::call(Interp&, CallArgs&) { type_error("'", type_name(), "' object is not callable"); }

bool Object::call_method(Interp&, std::string_view, CallArgs&, Value&) { return false; }

Value Value::undefined(std::string message) {
  Value v(Kind::kUndefined);
  v.ptr_ = std::make_shared<std::string>(std::move(message));
  return v;
}

Value Value::boolean(bool b) {
  Value v(Kind::kBool);
  v.b_ = b;
  return v;
}

Value Value::integer(int64_t i) {
  Value v(Kind::kInt);
  v.i_ = i;
  return v;
}

Value Value::number(double f) {
  Value v(Kind::kFloat);
  v.f_ = f;
  return v;
}

Value Value::str(std::string s, bool markup) {
  if (s.size() > size_limits().max_string_bytes)
    type_error("string too long (", s.size(), " bytes; the limit is ", size_limits().max_string_bytes,
               ")");
  Value v(Kind::kString);
  v.markup_ = markup;
  v.ptr_ = std::make_shared<std::string>(std::move(s));
  return v;
}

Value Value::list(std::vector<Value> items) {
  check_list_size(items.size());
  Value v(Kind::kList);
  v.ptr_ = std::make_shared<List>(List{std::move(items)});
  return v;
}

Value Value::tuple(std::vector<Value> items) {
  Value v = list(std::move(items));
  v.kind_ = Kind::kTuple;
  return v;
}

Value Value::dict(std::shared_ptr<Dict> d) {
  Value v(Kind::kDict);
  v.ptr_ = std::move(d);
  return v;
}

Value Value::dict() { return dict(std::make_shared<Dict>()); }

Value Value::iterator(std::vector<Value> items, std::string type_name) {
  Value v(Kind::kIterator);
  v.ptr_ = std::make_shared<Iterator>(Iterator{std::move(items), 0, std::move(type_name)});
  return v;
}

Value Value::object(std::shared_ptr<Object> o) {
  Value v(Kind::kObject);
  v.ptr_ = std::move(o);
  return v;
}

Value Value::from_json(const Json& j) {
  switch (j.kind()) {
    case Json::Kind::kNull:
      return none();
    case Json::Kind::kBool:
      return boolean(j.as_bool());
    case Json::Kind::kNumber:
      return j.is_integer() ? integer(j.as_int()) : number(j.as_number());
    case Json::Kind::kString:
      return str(j.as_string());
    case Json::Kind::kArray: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const Json& e : j.as_array()) items.push_back(from_json(e));
      return list(std::move(items));
    }
    case Json::Kind::kObject: {
      auto d = std::make_shared<Dict>();
      for (const auto& [k, e] : j.as_object()) d->set(str(k), from_json(e));
      return dict(std::move(d));
    }
  }
  return none();
}

double Value::as_double() const {
  switch (kind_) {
    case Kind::kBool:
      return b_ ? 1 : 0;
    case Kind::kInt:
      return double(i_);
    case Kind::kFloat:
      return f_;
    default:
      type_error("must be real number, not ", type_name());
  }
}

const std::string& Value::undefined_message() const {
  static const std::string kNone = "value is undefined";
  return ptr_ ? *static_cast<const std::string*>(ptr_.get()) : kNone;
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return b_;
    case Kind::kInt:
      return i_ != 0;
    case Kind::kFloat:
      return f_ != 0;
    case Kind::kString:
      return !as_str().empty();
    case Kind::kList:
    case Kind::kTuple:
      return !items().empty();
    case Kind::kDict:
      return as_dict().size() > 0;
    case Kind::kIterator:
    case Kind::kObject:
      return true;
  }
  return false;
}

std::string Value::type_name() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "Undefined";
    case Kind::kNone:
      return "NoneType";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return markup_ ? "Markup" : "str";
    case Kind::kList:
      return "list";
    case Kind::kTuple:
      return "tuple";
    case Kind::kDict:
      return "dict";
    case Kind::kIterator:
      return as_iterator().type_name;
    case Kind::kObject:
      return as_object().type_name();
  }
  return "object";
}

// ---------------------------------------------------------------------------------------------
// Dict

ptrdiff_t Dict::index_of(std::string_view key) const {
  if (!string_index_.empty()) {
    auto it = string_index_.find(std::string(key));
    return it == string_index_.end() ? -1 : ptrdiff_t(it->second);
  }
  for (size_t i = 0; i < items_.size(); ++i)
    if (items_[i].first.is_string() && items_[i].first.as_str() == key) return ptrdiff_t(i);
  return -1;
}

ptrdiff_t Dict::index_of(const Value& key) const {
  if (key.is_string()) return index_of(std::string_view(key.as_str()));
  for (size_t i = 0; i < items_.size(); ++i)
    if (!items_[i].first.is_string() && py_equal(items_[i].first, key)) return ptrdiff_t(i);
  return -1;
}

void Dict::rebuild_index() {
  string_index_.clear();
  if (items_.size() < kIndexFrom) return;
  for (size_t i = 0; i < items_.size(); ++i)
    if (items_[i].first.is_string()) string_index_.emplace(items_[i].first.as_str(), i);
}

const Value* Dict::find(const Value& key) const {
  const ptrdiff_t i = index_of(key);
  return i < 0 ? nullptr : &items_[size_t(i)].second;
}

const Value* Dict::find(std::string_view key) const {
  const ptrdiff_t i = index_of(key);
  return i < 0 ? nullptr : &items_[size_t(i)].second;
}

void Dict::set(Value key, Value value) {
  const ptrdiff_t i = index_of(key);
  if (i >= 0) {
    items_[size_t(i)].second = std::move(value);
    return;
  }
  check_list_size(items_.size() + 1);
  items_.emplace_back(std::move(key), std::move(value));
  if (items_.size() == kIndexFrom)
    rebuild_index();
  else if (items_.size() > kIndexFrom && items_.back().first.is_string())
    string_index_.emplace(items_.back().first.as_str(), items_.size() - 1);
}

bool Dict::erase(const Value& key) {
  const ptrdiff_t i = index_of(key);
  if (i < 0) return false;
  items_.erase(items_.begin() + i);
  rebuild_index();
  return true;
}

void Dict::clear() {
  items_.clear();
  string_index_.clear();
}

// ---------------------------------------------------------------------------------------------
// Equality and ordering

bool py_equal(const Value& a, const Value& b, int depth) {
  using K = Value::Kind;
  check_depth(depth);
  if (a.is_number() && b.is_number()) {
    if (a.is_integral() && b.is_integral()) return a.as_int() == b.as_int();
    return a.as_double() == b.as_double();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case K::kUndefined:
    case K::kNone:
      return true;
    case K::kString:
      return a.as_str() == b.as_str();
    case K::kList:
    case K::kTuple: {
      const auto &x = a.items(), &y = b.items();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!py_equal(x[i], y[i], depth + 1)) return false;
      return true;
    }
    case K::kDict: {
      const Dict &x = a.as_dict(), &y = b.as_dict();
      if (x.size() != y.size()) return false;
      for (const auto& [k, v] : x.items()) {
        const Value* other = y.find(k);
        if (!other || !py_equal(v, *other, depth + 1)) return false;
      }
      return true;
    }
    default:
      return a.identity() == b.identity();
  }
}

bool py_less(const Value& a, const Value& b, const char* op, int depth) {
  check_depth(depth);
  if (a.is_number() && b.is_number()) {
    if (a.is_integral() && b.is_integral()) return a.as_int() < b.as_int();
    return a.as_double() < b.as_double();
  }
  if (a.is_string() && b.is_string())
    return a.as_str() < b.as_str();  // UTF-8 keeps code point order
  if ((a.is_list() && b.is_list()) || (a.is_tuple() && b.is_tuple())) {
    const auto &x = a.items(), &y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i)
      if (!py_equal(x[i], y[i], depth + 1)) return py_less(x[i], y[i], op, depth + 1);
    return x.size() < y.size();
  }
  if (a.is_undefined() || b.is_undefined())
    type_error(a.is_undefined() ? a.undefined_message() : b.undefined_message());
  type_error("'", op, "' not supported between instances of '", a.type_name(), "' and '",
             b.type_name(), "'");
}

// ---------------------------------------------------------------------------------------------
// str() and repr()

std::string py_float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  const std::string sci(buf, res.ptr);  // shortest round trip: "-1.2345e+02"
  const size_t e = sci.find('e');
  std::string mantissa = sci.substr(0, e);
  const int exponent = std::stoi(sci.substr(e + 1));
  std::string sign;
  if (mantissa[0] == '-') {
    sign = "-";
    mantissa.erase(0, 1);
  }
  std::string digits;
  for (char c : mantissa)
    if (c != '.') digits += c;
  const int decpt = exponent + 1;  // digits are 0.DIGITS x 10^decpt
  const int n = int(digits.size());
  std::string out = sign;
  if (decpt <= -4 || decpt > 16) {
    out += digits.substr(0, 1);
    if (n > 1) out += str_cat(".", digits.substr(1));
    char exp[16];
    std::snprintf(exp, sizeof exp, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    return out + exp;
  }
  if (decpt <= 0) return str_cat(out, "0.", std::string(size_t(-decpt), '0'), digits);
  if (decpt >= n) return out + digits + std::string(size_t(decpt - n), '0') + ".0";
  return str_cat(out, digits.substr(0, size_t(decpt)), ".", digits.substr(size_t(decpt)));
}

namespace {

// Characters Python's repr() escapes beyond ASCII controls (str.isprintable() is false).
bool non_printable(char32_t c) {
  return (c >= 0x80 && c <= 0xa0) || c == 0xad || c == 0x1680 || (c >= 0x2000 && c <= 0x200f) ||
         (c >= 0x2028 && c <= 0x202f) || (c >= 0x205f && c <= 0x206f) || c == 0x3000 ||
         (c >= 0xd800 && c <= 0xf8ff) || c == 0xfeff || (c >= 0xfff9 && c <= 0xfffb);
}

void append_hex_escape(std::string& out, char32_t c) {
  char buf[16];
  if (c < 0x100)
    std::snprintf(buf, sizeof buf, "\\x%02x", unsigned(c));
  else if (c < 0x10000)
    std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(c));
  else
    std::snprintf(buf, sizeof buf, "\\U%08x", unsigned(c));
  out += buf;
}

void repr_to(std::string& out, const Value& v, int depth);

void str_to(std::string& out, const Value& v, int depth) {
  using K = Value::Kind;
  switch (v.kind()) {
    case K::kUndefined:
      return;
    case K::kNone:
      out += "None";
      return;
    case K::kBool:
      out += v.as_bool() ? "True" : "False";
      return;
    case K::kInt:
      out += std::to_string(v.as_int());
      return;
    case K::kFloat:
      out += py_float_repr(v.as_double());
      return;
    case K::kString:
      out += v.as_str();
      return;
    default:
      repr_to(out, v, depth);
  }
}

void repr_to(std::string& out, const Value& v, int depth) {
  using K = Value::Kind;
  check_depth(depth);
  switch (v.kind()) {
    case K::kUndefined:
      out += "Undefined";
      return;
    case K::kString:
      if (v.is_markup())
        out += str_cat("Markup(", py_string_repr(v.as_str()), ")");
      else
        out += py_string_repr(v.as_str());
      return;
    case K::kList:
    case K::kTuple: {
      const bool tuple = v.is_tuple();
      out += tuple ? '(' : '[';
      const auto& items = v.items();
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += ", ";
        repr_to(out, items[i], depth + 1);
      }
      if (tuple && items.size() == 1) out += ',';
      out += tuple ? ')' : ']';
      return;
    }
    case K::kDict: {
      out += '{';
      bool first = true;
      for (const auto& [k, e] : v.as_dict().items()) {
        if (!first) out += ", ";
        first = false;
        repr_to(out, k, depth + 1);
        out += ": ";
        repr_to(out, e, depth + 1);
      }
      out += '}';
      return;
    }
    case K::kIterator:
      out += str_cat("<", v.as_iterator().type_name, " object>");
      return;
    case K::kObject:
      out += v.as_object().repr();
      return;
    default:
      str_to(out, v, depth);
  }
}

}  // namespace

std::string py_string_repr(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (char32_t c : text::decode(s)) {
    if (c == char32_t(quote) || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f || non_printable(c)) {
      append_hex_escape(out, c);
    } else {
      text::append_utf8(out, c);
    }
  }
  out += quote;
  return out;
}

void append_str(std::string& out, const Value& v) { str_to(out, v, 0); }

std::string py_str(const Value& v) {
  if (v.is_string()) return v.as_str();
  std::string out;
  str_to(out, v, 0);
  return out;
}

std::string py_repr(const Value& v) {
  std::string out;
  repr_to(out, v, 0);
  return out;
}

// ---------------------------------------------------------------------------------------------
// json.dumps

namespace {

void json_string(std::string& out, std::string_view s, bool ensure_ascii) {
  out += '"';
  auto escape_u = [&](unsigned u) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "\\u%04x", u);
    out += buf;
  };
  auto plain = [&](char32_t c) {
    switch (c) {
      case '"':
        out += "\\\"";
        return;
      case '\\':
        out += "\\\\";
        return;
      case '\n':
        out += "\\n";
        return;
      case '\r':
        out += "\\r";
        return;
      case '\t':
        out += "\\t";
        return;
      case '\b':
        out += "\\b";
        return;
      case '\f':
        out += "\\f";
        return;
    }
    if (c < 0x20)
      escape_u(unsigned(c));
    else if (c < 0x80 || !ensure_ascii)
      text::append_utf8(out, c);
    else if (c < 0x10000)
      escape_u(unsigned(c));
    else {
      const unsigned v = unsigned(c) - 0x10000;
      escape_u(0xd800 + (v >> 10));
      escape_u(0xdc00 + (v & 0x3ff));
    }
  };
  if (text::is_ascii(s)) {
    for (char c : s) plain(char32_t(c));
  } else {
    for (char32_t c : text::decode(s)) plain(c);
  }
  out += '"';
}

std::string json_float(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  return py_float_repr(d);
}

class JsonWriter {
 public:
  explicit JsonWriter(const JsonDumpOptions& o) : o_(o) {
    if (o.indent_is_text)
      indent_unit_ = o.indent_text;
    else if (o.indent >= 0)
      indent_unit_ = std::string(size_t(o.indent), ' ');
    indented_ = o.indent_is_text || o.indent >= 0;
  }

  void write(const Value& v, int depth) {
    using K = Value::Kind;
    check_depth(depth);
    if (out_.size() > size_limits().max_string_bytes) type_error("tojson output too long");
    switch (v.kind()) {
      case K::kNone:
        out_ += "null";
        return;
      case K::kBool:
        out_ += v.as_bool() ? "true" : "false";
        return;
      case K::kInt:
        out_ += std::to_string(v.as_int());
        return;
      case K::kFloat:
        out_ += json_float(v.as_double());
        return;
      case K::kString:
        json_string(out_, v.as_str(), o_.ensure_ascii);
        return;
      case K::kList:
      case K::kTuple: {
        const auto& items = v.items();
        if (items.empty()) {
          out_ += "[]";
          return;
        }
        out_ += '[';
        for (size_t i = 0; i < items.size(); ++i) {
          out_ += i ? o_.item_sep : "";
          newline(depth + 1);
          write(items[i], depth + 1);
        }
        newline(depth);
        out_ += ']';
        return;
      }
      case K::kDict: {
        const Dict& d = v.as_dict();
        if (d.size() == 0) {
          out_ += "{}";
          return;
        }
        std::vector<const Dict::Item*> items;
        for (const auto& item : d.items()) items.push_back(&item);
        if (o_.sort_keys)
          std::stable_sort(
              items.begin(), items.end(),
              [](const Dict::Item* a, const Dict::Item* b) { return py_less(a->first, b->first); });
        out_ += '{';
        bool first = true;
        for (const Dict::Item* item : items) {
          out_ += first ? "" : o_.item_sep;
          first = false;
          newline(depth + 1);
          json_string(out_, key_text(item->first), o_.ensure_ascii);
          out_ += o_.key_sep;
          write(item->second, depth + 1);
        }
        newline(depth);
        out_ += '}';
        return;
      }
      default:
        type_error("Object of type ", v.type_name(), " is not JSON serializable");
    }
  }

  std::string take() { return std::move(out_); }

 private:
  void newline(int level) {
    if (!indented_) return;
    out_ += '\n';
    for (int i = 0; i < level; ++i) out_ += indent_unit_;
  }

  static std::string key_text(const Value& k) {
    switch (k.kind()) {
      case Value::Kind::kString:
        return k.as_str();
      case Value::Kind::kBool:
        return k.as_bool() ? "true" : "false";
      case Value::Kind::kNone:
        return "null";
      case Value::Kind::kInt:
        return std::to_string(k.as_int());
      case Value::Kind::kFloat:
        return json_float(k.as_double());
      default:
        type_error("keys must be str, int, float, bool or None, not ", k.type_name());
    }
  }

  const JsonDumpOptions& o_;
  std::string indent_unit_;
  bool indented_ = false;
  std::string out_;
};

}  // namespace

std::string py_json_dumps(const Value& v, const JsonDumpOptions& options) {
  JsonWriter w(options);
  w.write(v, 0);
  return w.take();
}

// ---------------------------------------------------------------------------------------------
// Iteration and len()

std::vector<Value> iterate(const Value& v) {
  using K = Value::Kind;
  switch (v.kind()) {
    case K::kUndefined:
      return {};
    case K::kList:
    case K::kTuple:
      return v.items();
    case K::kDict: {
      std::vector<Value> keys;
      keys.reserve(v.as_dict().size());
      for (const auto& item : v.as_dict().items()) keys.push_back(item.first);
      return keys;
    }
    case K::kString: {
      std::vector<Value> chars;
      const std::string& s = v.as_str();
      // Iterating a Markup string yields plain strings, as in Python.
      if (text::is_ascii(s)) {
        for (char c : s) chars.push_back(Value::str(std::string(1, c)));
      } else {
        for (char32_t c : text::decode(s)) {
          std::string one;
          text::append_utf8(one, c);
          chars.push_back(Value::str(std::move(one)));
        }
      }
      return chars;
    }
    case K::kIterator: {
      Iterator& it = v.as_iterator();
      std::vector<Value> rest(it.items.begin() + ptrdiff_t(it.pos), it.items.end());
      it.pos = it.items.size();
      return rest;
    }
    default:
      type_error("'", v.type_name(), "' object is not iterable");
  }
}

int64_t py_len(const Value& v) {
  using K = Value::Kind;
  switch (v.kind()) {
    case K::kUndefined:
      return 0;
    case K::kString:
      return int64_t(text::length(v.as_str()));
    case K::kList:
    case K::kTuple:
      return int64_t(v.items().size());
    case K::kDict:
      return int64_t(v.as_dict().size());
    default:
      type_error("object of type '", v.type_name(), "' has no len()");
  }
}

}  // namespace muse::jinja
