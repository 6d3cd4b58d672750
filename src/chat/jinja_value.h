// Internal to the Jinja interpreter: values with Python semantics (types, equality, ordering,
// str() and repr(), json.dumps) and the errors that templates raise.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "util/error.h"
#include "util/json.h"

namespace muse::jinja {

class Interp;
class Value;

// A runtime error of the template (Python's TypeError, UndefinedError, ...). The interpreter
// adds the line of the statement where it surfaced.
class TemplateError : public Error {
 public:
  explicit TemplateError(const std::string& msg, int line = 0) : Error(msg), line(line) {}
  int line;
};

// raise_exception(msg) from the template: the message passes through unchanged.
class RaisedError : public Error {
 public:
  explicit RaisedError(const std::string& msg) : Error(msg) {}
};

// Concatenates text pieces (to_text() of each). Also sidesteps GCC 12's false -Wrestrict
// warnings on chains of "literal" + std::string.
template <typename... Parts>
std::string str_cat(const Parts&... parts) {
  std::string out;
  ((out += to_text(parts)), ...);
  return out;
}

template <typename... Parts>
[[noreturn]] void type_error(const Parts&... parts) {
  throw TemplateError(str_cat(parts...));
}

// Size limits of the render running on this thread; strings and lists check them when they
// are created or grow, so that no template can exhaust memory.
struct SizeLimits {
  size_t max_string_bytes = size_t(64) << 20;
  size_t max_list_items = size_t(4) << 20;
};
SizeLimits& size_limits();  // this thread's (a function, not a variable: GCC's UBSan misreads
                             // extern thread_local variables as null)
void check_list_size(size_t n);

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keywords;
};

// Things that are neither plain data nor containers: macros, builtin functions, bound
// methods, the loop variable, namespaces, cyclers.
class Object : public std::enable_shared_from_this<Object> {
 public:
  virtual ~Object() = default;
  virtual std::string type_name() const = 0;  // Python's class name
  virtual std::string repr() const;
  virtual Value get_attr(Interp& in, std::string_view name);  // Undefined when missing
  virtual bool callable() const { return false; }
  virtual Value call(Interp& in, CallArgs& args);
  // obj.name(args) without creating a bound method; false when there is no such method.
  virtual bool call_method(Interp& in, std::string_view name, CallArgs& args, Value& result);
  virtual bool has_method(std::string_view) const { return false; }
};

class Dict;
struct List {
  std::vector<Value> items;
};
// A one-shot iterator (Python generators from select/map, reversed(), ...): always true,
// has no length, and iterating it consumes it.
struct Iterator {
  std::vector<Value> items;
  size_t pos = 0;
  std::string type_name;
};

class Value {
 public:
  enum class Kind : uint8_t {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kTuple,
    kDict,
    kIterator,
    kObject
  };

  Value() = default;                            // Undefined
  static Value undefined(std::string message);  // message: the error when it is used
  static Value none() { return Value(Kind::kNone); }
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value number(double f);
  static Value str(std::string s, bool markup = false);
  static Value list(std::vector<Value> items = {});
  static Value tuple(std::vector<Value> items);
  static Value dict(std::shared_ptr<Dict> d);
  static Value dict();
  static Value iterator(std::vector<Value> items, std::string type_name = "generator");
  static Value object(std::shared_ptr<Object> o);
  static Value from_json(const Json& j);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  bool is_number() const {
    return kind_ == Kind::kBool || kind_ == Kind::kInt || kind_ == Kind::kFloat;
  }
  bool is_integral() const { return kind_ == Kind::kBool || kind_ == Kind::kInt; }  // Python int
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_markup() const { return kind_ == Kind::kString && markup_; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_tuple() const { return kind_ == Kind::kTuple; }
  bool is_sequence_like() const { return kind_ == Kind::kList || kind_ == Kind::kTuple; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_iterator() const { return kind_ == Kind::kIterator; }
  bool is_object() const { return kind_ == Kind::kObject; }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return kind_ == Kind::kBool ? int64_t(b_) : i_; }  // bool or int
  double as_double() const;                                                   // any number
  const std::string& as_str() const { return *static_cast<const std::string*>(ptr_.get()); }
  const std::string& undefined_message() const;
  List& as_list() const { return *static_cast<List*>(ptr_.get()); }  // list or tuple
  const std::vector<Value>& items() const { return as_list().items; }
  Dict& as_dict() const { return *static_cast<Dict*>(ptr_.get()); }
  Iterator& as_iterator() const { return *static_cast<Iterator*>(ptr_.get()); }
  Object& as_object() const { return *static_cast<Object*>(ptr_.get()); }
  const void* identity() const { return ptr_.get(); }

  bool truthy() const;
  std::string type_name() const;  // Python's: "int", "str", "dict", "NoneType", ...

 private:
  explicit Value(Kind k) : kind_(k) {}
  Kind kind_ = Kind::kUndefined;
  bool markup_ = false;
  union {
    bool b_;
    int64_t i_;
    double f_ = 0;
  };
  std::shared_ptr<void> ptr_;
};

// An insertion-ordered dict with Python key equality (1 == 1.0 == True).
class Dict {
 public:
  using Item = std::pair<Value, Value>;
  const std::vector<Item>& items() const { return items_; }
  size_t size() const { return items_.size(); }
  const Value* find(const Value& key) const;
  const Value* find(std::string_view key) const;
  void set(Value key, Value value);
  bool erase(const Value& key);
  void clear();

 private:
  static constexpr size_t kIndexFrom = 16;
  ptrdiff_t index_of(const Value& key) const;
  ptrdiff_t index_of(std::string_view key) const;
  void rebuild_index();
  std::vector<Item> items_;
  std::unordered_map<std::string, size_t> string_index_;  // once size >= kIndexFrom
};

// Python semantics.
bool py_equal(const Value& a, const Value& b, int depth = 0);
bool py_less(const Value& a, const Value& b, const char* op = "<", int depth = 0);
std::string py_str(const Value& v);   // str(v); Undefined is ""
std::string py_repr(const Value& v);  // repr(v)
void append_str(std::string& out, const Value& v);
std::string py_float_repr(double d);
std::string py_string_repr(std::string_view s);
// json.dumps(v, ensure_ascii, indent, separators, sort_keys). indent < 0 means None; a
// non-empty indent_text overrides indent (indent given as a string).
struct JsonDumpOptions {
  bool ensure_ascii = false;
  int indent = -1;
  std::string indent_text;
  bool indent_is_text = false;
  std::string item_sep = ", ", key_sep = ": ";
  bool sort_keys = false;
};
std::string py_json_dumps(const Value& v, const JsonDumpOptions& options);

// The items a for loop visits: list/tuple items, dict keys, string characters; Undefined is
// empty; an iterator is consumed. Throws a TypeError for anything else.
std::vector<Value> iterate(const Value& v);
// len(v); throws a TypeError where Python does.
int64_t py_len(const Value& v);

}  // namespace muse::jinja
