// Jinja2's builtin filters, tests and globals, the methods of str, list and dict that
// templates call, and Python's "%" and str.format() formatting.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <functional>
#include <unordered_map>

#include "chat/jinja_internal.h"
#include "chat/jinja_text.h"

namespace muse::jinja {

// ---------------------------------------------------------------------------------------------
// Argument binding

Value ArgReader::get(size_t position, std::string_view name, Value fallback) {
  used_positional_ = std::max(used_positional_, position + 1);
  used_keywords_.resize(args_.keywords.size(), false);
  for (size_t k = 0; k < args_.keywords.size(); ++k)
    if (args_.keywords[k].first == name) {
      if (position < args_.positional.size())
        type_error(function_, "() got multiple values for argument '", name, "'");
      used_keywords_[k] = true;
      return args_.keywords[k].second;
    }
  if (position < args_.positional.size()) return args_.positional[position];
  return fallback;
}

Value ArgReader::keyword(std::string_view name, Value fallback) {
  used_keywords_.resize(args_.keywords.size(), false);
  for (size_t k = 0; k < args_.keywords.size(); ++k)
    if (args_.keywords[k].first == name) {
      used_keywords_[k] = true;
      return args_.keywords[k].second;
    }
  return fallback;
}

bool ArgReader::has(size_t position, std::string_view name) const {
  if (position < args_.positional.size()) return true;
  for (const auto& kw : args_.keywords)
    if (kw.first == name) return true;
  return false;
}

void ArgReader::done() {
  if (args_.positional.size() > used_positional_)
    type_error(function_, "() takes at most ", used_positional_, " argument(s) (",
               args_.positional.size(), " given)");
  used_keywords_.resize(args_.keywords.size(), false);
  for (size_t k = 0; k < args_.keywords.size(); ++k)
    if (!used_keywords_[k])
      type_error(function_, "() got an unexpected keyword argument '", args_.keywords[k].first,
                 "'");
}

namespace {

[[noreturn]] void undefined_error(const Value& v) { throw TemplateError(v.undefined_message()); }

int64_t to_int(const Value& v, std::string_view what) {
  if (v.is_undefined()) undefined_error(v);
  if (!v.is_integral())
    type_error(what, ": '", v.type_name(), "' object cannot be interpreted as an integer");
  return v.as_int();
}

std::optional<std::string> optional_str(const Value& v, std::string_view what) {
  if (v.is_none() || v.is_undefined()) return std::nullopt;
  if (!v.is_string()) type_error(what, " arg must be None or str");
  return v.as_str();
}

const std::string& need_str(const Value& v, std::string_view what) {
  if (v.is_undefined()) undefined_error(v);
  if (!v.is_string()) type_error(what, " must be str, not ", v.type_name());
  return v.as_str();
}

Value markup_like(const Value& input, std::string s) {
  return Value::str(std::move(s), input.is_markup());
}

// soft_str: str() unless it is already a string (Markup stays Markup).
Value soft_str(const Value& v) { return v.is_string() ? v : Value::str(py_str(v)); }

// Jinja's attribute lookup for filters: "a.b.0" walks attributes and items.
Value lookup_attribute_path(Interp& in, Value v, const Value& attribute) {
  if (attribute.is_integral()) return in.get_item(v, attribute);
  if (!attribute.is_string()) type_error("attribute must be a string or an integer");
  for (const std::string& part : text::split(attribute.as_str(), std::string("."), -1, false)) {
    if (auto n = text::parse_int(part, 10);
        n && !part.empty() && std::isdigit((unsigned char)part[0]))
      v = in.get_item(v, Value::integer(*n));
    else
      v = in.get_item(v, Value::str(part));
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// Filters

using FilterFn = Value (*)(Interp& in, const Value& v, CallArgs& args);

Value f_abs(Interp&, const Value& v, CallArgs& args) {
  ArgReader("abs", args).done();
  if (v.is_integral()) {
    if (v.as_int() == INT64_MIN) type_error("integer overflow");
    return Value::integer(std::llabs(v.as_int()));
  }
  if (v.is_float()) return Value::number(std::fabs(v.as_double()));
  type_error("bad operand type for abs(): '", v.type_name(), "'");
}

Value f_attr(Interp& in, const Value& v, CallArgs& args) {
  ArgReader r("attr", args);
  const Value name = r.get(0, "name");
  r.done();
  return in.get_attr(v, need_str(name, "attribute name"));
}

std::vector<Value> batch_or_slice(const std::vector<Value>& items, int64_t n, const Value& fill,
                                  bool slice) {
  std::vector<Value> out;
  if (n <= 0) type_error(slice ? "slices must be positive" : "batch size must be positive");
  if (!slice) {
    std::vector<Value> tmp;
    for (const Value& item : items) {
      tmp.push_back(item);
      if (int64_t(tmp.size()) == n) {
        out.push_back(Value::list(std::move(tmp)));
        tmp.clear();
      }
    }
    if (!tmp.empty()) {
      if (!fill.is_none())
        while (int64_t(tmp.size()) < n) tmp.push_back(fill);
      out.push_back(Value::list(std::move(tmp)));
    }
    return out;
  }
  const int64_t len = int64_t(items.size());
  const int64_t per = len / n, extra = len % n;
  int64_t offset = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t start = offset + i * per;
    if (i < extra) ++offset;
    const int64_t end = offset + (i + 1) * per;
    std::vector<Value> part(items.begin() + start, items.begin() + end);
    if (!fill.is_none() && i >= extra) part.push_back(fill);
    out.push_back(Value::list(std::move(part)));
  }
  return out;
}

Value f_batch(Interp&, const Value& v, CallArgs& args) {
  ArgReader r("batch", args);
  const int64_t n = to_int(r.get(0, "linecount"), "batch");
  const Value fill = r.get(1, "fill_with", Value::none());
  r.done();
  return Value::iterator(batch_or_slice(iterate(v), n, fill, false));
}

Value f_slice(Interp&, const Value& v, CallArgs& args) {
  ArgReader r("slice", args);
  const int64_t n = to_int(r.get(0, "slices"), "slice");
  const Value fill = r.get(1, "fill_with", Value::none());
  r.done();
  return Value::iterator(batch_or_slice(iterate(v), n, fill, true));
}

Value f_capitalize(Interp&, const Value& v, CallArgs& args) {
  ArgReader("capitalize", args).done();
  const Value s = soft_str(v);
  return markup_like(s, text::capitalize(s.as_str()));
}

Value f_center(Interp&, const Value& v, CallArgs& args) {
  ArgReader r("center", args);
  const int64_t width = to_int(r.get(0, "width", Value::integer(80)), "center");
  r.done();
  const Value s = soft_str(v);
  return markup_like(s, text::center(s.as_str(), width, " "));
}

Value f_length(Interp&, const Value& v, CallArgs& args) {
  ArgReader("length", args).done();
  return Value::integer(py_len(v));
}

Value f_default(Interp&, const Value& v, CallArgs& args) {
  ArgReader r("default", args);
  const Value fallback = r.get(0, "default_value", Value::str(""));
  const bool boolean = r.get(1, "boolean", Value::boolean(false)).truthy();
  r.done();
  if (v.is_undefined() || (boolean && !v.truthy())) return fallback;
  return v;
}

// Sort key with optional case folding (Jinja's ignore_case).
Value sort_key(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value::str(text::lower(v.as_str()));
  return v;
}

void sort_values(std::vector<Value>& items, const std::function<Value(const Value&)>& key,
                 bool reverse) {
  std::vector<std::pair<Value, Value>> keyed;
  keyed.reserve(items.size());
  for (Value& v : items) keyed.emplace_back(key(v), std::move(v));
  // Python's sort is stable also with reverse=True (equal items keep their order).
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    return reverse ? py_less(b.first, a.first) : py_less(a.first, b.first);
  });
  items.clear();
  for (auto& kv : keyed) items.push_back(std::move(kv.second));
}

Value f_dictsort(Interp&, const Value& v, CallArgs& args) {
  ArgReader r("dictsort", args);
  const bool case_sensitive = r.get(0, "case_sensitive", Value::boolean(false)).truthy();
  const Value by = r.get(1, "by", Value::str("key"));
  const bool reverse = r.get(2, "reverse", Value::boolean(false)).truthy();
  r.done();
  if (v.is_undefined()) undefined_error(v);
  if (!v.is_dict()) type_error("dictsort: '", v.type_name(), "' object has no attribute 'items'");
  int pos;
  if (by.is_string() && by.as_str() == "key")
    pos = 0;
  else if (by.is_string() && by.as_str() == "value")
    pos = 1;
  else
    type_error("You can only sort by either \"key\" or \"value\"");
  std::vector<Value> pairs;
  for (const auto& [k, e] : v.as_dict().items()) pairs.push_back(Value::tuple({k, e}));
  sort_values(
      pairs, [&](const Value& p) { return sort_key(p.items()[size_t(pos)], case_sensitive); },
      reverse);
  return Value::list(std::move(pairs));
}

Value f_escape(Interp&, const Value& v, CallArgs& args) {
  ArgReader("escape", args).done();
  if (v.is_markup()) return v;
  return Value::str(text::html_escape(py_str(v)), true);
}

Value f_forceescape(Interp&, const Value& v, CallArgs& args) {
  ArgReader("forceescape", args).done();
  return Value::str(text::html_escape(py_str(v)), true);
}

Value f_first(Interp&, const Value& v, CallArgs& args) {
  ArgReader("first", args).done();
  if (v.is_iterator()) {
    Iterator& it = v.as_iterator();
    if (it.pos < it.items.size()) return it.items[it.pos++];
  } else {
    std::vector<Value> items = iterate(v);
    if (!items.empty()) return items.front();
  }
  return Value::undefined("No first item, sequence was empty.");
}

Value f_last(Interp&, const Value& v, CallArgs& args) {
  ArgReader("last", args).done();
  if (v.is_iterator()) type_error("'", v.type_name(), "' object is not reversible");
  std::vector<Value> items = iterate(v);
  if (!items.empty()) return items.back();
  return Value::undefined("No last item, sequence was empty.");
}

std::optional<double> number_of(const Value& v) {
  if (v.is_undefined()) undefined_error(v);
  if (v.is_number()) return v.as_double();
  if (v.is_string()) return text::parse_float(v.as_str());
  return std::nullopt;
}

Value f_float(Interp&, const Value& v, CallArgs& args) {
  ArgReader r("float", args);
  const Value fallback = r.get(0, "default", Value::number(0.0));
  r.done();
  if (auto d = number_of(v)) return Value::number(*d);
  return fallback;
}

Value f_int(Interp&, const Value& v, CallArgs& args) {
  ArgReader r("int", args);
  const Value fallback = r.get(0, "default", Value::integer(0));
  const int64_t base = to_int(r.get(1, "base", Value::integer(10)), "int");
  r.done();
  if (v.is_undefined()) undefined_error(v);
  if (v.is_integral()) return Value::integer(v.as_int());
  if (v.is_float()) {
    const double d = v.as_double();
    if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return fallback;
    return Value::integer(int64_t(d));
  }
  if (v.is_string()) {
    if (auto i = text::parse_int(v.as_str(), int(base))) return Value::integer(*i);
    if (auto d = text::parse_float(v.as_str()); d && std::isfinite(*d) && std::fabs(*d) < 9.2e18)
      return Value::integer(int64_t(*d));
  }
  return fallback;
}

Value f_format(Interp& in, const Value& v, CallArgs& args) {
  if (!args.positional.empty() && !args.keywords.empty())
    type_error("can't handle positional and keyword arguments at the same time");
  Value params;
  if (!args.keywords.empty()) {
    auto d = std::make_shared<Dict>();
    for (auto& [k, e] : args.keywords) d->set(Value::str(k), e);
    params = Value::dict(std::move(d));
  } else {
    params = Value::tuple(args.positional);
  }
  const Value s = soft_str(v);
  return markup_like(s, percent_format(in, s.as_str(), params));
}

Value f_indent(Interp&, const Value& v, CallArgs& args) {
  ArgReader r("indent", args);
  const Value width = r.get(0, "width", Value::integer(4));
  const bool first = r.get(1, "first", Value::boolean(false)).truthy();
  const bool blank = r.get(2, "blank", Value::boolean(false)).truthy();
  r.done();
  // Jinja appends "\n" to the value itself, which only strings allow.
  if (v.is_undefined()) undefined_error(v);
  if (!v.is_string())
    type_error("unsupported operand type(s) for +=: '", v.type_name(), "' and 'str'");
  const std::string indention =
      width.is_string() ? width.as_str()
                        : std::string(size_t(std::max<int64_t>(0, to_int(width, "indent"))), ' ');
  const Value s = soft_str(v);
  const std::vector<std::string> lines = text::splitlines(s.as_str() + "\n", false);
  std::string out;
  if (blank) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i) out += str_cat("\n", indention);
      out += lines[i];
    }
  } else {
    out = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      out += "\n";
      if (!lines[i].empty()) out += indention;
      out += lines[i];
    }
  }
  if (first) out = indention + out;
  return markup_like(s, std::move(out));
}

Value f_items(Interp&, const Value& v, CallArgs& args) {
  ArgReader("items", args).done();
  if (v.is_undefined()) return Value::iterator({});
  if (!v.is_dict()) type_error("Can only get item pairs from a mapping.");
  std::vector<Value> pairs;
  for (const auto& [k, e] : v.as_dict().items()) pairs.push_back(Value::tuple({k, e}));
  return Value::iterator(std::move(pairs));
}

Value f_join(Interp& in, const Value& v, CallArgs& args) {
  ArgReader r("join", args);
  const Value sep = r.get(0, "d", Value::str(""));
  const Value attribute = r.get(1, "attribute", Value::none());
  r.done();
  const std::string separator = py_str(sep);
  std::string out;
  bool first = true;
  for (const Value& item : iterate(v)) {
    if (!first) out += separator;
    first = false;
    append_str(out, attribute.is_none() ? item : lookup_attribute_path(in, item, attribute));
    if (out.size() > size_limits().max_string_bytes) type_error("string too long");
  }
  return Value::str(std::move(out));
}

Value f_list(Interp&, const Value& v, CallArgs& args) {
  ArgReader("list", args).done();
  return Value::list(iterate(v));
}

Value f_lower(Interp&, const Value& v, CallArgs& args) {
  ArgReader("lower", args).done();
  const Value s = soft_str(v);
  return markup_like(s, text::lower(s.as_str()));
}

Value f_upper(Interp&, const Value& v, CallArgs& args) {
  ArgReader("upper", args).done();
  const Value s = soft_str(v);
  return markup_like(s, text::upper(s.as_str()));
}

Value f_title(Interp&, const Value& v, CallArgs& args) {
  ArgReader("title", args).done();
  const Value s = soft_str(v);
  return markup_like(s, text::jinja_title(s.as_str()));
}

Value f_map(Interp& in, const Value& v, CallArgs& args) {
  if (!v.truthy()) return Value::iterator({});  // Jinja tests `if value:` before iterating
  std::vector<Value> items = iterate(v);
  std::vector<Value> out;
  if (args.positional.empty()) {
    // map(attribute='x', default=...)
    ArgReader r("map", args);
    const Value attribute = r.keyword("attribute");
    const Value fallback = r.keyword("default");
    r.done();
    if (attribute.is_undefined()) type_error("map() needs a filter name or attribute=");
    for (const Value& item : items) {
      Value x = lookup_attribute_path(in, item, attribute);
      if (x.is_undefined() && !fallback.is_undefined()) x = fallback;
      out.push_back(std::move(x));
    }
    return Value::iterator(std::move(out));
  }
  const std::string name = need_str(args.positional[0], "map() filter name");
  CallArgs rest;
  rest.positional.assign(args.positional.begin() + 1, args.positional.end());
  rest.keywords = args.keywords;
  for (const Value& item : items) {
    in.count_step();
    CallArgs a = rest;
    out.push_back(in.filter(name, item, a));
  }
  return Value::iterator(std::move(out));
}

Value aggregate(Interp& in, const Value& v, CallArgs& args, bool want_max) {
  ArgReader r(want_max ? "max" : "min", args);
  const bool case_sensitive = r.get(0, "case_sensitive", Value::boolean(false)).truthy();
  const Value attribute = r.get(1, "attribute", Value::none());
  r.done();
  std::vector<Value> items = iterate(v);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  auto key = [&](const Value& x) {
    return sort_key(attribute.is_none() ? x : lookup_attribute_path(in, x, attribute),
                    case_sensitive);
  };
  size_t best = 0;
  Value best_key = key(items[0]);
  for (size_t i = 1; i < items.size(); ++i) {
    Value k = key(items[i]);
    if (want_max ? py_less(best_key, k) : py_less(k, best_key)) {
      best = i;
      best_key = std::move(k);
    }
  }
  return items[best];
}

Value f_max(Interp& in, const Value& v, CallArgs& args) { return aggregate(in, v, args, true); }
Value f_min(Interp& in, const Value& v, CallArgs& args) { return aggregate(in, v, args, false); }

// select/reject/selectattr/rejectattr
Value select_impl(Interp& in, const Value& v, CallArgs& args, bool by_attribute,
                  bool keep_matches) {
  if (!v.truthy()) return Value::iterator({});  // Jinja tests `if value:` before iterating
  std::vector<Value> items = iterate(v);
  size_t next = 0;
  Value attribute;
  if (by_attribute) {
    if (args.positional.empty()) type_error("Missing parameter for attribute name");
    attribute = args.positional[next++];
  }
  std::string test_name;
  bool has_test = false;
  if (next < args.positional.size()) {
    test_name = need_str(args.positional[next++], "test name");
    has_test = true;
  }
  CallArgs test_args;
  test_args.positional.assign(args.positional.begin() + ptrdiff_t(next), args.positional.end());
  test_args.keywords = args.keywords;
  std::vector<Value> out;
  for (const Value& item : items) {
    in.count_step();
    const Value subject = by_attribute ? lookup_attribute_path(in, item, attribute) : item;
    bool passed;
    if (has_test) {
      CallArgs a = test_args;
      passed = in.test(test_name, subject, a);
    } else {
      passed = subject.truthy();
    }
    if (passed == keep_matches) out.push_back(item);
  }
  return Value::iterator(std::move(out));
}

Value f_select(Interp& in, const Value& v, CallArgs& a) {
  return select_impl(in, v, a, false, true);
}
Value f_reject(Interp& in, const Value& v, CallArgs& a) {
  return select_impl(in, v, a, false, false);
}
Value f_selectattr(Interp& in, const Value& v, CallArgs& a) {
  return select_impl(in, v, a, true, true);
}
Value f_rejectattr(Interp& in, const Value& v, CallArgs& a) {
  return select_impl(in, v, a, true, false);
}

Value f_replace(Interp&, const Value& v, CallArgs& args) {
  ArgReader r("replace", args);
  const Value old_value = r.get(0, "old"), new_value = r.get(1, "new");
  const Value count = r.get(2, "count", Value::none());
  r.done();
  const int64_t n = count.is_none() ? -1 : to_int(count, "replace");
  return Value::str(text::replace(py_str(v), py_str(old_value), py_str(new_value), n));
}

Value f_reverse(Interp&, const Value& v, CallArgs& args) {
  ArgReader("reverse", args).done();
  if (v.is_string()) return markup_like(v, text::slice(v.as_str(), std::nullopt, std::nullopt, -1));
  const bool was_iterator = v.is_iterator();
  std::vector<Value> items = iterate(v);
  std::reverse(items.begin(), items.end());
  if (was_iterator) return Value::list(std::move(items));
  return Value::iterator(std::move(items),
                         v.is_dict() ? "dict_reversekeyiterator" : "list_reverseiterator");
}

Value f_round(Interp&, const Value& v, CallArgs& args) {
  ArgReader r("round", args);
  const int64_t precision = to_int(r.get(0, "precision", Value::integer(0)), "round");
  const Value method = r.get(1, "method", Value::str("common"));
  r.done();
  const std::string m = py_str(method);
  if (m != "common" && m != "ceil" && m != "floor")
    type_error("method must be common, ceil or floor");
  if (v.is_undefined()) undefined_error(v);
  if (!v.is_number()) type_error("type ", v.type_name(), " doesn't define __round__ method");
  if (m == "common" && v.is_integral()) {
    if (precision >= 0) return Value::integer(v.as_int());
    if (precision < -18) return Value::integer(0);
    // int.__round__ with negative digits: to a multiple of 10^-precision, ties to even.
    int64_t scale = 1;
    for (int64_t i = 0; i < -precision; ++i) scale *= 10;
    const int64_t x = v.as_int();
    int64_t q = x / scale, r = x % scale;
    if (r < 0) r += scale, q -= 1;
    if (2 * __int128(r) > scale || (2 * __int128(r) == scale && (q & 1))) q += 1;
    const __int128 result = __int128(q) * scale;
    if (result > INT64_MAX || result < INT64_MIN) type_error("integer overflow");
    return Value::integer(int64_t(result));
  }
  const double x = v.as_double();
  if (m != "common") {
    const double scale = std::pow(10.0, double(precision));
    return Value::number((m == "ceil" ? std::ceil(x * scale) : std::floor(x * scale)) / scale);
  }
  if (!std::isfinite(x)) return Value::number(x);
  if (precision > 300) return Value::number(x);
  if (precision < 0) {
    const double scale = std::pow(10.0, double(-precision));
    return Value::number(std::nearbyint(x / scale) * scale);
  }
  // Correctly rounded decimal (half to even on the exact binary value), as Python does.
  char buf[400];
  std::snprintf(buf, sizeof buf, "%.*f", int(precision), x);
  return Value::number(std::strtod(buf, nullptr));
}

Value f_safe(Interp&, const Value& v, CallArgs& args) {
  ArgReader("safe", args).done();
  return Value::str(py_str(v), true);
}

Value f_sort(Interp& in, const Value& v, CallArgs& args) {
  ArgReader r("sort", args);
  const bool reverse = r.get(0, "reverse", Value::boolean(false)).truthy();
  const bool case_sensitive = r.get(1, "case_sensitive", Value::boolean(false)).truthy();
  const Value attribute = r.get(2, "attribute", Value::none());
  r.done();
  std::vector<Value> items = iterate(v);
  std::vector<Value> attributes;
  if (attribute.is_string() && attribute.as_str().find(',') != std::string::npos) {
    for (const std::string& part : text::split(attribute.as_str(), std::string(","), -1, false))
      attributes.push_back(Value::str(text::strip(part, std::nullopt, true, true)));
  } else if (!attribute.is_none()) {
    attributes.push_back(attribute);
  }
  sort_values(
      items,
      [&](const Value& x) {
        if (attributes.empty()) return sort_key(x, case_sensitive);
        // A list of keys even for one attribute, as Jinja does (so that two Undefined keys
        // compare equal instead of failing).
        std::vector<Value> keys;
        for (const Value& a : attributes)
          keys.push_back(sort_key(lookup_attribute_path(in, x, a), case_sensitive));
        return Value::list(std::move(keys));
      },
      reverse);
  return Value::list(std::move(items));
}

Value f_string(Interp&, const Value& v, CallArgs& args) {
  ArgReader("string", args).done();
  return soft_str(v);
}

Value f_sum(Interp& in, const Value& v, CallArgs& args) {
  ArgReader r("sum", args);
  const Value attribute = r.get(0, "attribute", Value::none());
  Value total = r.get(1, "start", Value::integer(0));
  r.done();
  for (const Value& item : iterate(v))
    total = binary_op(in, BinOp::kAdd, total,
                      attribute.is_none() ? item : lookup_attribute_path(in, item, attribute));
  return total;
}

Value f_tojson(Interp&, const Value& v, CallArgs& args) {
  ArgReader r("tojson", args);
  JsonDumpOptions o;
  o.ensure_ascii = r.get(0, "ensure_ascii", Value::boolean(false)).truthy();
  const Value indent = r.get(1, "indent", Value::none());
  const Value separators = r.get(2, "separators", Value::none());
  o.sort_keys = r.get(3, "sort_keys", Value::boolean(false)).truthy();
  r.done();
  if (indent.is_string()) {
    o.indent_is_text = true;
    o.indent_text = indent.as_str();
  } else if (!indent.is_none()) {
    o.indent = int(std::clamp<int64_t>(to_int(indent, "tojson indent"), -1, 64));
    if (o.indent < 0) o.indent_is_text = true;  // a negative indent is "" but still indents
  }
  if (o.indent_is_text || o.indent >= 0) o.item_sep = ",";
  if (!separators.is_none()) {
    const std::vector<Value> seps = iterate(separators);
    if (seps.size() != 2 || !seps[0].is_string() || !seps[1].is_string())
      type_error("separators must be a pair of strings");
    o.item_sep = seps[0].as_str();
    o.key_sep = seps[1].as_str();
  }
  return Value::str(py_json_dumps(v, o));
}

Value f_trim(Interp&, const Value& v, CallArgs& args) {
  ArgReader r("trim", args);
  const auto chars = optional_str(r.get(0, "chars", Value::none()), "trim");
  r.done();
  const Value s = soft_str(v);
  return markup_like(s, text::strip(s.as_str(), chars, true, true));
}

Value f_truncate(Interp&, const Value& v, CallArgs& args) {
  ArgReader r("truncate", args);
  const int64_t length = to_int(r.get(0, "length", Value::integer(255)), "truncate");
  const bool killwords = r.get(1, "killwords", Value::boolean(false)).truthy();
  const std::string end = py_str(r.get(2, "end", Value::str("...")));
  const Value leeway_value = r.get(3, "leeway", Value::none());
  r.done();
  const int64_t leeway = leeway_value.is_none() ? 5 : to_int(leeway_value, "truncate");
  if (!v.is_string()) {
    // Jinja takes len() of the value as it is: short sequences pass through unchanged.
    if (py_len(v) <= length + leeway) return v;
    type_error("can only truncate strings, not ", v.type_name());
  }
  const std::string& s = v.as_str();
  const int64_t end_len = int64_t(text::length(end));
  if (length < end_len) type_error("expected length >= ", end_len, ", got ", length);
  if (leeway < 0) type_error("expected leeway >= 0, got ", leeway);
  if (int64_t(text::length(s)) <= length + leeway) return v;
  const std::string head = text::slice(s, std::nullopt, length - end_len, 1);
  if (killwords) return Value::str(head + end);
  return Value::str(text::split(head, std::string(" "), 1, true)[0] + end);
}

Value f_unique(Interp& in, const Value& v, CallArgs& args) {
  ArgReader r("unique", args);
  const bool case_sensitive = r.get(0, "case_sensitive", Value::boolean(false)).truthy();
  const Value attribute = r.get(1, "attribute", Value::none());
  r.done();
  std::vector<Value> seen, out;
  for (const Value& item : iterate(v)) {
    const Value key = sort_key(
        attribute.is_none() ? item : lookup_attribute_path(in, item, attribute), case_sensitive);
    if (key.is_list() || key.is_dict()) type_error("unhashable type: '", key.type_name(), "'");
    bool dup = false;
    for (const Value& s : seen)
      if (py_equal(s, key)) {
        dup = true;
        break;
      }
    if (dup) continue;
    seen.push_back(key);
    out.push_back(item);
  }
  return Value::iterator(std::move(out));
}

Value f_wordcount(Interp&, const Value& v, CallArgs& args) {
  ArgReader("wordcount", args).done();
  int64_t words = 0;
  bool in_word = false;
  for (char32_t c : text::decode(py_str(v))) {
    // Python's \w: letters, digits and "_" of any script (punctuation blocks excluded).
    const bool word_char = text::is_alnum(c) || c == '_' ||
                           (c >= 0x100 && !text::is_space(c) && !(c >= 0x2000 && c <= 0x2bff) &&
                            !(c >= 0x3000 && c <= 0x303f) && !(c >= 0xff00 && c <= 0xff0f));
    if (word_char && !in_word) ++words;
    in_word = word_char;
  }
  return Value::integer(words);
}

Value f_pprint(Interp&, const Value& v, CallArgs& args) {
  ArgReader("pprint", args).done();
  return Value::str(py_repr(v));
}

const std::unordered_map<std::string_view, FilterFn>& filters() {
  static const std::unordered_map<std::string_view, FilterFn> table = {
      {"abs", f_abs},
      {"attr", f_attr},
      {"batch", f_batch},
      {"capitalize", f_capitalize},
      {"center", f_center},
      {"count", f_length},
      {"d", f_default},
      {"default", f_default},
      {"dictsort", f_dictsort},
      {"e", f_escape},
      {"escape", f_escape},
      {"first", f_first},
      {"float", f_float},
      {"forceescape", f_forceescape},
      {"format", f_format},
      {"indent", f_indent},
      {"int", f_int},
      {"items", f_items},
      {"join", f_join},
      {"last", f_last},
      {"length", f_length},
      {"list", f_list},
      {"lower", f_lower},
      {"map", f_map},
      {"max", f_max},
      {"min", f_min},
      {"pprint", f_pprint},
      {"reject", f_reject},
      {"rejectattr", f_rejectattr},
      {"replace", f_replace},
      {"reverse", f_reverse},
      {"round", f_round},
      {"safe", f_safe},
      {"select", f_select},
      {"selectattr", f_selectattr},
      {"slice", f_slice},
      {"sort", f_sort},
      {"string", f_string},
      {"sum", f_sum},
      {"title", f_title},
      {"tojson", f_tojson},
      {"trim", f_trim},
      {"truncate", f_truncate},
      {"unique", f_unique},
      {"upper", f_upper},
      {"wordcount", f_wordcount},
  };
  return table;
}

// ---------------------------------------------------------------------------------------------
// Tests

using TestFn = bool (*)(Interp& in, const Value& v, CallArgs& args);

Value one_arg(std::string_view name, CallArgs& args) {
  ArgReader r(name, args);
  Value v = r.get(0, "other");
  r.done();
  return v;
}

void no_args(std::string_view name, CallArgs& args) { ArgReader(name, args).done(); }

bool t_boolean(Interp&, const Value& v, CallArgs& a) {
  no_args("boolean", a);
  return v.is_bool();
}
bool t_callable(Interp&, const Value& v, CallArgs& a) {
  no_args("callable", a);
  // Undefined has __call__ (which raises), so Python's callable() says yes.
  return v.is_undefined() || (v.is_object() && v.as_object().callable());
}
bool t_defined(Interp&, const Value& v, CallArgs& a) {
  no_args("defined", a);
  return !v.is_undefined();
}
bool t_undefined(Interp&, const Value& v, CallArgs& a) {
  no_args("undefined", a);
  return v.is_undefined();
}
bool t_none(Interp&, const Value& v, CallArgs& a) {
  no_args("none", a);
  return v.is_none();
}
bool t_number(Interp&, const Value& v, CallArgs& a) {
  no_args("number", a);
  return v.is_number();
}
bool t_integer(Interp&, const Value& v, CallArgs& a) {
  no_args("integer", a);
  return v.is_int();
}
bool t_float(Interp&, const Value& v, CallArgs& a) {
  no_args("float", a);
  return v.is_float();
}
bool t_string(Interp&, const Value& v, CallArgs& a) {
  no_args("string", a);
  return v.is_string();
}
bool t_mapping(Interp&, const Value& v, CallArgs& a) {
  no_args("mapping", a);
  return v.is_dict();
}
bool t_true(Interp&, const Value& v, CallArgs& a) {
  no_args("true", a);
  return v.is_bool() && v.as_bool();
}
bool t_false(Interp&, const Value& v, CallArgs& a) {
  no_args("false", a);
  return v.is_bool() && !v.as_bool();
}
bool t_escaped(Interp&, const Value& v, CallArgs& a) {
  no_args("escaped", a);
  return v.is_markup();
}
bool t_iterable(Interp&, const Value& v, CallArgs& a) {
  no_args("iterable", a);
  return v.is_undefined() || v.is_string() || v.is_sequence_like() || v.is_dict() ||
         v.is_iterator();
}
bool t_sequence(Interp&, const Value& v, CallArgs& a) {
  no_args("sequence", a);
  return v.is_undefined() || v.is_string() || v.is_sequence_like() || v.is_dict();
}
bool t_lower(Interp&, const Value& v, CallArgs& a) {
  no_args("lower", a);
  bool cased = false;
  for (char32_t c : text::decode(py_str(v))) {
    if (text::is_upper(c)) return false;
    cased |= text::is_lower(c);
  }
  return cased;
}
bool t_upper(Interp&, const Value& v, CallArgs& a) {
  no_args("upper", a);
  bool cased = false;
  for (char32_t c : text::decode(py_str(v))) {
    if (text::is_lower(c) && !text::is_upper(c)) return false;
    cased |= text::is_upper(c);
  }
  return cased;
}
bool t_odd(Interp& in, const Value& v, CallArgs& a) {
  no_args("odd", a);
  return py_equal(binary_op(in, BinOp::kMod, v, Value::integer(2)), Value::integer(1));
}
bool t_even(Interp& in, const Value& v, CallArgs& a) {
  no_args("even", a);
  return py_equal(binary_op(in, BinOp::kMod, v, Value::integer(2)), Value::integer(0));
}
bool t_divisibleby(Interp& in, const Value& v, CallArgs& a) {
  ArgReader r("divisibleby", a);
  const Value num = r.get(0, "num");
  r.done();
  return py_equal(binary_op(in, BinOp::kMod, v, num), Value::integer(0));
}
bool t_eq(Interp&, const Value& v, CallArgs& a) {
  return py_compare(CmpOp::kEq, v, one_arg("eq", a));
}
bool t_ne(Interp&, const Value& v, CallArgs& a) {
  return py_compare(CmpOp::kNe, v, one_arg("ne", a));
}
bool t_lt(Interp&, const Value& v, CallArgs& a) {
  return py_compare(CmpOp::kLt, v, one_arg("lt", a));
}
bool t_le(Interp&, const Value& v, CallArgs& a) {
  return py_compare(CmpOp::kLe, v, one_arg("le", a));
}
bool t_gt(Interp&, const Value& v, CallArgs& a) {
  return py_compare(CmpOp::kGt, v, one_arg("gt", a));
}
bool t_ge(Interp&, const Value& v, CallArgs& a) {
  return py_compare(CmpOp::kGe, v, one_arg("ge", a));
}
bool t_in(Interp&, const Value& v, CallArgs& a) { return py_contains(v, one_arg("in", a)); }
bool t_sameas(Interp&, const Value& v, CallArgs& a) {
  const Value o = one_arg("sameas", a);
  if (v.kind() != o.kind()) return false;
  switch (v.kind()) {
    case Value::Kind::kNone:
    case Value::Kind::kUndefined:
      return true;
    case Value::Kind::kBool:
      return v.as_bool() == o.as_bool();
    case Value::Kind::kInt:
      return v.as_int() == o.as_int() && v.as_int() >= -5 && v.as_int() <= 256;
    default:
      return v.identity() == o.identity();
  }
}
bool t_filter(Interp&, const Value& v, CallArgs& a) {
  no_args("filter", a);
  return v.is_string() && filters().count(v.as_str());
}
bool t_test(Interp&, const Value& v, CallArgs& a);

const std::unordered_map<std::string_view, TestFn>& tests() {
  static const std::unordered_map<std::string_view, TestFn> table = {
      {"boolean", t_boolean},
      {"callable", t_callable},
      {"defined", t_defined},
      {"divisibleby", t_divisibleby},
      {"eq", t_eq},
      {"equalto", t_eq},
      {"==", t_eq},
      {"escaped", t_escaped},
      {"even", t_even},
      {"false", t_false},
      {"filter", t_filter},
      {"float", t_float},
      {"ge", t_ge},
      {">=", t_ge},
      {"gt", t_gt},
      {"greaterthan", t_gt},
      {">", t_gt},
      {"in", t_in},
      {"integer", t_integer},
      {"iterable", t_iterable},
      {"le", t_le},
      {"<=", t_le},
      {"lower", t_lower},
      {"lt", t_lt},
      {"lessthan", t_lt},
      {"<", t_lt},
      {"mapping", t_mapping},
      {"ne", t_ne},
      {"!=", t_ne},
      {"none", t_none},
      {"number", t_number},
      {"odd", t_odd},
      {"sameas", t_sameas},
      {"sequence", t_sequence},
      {"string", t_string},
      {"test", t_test},
      {"true", t_true},
      {"undefined", t_undefined},
      {"upper", t_upper},
  };
  return table;
}

bool t_test(Interp&, const Value& v, CallArgs& a) {
  no_args("test", a);
  return v.is_string() && tests().count(v.as_str());
}

}  // namespace

Value apply_filter(Interp& in, std::string_view name, const Value& input, CallArgs& args) {
  const auto& table = filters();
  auto it = table.find(name);
  if (it == table.end()) type_error("No filter named '", name, "'.");
  return it->second(in, input, args);
}

bool apply_test(Interp& in, std::string_view name, const Value& input, CallArgs& args) {
  const auto& table = tests();
  auto it = table.find(name);
  if (it == table.end()) type_error("No test named '", name, "'.");
  return it->second(in, input, args);
}

// ---------------------------------------------------------------------------------------------
// Methods of str, list, tuple and dict

namespace {

const std::unordered_map<std::string_view, int>& str_methods() {
  static const std::unordered_map<std::string_view, int> names = {
      {"strip", 0},      {"lstrip", 0},       {"rstrip", 0},       {"split", 0},
      {"rsplit", 0},     {"splitlines", 0},   {"startswith", 0},   {"endswith", 0},
      {"replace", 0},    {"upper", 0},        {"lower", 0},        {"title", 0},
      {"capitalize", 0}, {"swapcase", 0},     {"casefold", 0},     {"find", 0},
      {"rfind", 0},      {"index", 0},        {"rindex", 0},       {"count", 0},
      {"join", 0},       {"format", 0},       {"center", 0},       {"ljust", 0},
      {"rjust", 0},      {"zfill", 0},        {"isalpha", 0},      {"isdigit", 0},
      {"isdecimal", 0},  {"isnumeric", 0},    {"isalnum", 0},      {"isspace", 0},
      {"islower", 0},    {"isupper", 0},      {"istitle", 0},      {"partition", 0},
      {"rpartition", 0}, {"removeprefix", 0}, {"removesuffix", 0}, {"isidentifier", 0},
      {"isascii", 0},
  };
  return names;
}

bool is_list_method(std::string_view n) {
  return n == "append" || n == "extend" || n == "insert" || n == "pop" || n == "remove" ||
         n == "index" || n == "count" || n == "reverse" || n == "sort" || n == "copy" ||
         n == "clear";
}

bool is_dict_method(std::string_view n) {
  return n == "get" || n == "items" || n == "keys" || n == "values" || n == "pop" ||
         n == "setdefault" || n == "update" || n == "copy" || n == "clear" || n == "popitem";
}

std::pair<int64_t, int64_t> start_end(ArgReader& r, size_t first, int64_t len) {
  const Value s = r.get(first, "start", Value::none()), e = r.get(first + 1, "end", Value::none());
  return {s.is_none() ? 0 : to_int(s, "slice"), e.is_none() ? len : to_int(e, "slice")};
}

std::string format_braces(Interp& in, const std::string& fmt, const CallArgs& args);

bool str_method(Interp& in, const Value& self, std::string_view name, CallArgs& args, Value& out) {
  const std::string& s = self.as_str();
  ArgReader r(name, args);
  auto result = [&](std::string v) { out = Value::str(std::move(v), self.is_markup()); };
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const auto chars = optional_str(r.get(0, "chars", Value::none()), name);
    r.done();
    result(text::strip(s, chars, name != "rstrip", name != "lstrip"));
  } else if (name == "split" || name == "rsplit") {
    const auto sep = optional_str(r.get(0, "sep", Value::none()), name);
    const int64_t maxsplit = to_int(r.get(1, "maxsplit", Value::integer(-1)), name);
    r.done();
    if (sep && sep->empty()) type_error("empty separator");
    std::vector<Value> parts;
    for (std::string& p : text::split(s, sep, maxsplit, name == "rsplit"))
      parts.push_back(Value::str(std::move(p)));
    out = Value::list(std::move(parts));
  } else if (name == "splitlines") {
    const bool keepends = r.get(0, "keepends", Value::boolean(false)).truthy();
    r.done();
    std::vector<Value> parts;
    for (std::string& p : text::splitlines(s, keepends)) parts.push_back(Value::str(std::move(p)));
    out = Value::list(std::move(parts));
  } else if (name == "startswith" || name == "endswith") {
    const Value affix = r.get(0, name == "startswith" ? "prefix" : "suffix");
    const auto [start, end] = start_end(r, 1, int64_t(text::length(s)));
    r.done();
    const std::string window = text::slice(s, start, end, 1);
    std::vector<Value> options;
    if (affix.is_tuple())
      options = affix.items();
    else if (affix.is_string())
      options.push_back(affix);
    else
      type_error(name, " first arg must be str or a tuple of str, not ", affix.type_name());
    bool hit = false;
    for (const Value& o : options) {
      const std::string& a = need_str(o, name);
      if (a.size() <= window.size() &&
          (name == "startswith" ? window.compare(0, a.size(), a) == 0
                                : window.compare(window.size() - a.size(), a.size(), a) == 0))
        hit = true;
    }
    out = Value::boolean(hit);
  } else if (name == "replace") {
    const std::string& from = need_str(r.get(0, "old"), "replace() argument 1");
    const std::string& to = need_str(r.get(1, "new"), "replace() argument 2");
    const int64_t count = to_int(r.get(2, "count", Value::integer(-1)), "replace");
    r.done();
    result(text::replace(s, from, to, count));
  } else if (name == "upper" || name == "lower" || name == "title" || name == "capitalize" ||
             name == "swapcase" || name == "casefold") {
    r.done();
    if (name == "upper")
      result(text::upper(s));
    else if (name == "lower" || name == "casefold")
      result(text::lower(s));
    else if (name == "title")
      result(text::py_title(s));
    else if (name == "capitalize")
      result(text::capitalize(s));
    else
      result(text::swapcase(s));
  } else if (name == "find" || name == "rfind" || name == "index" || name == "rindex" ||
             name == "count") {
    const std::string& sub = need_str(r.get(0, "sub"), name);
    const auto [start, end] = start_end(r, 1, int64_t(text::length(s)));
    r.done();
    if (name == "count") {
      out = Value::integer(text::count(s, sub, start, end));
    } else {
      const int64_t i = text::find(s, sub, start, end, name == "rfind" || name == "rindex");
      if (i < 0 && (name == "index" || name == "rindex")) type_error("substring not found");
      out = Value::integer(i);
    }
  } else if (name == "join") {
    const Value items = r.get(0, "iterable");
    r.done();
    std::string joined;
    size_t i = 0;
    for (const Value& item : iterate(items)) {
      if (!item.is_string())
        type_error("sequence item ", i, ": expected str instance, ", item.type_name(), " found");
      if (i++) joined += s;
      joined += item.as_str();
      if (joined.size() > size_limits().max_string_bytes) type_error("string too long");
    }
    result(std::move(joined));
  } else if (name == "format") {
    result(format_braces(in, s, args));
  } else if (name == "center" || name == "ljust" || name == "rjust") {
    const int64_t width = to_int(r.get(0, "width"), name);
    const std::string fill = py_str(r.get(1, "fillchar", Value::str(" ")));
    r.done();
    if (text::length(fill) != 1)
      type_error("The fill character must be exactly one character long");
    if (width > int64_t(size_limits().max_string_bytes)) type_error("string too long");
    result(name == "center"  ? text::center(s, width, fill)
           : name == "ljust" ? text::ljust(s, width, fill)
                             : text::rjust(s, width, fill));
  } else if (name == "zfill") {
    const int64_t width = to_int(r.get(0, "width"), name);
    r.done();
    if (width > int64_t(size_limits().max_string_bytes)) type_error("string too long");
    const int64_t len = int64_t(text::length(s));
    if (width <= len) {
      result(s);
    } else {
      const bool sign = !s.empty() && (s[0] == '+' || s[0] == '-');
      result((sign ? s.substr(0, 1) : "") + std::string(size_t(width - len), '0') +
             s.substr(sign ? 1 : 0));
    }
  } else if (name.substr(0, 2) == "is") {
    r.done();
    const std::u32string u = text::decode(s);
    bool ok = !u.empty();
    if (name == "isalpha")
      for (char32_t c : u) ok = ok && text::is_alpha(c);
    else if (name == "isdigit" || name == "isdecimal" || name == "isnumeric")
      for (char32_t c : u) ok = ok && text::is_digit(c);
    else if (name == "isalnum")
      for (char32_t c : u) ok = ok && text::is_alnum(c);
    else if (name == "isspace")
      for (char32_t c : u) ok = ok && text::is_space(c);
    else if (name == "isascii") {
      ok = true;
      for (char32_t c : u) ok = ok && c < 0x80;
    } else if (name == "isidentifier") {
      for (size_t i = 0; i < u.size(); ++i)
        ok = ok && (u[i] == '_' || text::is_alpha(u[i]) || (i > 0 && text::is_digit(u[i])));
    } else if (name == "islower" || name == "isupper") {
      bool cased = false;
      for (char32_t c : u) {
        if (name == "islower" ? text::is_upper(c) : (text::is_lower(c) && !text::is_upper(c)))
          ok = false;
        cased |= name == "islower" ? text::is_lower(c) : text::is_upper(c);
      }
      ok = ok && cased;
    } else {  // istitle
      ok = !u.empty() && text::py_title(s) == s;
      bool cased = false;
      for (char32_t c : u) cased |= text::is_upper(c) || text::is_lower(c);
      ok = ok && cased;
    }
    out = Value::boolean(ok);
  } else if (name == "partition" || name == "rpartition") {
    const std::string& sep = need_str(r.get(0, "sep"), name);
    r.done();
    if (sep.empty()) type_error("empty separator");
    const size_t hit = name == "partition" ? s.find(sep) : s.rfind(sep);
    if (hit == std::string::npos) {
      out = name == "partition" ? Value::tuple({Value::str(s), Value::str(""), Value::str("")})
                                : Value::tuple({Value::str(""), Value::str(""), Value::str(s)});
    } else {
      out = Value::tuple(
          {Value::str(s.substr(0, hit)), Value::str(sep), Value::str(s.substr(hit + sep.size()))});
    }
  } else if (name == "removeprefix" || name == "removesuffix") {
    const std::string& affix =
        need_str(r.get(0, name == "removeprefix" ? "prefix" : "suffix"), name);
    r.done();
    if (name == "removeprefix")
      result(s.compare(0, affix.size(), affix) == 0 ? s.substr(affix.size()) : s);
    else
      result(affix.size() <= s.size() &&
                     s.compare(s.size() - affix.size(), affix.size(), affix) == 0
                 ? s.substr(0, s.size() - affix.size())
                 : s);
  } else {
    return false;
  }
  return true;
}

bool list_method(Interp& in, const Value& self, std::string_view name, CallArgs& args, Value& out) {
  std::vector<Value>& items = self.as_list().items;
  ArgReader r(name, args);
  const bool tuple = self.is_tuple();
  if (tuple && name != "index" && name != "count") return false;
  auto mutate = [&] { in.note_mutation(self); };
  if (name == "append") {
    Value v = r.get(0, "object");
    r.done();
    check_list_size(items.size() + 1);
    items.push_back(std::move(v));
    mutate();
    out = Value::none();
  } else if (name == "extend") {
    const Value v = r.get(0, "iterable");
    r.done();
    std::vector<Value> more = iterate(v);
    check_list_size(items.size() + more.size());
    items.insert(items.end(), more.begin(), more.end());
    mutate();
    out = Value::none();
  } else if (name == "insert") {
    int64_t i = to_int(r.get(0, "index"), "insert");
    Value v = r.get(1, "object");
    r.done();
    const int64_t n = int64_t(items.size());
    if (i < 0) i = std::max<int64_t>(0, i + n);
    i = std::min(i, n);
    check_list_size(items.size() + 1);
    items.insert(items.begin() + i, std::move(v));
    mutate();
    out = Value::none();
  } else if (name == "pop") {
    int64_t i = to_int(r.get(0, "index", Value::integer(-1)), "pop");
    r.done();
    if (items.empty()) type_error("pop from empty list");
    if (i < 0) i += int64_t(items.size());
    if (i < 0 || i >= int64_t(items.size())) type_error("pop index out of range");
    out = items[size_t(i)];
    items.erase(items.begin() + i);
    mutate();
  } else if (name == "remove") {
    const Value v = r.get(0, "value");
    r.done();
    auto it =
        std::find_if(items.begin(), items.end(), [&](const Value& x) { return py_equal(x, v); });
    if (it == items.end()) type_error("list.remove(x): x not in list");
    items.erase(it);
    mutate();
    out = Value::none();
  } else if (name == "index") {
    const Value v = r.get(0, "value");
    const auto [start, end] = start_end(r, 1, int64_t(items.size()));
    r.done();
    const auto pos = text::slice_positions(int64_t(items.size()), start, end, 1);
    for (int64_t i : pos)
      if (py_equal(items[size_t(i)], v)) {
        out = Value::integer(i);
        return true;
      }
    type_error(py_repr(v), " is not in ", tuple ? "tuple" : "list");
  } else if (name == "count") {
    const Value v = r.get(0, "value");
    r.done();
    out = Value::integer(
        std::count_if(items.begin(), items.end(), [&](const Value& x) { return py_equal(x, v); }));
  } else if (name == "reverse") {
    r.done();
    std::reverse(items.begin(), items.end());
    mutate();
    out = Value::none();
  } else if (name == "sort") {
    const bool reverse = r.keyword("reverse", Value::boolean(false)).truthy();
    r.done();
    sort_values(
        items, [](const Value& v) { return v; }, reverse);
    mutate();
    out = Value::none();
  } else if (name == "copy") {
    r.done();
    out = Value::list(items);
  } else if (name == "clear") {
    r.done();
    items.clear();
    out = Value::none();
  } else {
    return false;
  }
  return true;
}

bool dict_method(Interp& in, const Value& self, std::string_view name, CallArgs& args, Value& out) {
  Dict& d = self.as_dict();
  ArgReader r(name, args);
  if (name == "get") {
    const Value key = r.get(0, "key");
    const Value fallback = r.get(1, "default", Value::none());
    r.done();
    const Value* v = d.find(key);
    out = v ? *v : fallback;
  } else if (name == "items" || name == "keys" || name == "values") {
    r.done();
    std::vector<Value> list;
    list.reserve(d.size());
    for (const auto& [k, v] : d.items())
      list.push_back(name == "items" ? Value::tuple({k, v}) : name == "keys" ? k : v);
    out = Value::list(std::move(list));
  } else if (name == "pop") {
    const Value key = r.get(0, "key");
    const bool has_default = r.has(1, "default");
    const Value fallback = r.get(1, "default");
    r.done();
    if (const Value* v = d.find(key)) {
      out = *v;
      d.erase(key);
      in.note_mutation(self);
    } else if (has_default) {
      out = fallback;
    } else {
      type_error(py_repr(key));
    }
  } else if (name == "setdefault") {
    const Value key = r.get(0, "key");
    const Value fallback = r.get(1, "default", Value::none());
    r.done();
    if (const Value* v = d.find(key)) {
      out = *v;
    } else {
      d.set(key, fallback);
      in.note_mutation(self);
      out = fallback;
    }
  } else if (name == "update") {
    if (args.positional.size() > 1) type_error("update expected at most 1 argument");
    if (!args.positional.empty()) {
      const Value& other = args.positional[0];
      if (other.is_dict()) {
        for (const auto& [k, v] : other.as_dict().items()) d.set(k, v);
      } else {
        for (const Value& pair : iterate(other)) {
          const std::vector<Value> kv = iterate(pair);
          if (kv.size() != 2)
            type_error("dictionary update sequence element has length ", kv.size(),
                       "; 2 is required");
          d.set(kv[0], kv[1]);
        }
      }
    }
    for (const auto& [k, v] : args.keywords) d.set(Value::str(k), v);
    in.note_mutation(self);
    out = Value::none();
  } else if (name == "copy") {
    r.done();
    out = Value::dict(std::make_shared<Dict>(d));
  } else if (name == "clear") {
    r.done();
    d.clear();
    out = Value::none();
  } else if (name == "popitem") {
    r.done();
    if (d.size() == 0) type_error("'popitem(): dictionary is empty'");
    const auto last = d.items().back();
    d.erase(last.first);
    out = Value::tuple({last.first, last.second});
  } else {
    return false;
  }
  return true;
}

}  // namespace

bool has_builtin_method(const Value& obj, std::string_view name) {
  if (obj.is_string()) return str_methods().count(name) > 0;
  if (obj.is_list()) return is_list_method(name);
  if (obj.is_tuple()) return name == "index" || name == "count";
  if (obj.is_dict()) return is_dict_method(name);
  return false;
}

bool call_builtin_method(Interp& in, const Value& obj, std::string_view name, CallArgs& args,
                         Value& result) {
  if (!has_builtin_method(obj, name)) return false;
  if (obj.is_string()) return str_method(in, obj, name, args, result);
  if (obj.is_sequence_like()) return list_method(in, obj, name, args, result);
  if (obj.is_dict()) return dict_method(in, obj, name, args, result);
  return false;
}

// ---------------------------------------------------------------------------------------------
// Formatting: Python's "%" and str.format

namespace {

struct Spec {
  char fill = ' ', align = 0, sign = '-';
  bool alternate = false, zero = false;
  int64_t width = -1, precision = -1;
  char grouping = 0, type = 0;
};

std::string pad(const std::string& body, const Spec& spec, char default_align) {
  const int64_t len = int64_t(text::length(body));
  if (spec.width <= len) return body;
  const size_t n = size_t(spec.width - len);
  const char align = spec.align ? spec.align : default_align;
  const std::string fill(1, spec.fill);
  std::string f;
  for (size_t i = 0; i < n; ++i) f += fill;
  if (align == '<') return body + f;
  if (align == '>') return f + body;
  if (align == '^') {
    std::string left, right;
    for (size_t i = 0; i < n / 2; ++i) left += fill;
    for (size_t i = 0; i < n - n / 2; ++i) right += fill;
    return left + body + right;
  }
  // '=': padding after the sign
  if (!body.empty() && (body[0] == '-' || body[0] == '+' || body[0] == ' '))
    return body.substr(0, 1) + f + body.substr(1);
  return f + body;
}

std::string group_digits(const std::string& digits, char sep) {
  std::string out;
  const size_t n = digits.size();
  for (size_t i = 0; i < n; ++i) {
    if (i && (n - i) % 3 == 0) out += sep;
    out += digits[i];
  }
  return out;
}

std::string format_number(const Value& v, Spec spec) {
  if (spec.zero && !spec.align) {
    spec.fill = '0';
    spec.align = '=';
  }
  char type = spec.type;
  if (v.is_integral() && (type == 0 || type == 'd' || type == 'n' || type == 'b' || type == 'o' ||
                          type == 'x' || type == 'X' || type == 'c')) {
    const int64_t i = v.as_int();
    if (type == 'c') return pad(text::encode(std::u32string(1, char32_t(i))), spec, '<');
    const uint64_t mag = i < 0 ? 0 - uint64_t(i) : uint64_t(i);
    std::string digits;
    const int base = type == 'b' ? 2 : type == 'o' ? 8 : (type == 'x' || type == 'X') ? 16 : 10;
    uint64_t m = mag;
    do {
      const int d = int(m % base);
      digits.insert(digits.begin(), char(d < 10 ? '0' + d : (type == 'X' ? 'A' : 'a') + d - 10));
      m /= base;
    } while (m);
    if (spec.grouping) digits = group_digits(digits, spec.grouping);
    std::string prefix;
    if (spec.alternate && base != 10)
      prefix = base == 2 ? "0b" : base == 8 ? "0o" : (type == 'X' ? "0X" : "0x");
    const std::string sign = i < 0 ? "-" : spec.sign == '+' ? "+" : spec.sign == ' ' ? " " : "";
    return pad(sign + prefix + digits, spec, '>');
  }
  double d = v.as_double();
  if (type == 0 && spec.precision < 0) {
    std::string body = v.is_integral() ? std::to_string(v.as_int()) : py_float_repr(d);
    if (d >= 0 && (spec.sign == '+' || spec.sign == ' ')) body.insert(0, 1, spec.sign);
    return pad(body, spec, '>');
  }
  const bool percent = type == '%';
  if (percent) d *= 100;
  char conv = percent ? 'f' : (type == 0 || type == 'n') ? 'g' : type;
  const int precision = int(spec.precision < 0 ? 6 : std::min<int64_t>(spec.precision, 300));
  std::string fmt = "%";
  if (spec.sign == '+' || spec.sign == ' ') fmt += spec.sign;
  if (spec.alternate) fmt += '#';
  fmt += str_cat(".", precision, conv);
  char buf[512];
  std::snprintf(buf, sizeof buf, fmt.c_str(), d);
  std::string body = buf;
  if (type == 0 && body.find_first_of(".eEn") == std::string::npos) body += ".0";  // like repr
  if (spec.grouping && std::isfinite(d)) {
    const size_t start = body[0] == '-' || body[0] == '+' || body[0] == ' ' ? 1 : 0;
    size_t end = body.find_first_not_of("0123456789", start);
    if (end == std::string::npos) end = body.size();
    body = body.substr(0, start) + group_digits(body.substr(start, end - start), spec.grouping) +
           body.substr(end);
  }
  if (percent) body += '%';
  return pad(body, spec, '>');
}

Spec parse_spec(const std::string& s) {
  Spec spec;
  size_t i = 0;
  auto is_align = [](char c) { return c == '<' || c == '>' || c == '^' || c == '='; };
  if (s.size() >= 2 && is_align(s[1])) {
    spec.fill = s[0];
    spec.align = s[1];
    i = 2;
  } else if (!s.empty() && is_align(s[0])) {
    spec.align = s[0];
    i = 1;
  }
  if (i < s.size() && (s[i] == '+' || s[i] == '-' || s[i] == ' ')) spec.sign = s[i++];
  if (i < s.size() && s[i] == '#') spec.alternate = true, ++i;
  if (i < s.size() && s[i] == '0') spec.zero = true, ++i;
  int64_t width = 0;
  bool has_width = false;
  while (i < s.size() && std::isdigit((unsigned char)s[i])) {
    width = std::min<int64_t>(width * 10 + (s[i++] - '0'), 1 << 24);
    has_width = true;
  }
  if (has_width) spec.width = width;
  if (i < s.size() && (s[i] == ',' || s[i] == '_')) spec.grouping = s[i++];
  if (i < s.size() && s[i] == '.') {
    ++i;
    int64_t p = 0;
    bool any = false;
    while (i < s.size() && std::isdigit((unsigned char)s[i])) {
      p = std::min<int64_t>(p * 10 + (s[i++] - '0'), 1 << 24);
      any = true;
    }
    if (!any) type_error("Format specifier missing precision");
    spec.precision = p;
  }
  if (i < s.size()) spec.type = s[i++];
  if (i != s.size()) type_error("Invalid format specifier '", s, "'");
  if (spec.width > int64_t(size_limits().max_string_bytes)) type_error("string too long");
  return spec;
}

std::string format_value(const Value& v, const std::string& spec_text) {
  if (spec_text.empty()) return py_str(v);
  const Spec spec = parse_spec(spec_text);
  if (v.is_string()) {
    if (spec.type && spec.type != 's')
      type_error("Unknown format code '", spec.type, "' for object of type 'str'");
    std::string body = v.as_str();
    if (spec.precision >= 0) body = text::slice(body, std::nullopt, spec.precision, 1);
    return pad(body, spec, '<');
  }
  if (v.is_number()) {
    if (v.is_bool() && !spec.type) return pad(py_str(v), spec, '<');
    if (v.is_float() &&
        std::string("dbcoxX").find(spec.type ? spec.type : '?') != std::string::npos)
      type_error("Unknown format code '", spec.type, "' for object of type 'float'");
    return format_number(v, spec);
  }
  type_error("unsupported format string passed to ", v.type_name(), ".__format__");
}

std::string format_braces(Interp& in, const std::string& fmt, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    const char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') {
        out += '}';
        ++i;
        continue;
      }
      type_error("Single '}' encountered in format string");
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    const size_t close = fmt.find('}', i);
    if (close == std::string::npos) type_error("Single '{' encountered in format string");
    std::string field = fmt.substr(i + 1, close - i - 1);
    i = close;
    std::string spec, conversion;
    if (const size_t colon = field.find(':'); colon != std::string::npos) {
      spec = field.substr(colon + 1);
      field.resize(colon);
    }
    if (const size_t bang = field.find('!'); bang != std::string::npos) {
      conversion = field.substr(bang + 1);
      field.resize(bang);
    }
    // The first name: a position, a keyword, or empty (automatic numbering).
    size_t name_end = field.find_first_of(".[");
    if (name_end == std::string::npos) name_end = field.size();
    const std::string head = field.substr(0, name_end);
    Value v;
    if (head.empty() || std::isdigit((unsigned char)head[0])) {
      const size_t index = head.empty() ? auto_index++ : size_t(std::stoul(head.substr(0, 9)));
      if (index >= args.positional.size())
        type_error("Replacement index ", index, " out of range for positional args tuple");
      v = args.positional[index];
    } else {
      bool found = false;
      for (const auto& [k, val] : args.keywords)
        if (k == head) {
          v = val;
          found = true;
        }
      if (!found) type_error("'", head, "'");
    }
    for (size_t p = name_end; p < field.size();) {
      if (field[p] == '.') {
        size_t e = field.find_first_of(".[", p + 1);
        if (e == std::string::npos) e = field.size();
        v = in.get_attr(v, field.substr(p + 1, e - p - 1));
        p = e;
      } else {
        const size_t e = field.find(']', p);
        if (e == std::string::npos) type_error("Missing ']' in format string");
        const std::string key = field.substr(p + 1, e - p - 1);
        const auto n = text::parse_int(key, 10);
        v = in.get_item(v, n && !key.empty() && std::isdigit((unsigned char)key[0])
                               ? Value::integer(*n)
                               : Value::str(key));
        p = e + 1;
      }
    }
    if (conversion == "r" || conversion == "a")
      v = Value::str(py_repr(v));
    else if (conversion == "s")
      v = Value::str(py_str(v));
    else if (!conversion.empty())
      type_error("Unknown conversion specifier ", conversion);
    out += format_value(v, spec);
    if (out.size() > size_limits().max_string_bytes) type_error("string too long");
  }
  return out;
}

}  // namespace

std::string percent_format(Interp&, const std::string& fmt, const Value& args) {
  std::vector<Value> positional;
  const Value* mapping = nullptr;
  if (args.is_tuple())
    positional = args.items();
  else if (args.is_dict())
    mapping = &args;
  else
    positional.push_back(args);
  if (mapping) positional.push_back(args);  // "%s" % {...} prints the dict
  size_t next = 0;
  std::string out;
  auto take = [&]() -> Value {
    if (next >= positional.size()) type_error("not enough arguments for format string");
    return positional[next++];
  };
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out += fmt[i];
      continue;
    }
    if (++i >= fmt.size()) type_error("incomplete format");
    Value key_value;
    bool keyed = false;
    if (fmt[i] == '(') {
      const size_t close = fmt.find(')', i);
      if (close == std::string::npos) type_error("incomplete format key");
      if (!mapping) type_error("format requires a mapping");
      const std::string key = fmt.substr(i + 1, close - i - 1);
      const Value* v = mapping->as_dict().find(key);
      if (!v) type_error("'", key, "'");
      key_value = *v;
      keyed = true;
      i = close + 1;
    }
    Spec spec;
    spec.align = '>';
    bool left = false, zero = false;
    for (; i < fmt.size() && std::string("-+ #0").find(fmt[i]) != std::string::npos; ++i) {
      if (fmt[i] == '-')
        left = true;
      else if (fmt[i] == '0')
        zero = true;
      else if (fmt[i] == '#')
        spec.alternate = true;
      else if (fmt[i] == '+' || (fmt[i] == ' ' && spec.sign != '+'))
        spec.sign = fmt[i];
    }
    auto number = [&](int64_t& target) {
      if (i < fmt.size() && fmt[i] == '*') {
        target = to_int(take(), "* wants int");
        ++i;
        return;
      }
      bool any = false;
      int64_t n = 0;
      while (i < fmt.size() && std::isdigit((unsigned char)fmt[i])) {
        n = std::min<int64_t>(n * 10 + (fmt[i++] - '0'), 1 << 24);
        any = true;
      }
      if (any) target = n;
    };
    number(spec.width);
    if (i < fmt.size() && fmt[i] == '.') {
      ++i;
      spec.precision = 0;
      number(spec.precision);
    }
    while (i < fmt.size() && (fmt[i] == 'h' || fmt[i] == 'l' || fmt[i] == 'L')) ++i;
    if (i >= fmt.size()) type_error("incomplete format");
    const char conv = fmt[i];
    if (left) spec.align = '<';
    if (conv == '%') {
      out += '%';
      continue;
    }
    const Value v = keyed ? key_value : take();
    std::string body;
    switch (conv) {
      case 's':
      case 'r':
      case 'a': {
        body = conv == 's' ? py_str(v) : py_repr(v);
        if (spec.precision >= 0) body = text::slice(body, std::nullopt, spec.precision, 1);
        out += pad(body, spec, '>');
        break;
      }
      case 'd':
      case 'i':
      case 'u':
      case 'x':
      case 'X':
      case 'o': {
        if (v.is_undefined()) undefined_error(v);
        if (!v.is_number())
          type_error("%", conv, " format: a real number is required, not ", v.type_name());
        if (v.is_float() && conv != 'd' && conv != 'i' && conv != 'u')
          type_error("%", conv, " format: an integer is required, not float");
        const double d = v.as_double();
        if (v.is_float() && (!std::isfinite(d) || std::fabs(d) >= 9.2e18))
          type_error("cannot convert float to integer");
        Spec digits;
        digits.type = conv == 'x' || conv == 'X' || conv == 'o' ? conv : 'd';
        digits.alternate = spec.alternate;
        digits.sign = spec.sign;
        std::string body =
            format_number(Value::integer(v.is_float() ? int64_t(d) : v.as_int()), digits);
        if (spec.precision > 0) {  // "%.3d" pads the digits with zeros
          const size_t lead = (body[0] == '-' || body[0] == '+' || body[0] == ' ' ? 1 : 0) +
                              (spec.alternate && digits.type != 'd' ? 2 : 0);
          const int64_t have = int64_t(body.size() - lead);
          if (have < spec.precision) body.insert(lead, size_t(spec.precision - have), '0');
        }
        Spec layout = spec;
        if (zero && !left) {
          layout.fill = '0';
          layout.align = '=';
        }
        out += pad(body, layout, '>');
        break;
      }
      case 'e':
      case 'E':
      case 'f':
      case 'F':
      case 'g':
      case 'G': {
        if (v.is_undefined()) undefined_error(v);
        if (!v.is_number()) type_error("must be real number, not ", v.type_name());
        std::string f = "%";
        if (left) f += '-';
        if (spec.sign == '+' || spec.sign == ' ') f += spec.sign;
        if (spec.alternate) f += '#';
        if (zero) f += '0';
        if (spec.width >= 0) f += std::to_string(spec.width);
        f += str_cat(".", spec.precision < 0 ? 6 : std::min<int64_t>(spec.precision, 300));
        f += conv;
        std::vector<char> buf(size_t(std::max<int64_t>(spec.width, 0)) + 400);
        std::snprintf(buf.data(), buf.size(), f.c_str(), v.as_double());
        out += buf.data();
        break;
      }
      case 'c': {
        if (v.is_string()) {
          if (text::length(v.as_str()) != 1) type_error("%c requires int or char");
          body = v.as_str();
        } else {
          body = text::encode(std::u32string(1, char32_t(to_int(v, "%c"))));
        }
        out += pad(body, spec, '>');
        break;
      }
      default: {
        char code[8];
        std::snprintf(code, sizeof code, "%x", unsigned((unsigned char)conv));
        type_error("unsupported format character '", std::string(1, conv), "' (0x", code,
                   ") at index ", i);
      }
    }
    if (out.size() > size_limits().max_string_bytes) type_error("string too long");
  }
  // Python only complains about unused arguments when the argument cannot be a mapping.
  const bool maybe_mapping = args.is_dict() || args.is_list() || args.is_undefined();
  if (!maybe_mapping && next < positional.size())
    type_error("not all arguments converted during string formatting");
  return out;
}

// ---------------------------------------------------------------------------------------------
// Globals

namespace {

class CyclerObject : public Object {
 public:
  explicit CyclerObject(std::vector<Value> items) : items_(std::move(items)) {}
  std::string type_name() const override { return "Cycler"; }
  Value get_attr(Interp& in, std::string_view name) override {
    if (name == "current") return items_[pos_];
    if (has_method(name))
      return Value::object(
          std::make_shared<BoundMethod>(Value::object(shared_from_this()), std::string(name)));
    return Object::get_attr(in, name);
  }
  bool has_method(std::string_view name) const override {
    return name == "next" || name == "reset";
  }
  bool call_method(Interp&, std::string_view name, CallArgs& args, Value& result) override {
    if (!has_method(name)) return false;
    ArgReader(name, args).done();
    if (name == "reset") {
      pos_ = 0;
      result = Value::none();
    } else {
      result = items_[pos_];
      pos_ = (pos_ + 1) % items_.size();
    }
    return true;
  }

 private:
  std::vector<Value> items_;
  size_t pos_ = 0;
};

class JoinerObject : public Object {
 public:
  explicit JoinerObject(Value sep) : sep_(std::move(sep)) {}
  std::string type_name() const override { return "Joiner"; }
  bool callable() const override { return true; }
  Value call(Interp&, CallArgs& args) override {
    ArgReader("joiner", args).done();
    if (!used_) {
      used_ = true;
      return Value::str("");
    }
    return sep_;
  }

 private:
  Value sep_;
  bool used_ = false;
};

constexpr int64_t kMaxRange = 100000;  // Jinja's sandbox limit

Value g_range(Interp&, CallArgs& args) {
  if (!args.keywords.empty()) type_error("range() takes no keyword arguments");
  const auto& p = args.positional;
  if (p.empty() || p.size() > 3) type_error("range expected at most 3 arguments, got ", p.size());
  int64_t start = 0, stop, step = 1;
  if (p.size() == 1) {
    stop = to_int(p[0], "range");
  } else {
    start = to_int(p[0], "range");
    stop = to_int(p[1], "range");
    if (p.size() == 3) step = to_int(p[2], "range");
  }
  if (step == 0) type_error("range() arg 3 must not be zero");
  const __int128 span = step > 0 ? (__int128(stop) - start + step - 1) / step
                                 : (__int128(start) - stop - step - 1) / -step;
  if (span > kMaxRange)
    type_error("Range too big. The sandbox blocks ranges larger than MAX_RANGE (", kMaxRange, ").");
  std::vector<Value> out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
    out.push_back(Value::integer(i));
  return Value::list(std::move(out));
}

std::shared_ptr<Dict> dict_from_args(CallArgs& args, const char* name) {
  auto d = std::make_shared<Dict>();
  if (args.positional.size() > 1)
    type_error(name, " expected at most 1 argument, got ", args.positional.size());
  if (!args.positional.empty()) {
    const Value& src = args.positional[0];
    if (src.is_dict()) {
      for (const auto& [k, v] : src.as_dict().items()) d->set(k, v);
    } else {
      for (const Value& pair : iterate(src)) {
        const std::vector<Value> kv = iterate(pair);
        if (kv.size() != 2)
          type_error("dictionary update sequence element has length ", kv.size(),
                     "; 2 is required");
        d->set(kv[0], kv[1]);
      }
    }
  }
  for (const auto& [k, v] : args.keywords) d->set(Value::str(k), v);
  return d;
}

Value g_dict(Interp&, CallArgs& args) { return Value::dict(dict_from_args(args, "dict")); }

Value g_namespace(Interp& in, CallArgs& args) {
  auto ns = std::make_shared<NamespaceObject>();
  ns->attrs = *dict_from_args(args, "namespace");
  const Value v = Value::object(ns);
  in.note_mutation(v);
  return v;
}

Value g_cycler(Interp&, CallArgs& args) {
  if (!args.keywords.empty()) type_error("cycler() takes no keyword arguments");
  if (args.positional.empty()) type_error("at least one item has to be provided");
  return Value::object(std::make_shared<CyclerObject>(args.positional));
}

Value g_joiner(Interp&, CallArgs& args) {
  ArgReader r("joiner", args);
  Value sep = r.get(0, "sep", Value::str(", "));
  r.done();
  return Value::object(std::make_shared<JoinerObject>(std::move(sep)));
}

Value g_raise_exception(Interp&, CallArgs& args) {
  ArgReader r("raise_exception", args);
  const Value message = r.get(0, "message");
  r.done();
  throw RaisedError(py_str(message));
}

Value g_strftime_now(Interp& in, CallArgs& args) {
  ArgReader r("strftime_now", args);
  const std::string format = need_str(r.get(0, "format"), "strftime_now() format");
  r.done();
  const DateTime& now = in.now();
  // Python handles %f, %z and %Z itself (a naive datetime has no zone), the C library the rest.
  std::string c_format;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] == '%' && i + 1 < format.size()) {
      const char c = format[++i];
      if (c == 'f') {
        char buf[8];
        std::snprintf(buf, sizeof buf, "%06d", now.microsecond);
        c_format += buf;
      } else if (c == 'z' || c == 'Z') {
        // empty for a naive datetime
      } else {
        c_format += '%';
        c_format += c;
      }
    } else {
      c_format += format[i];
    }
  }
  std::tm tm{};
  tm.tm_year = now.year - 1900;
  tm.tm_mon = now.month - 1;
  tm.tm_mday = now.day;
  tm.tm_hour = now.hour;
  tm.tm_min = now.minute;
  tm.tm_sec = now.second;
  std::time_t t = timegm(&tm);  // fills the weekday and day of the year
  std::tm full{};
  gmtime_r(&t, &full);
  full.tm_isdst = -1;
  if (c_format.empty()) return Value::str("");
  for (size_t size = 256; size <= 256 * (c_format.size() + 16); size *= 4) {
    std::string buf(size, '\0');
    const size_t n = std::strftime(buf.data(), buf.size(), c_format.c_str(), &full);
    if (n > 0) {
      buf.resize(n);
      return Value::str(std::move(buf));
    }
  }
  return Value::str("");
}

}  // namespace

const Value* find_global(std::string_view name) {
  static const std::unordered_map<std::string_view, Value> globals = [] {
    std::unordered_map<std::string_view, Value> g;
    auto add = [&](const char* n, BuiltinFunction::Fn fn) {
      g.emplace(n, Value::object(std::make_shared<BuiltinFunction>(n, fn)));
    };
    add("range", g_range);
    add("dict", g_dict);
    add("namespace", g_namespace);
    add("cycler", g_cycler);
    add("joiner", g_joiner);
    add("raise_exception", g_raise_exception);
    add("strftime_now", g_strftime_now);
    return g;
  }();
  auto it = globals.find(name);
  return it == globals.end() ? nullptr : &it->second;
}

}  // namespace muse::jinja
