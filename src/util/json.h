// A small JSON value with a strict parser (RFC 8259) and a compact writer. Objects keep their
// members in insertion order (as Python dicts do), because chat templates print tool schemas
// and iterate over arguments in the order they were written.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace muse {

class JsonObject;

class Json {
 public:
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };
  using Array = std::vector<Json>;
  using Object = JsonObject;

  Json() = default;
  Json(std::nullptr_t) {}
  Json(bool b) : kind_(Kind::kBool), bool_(b) {}
  Json(double n) : kind_(Kind::kNumber), number_(n) {}
  Json(int n) : Json(int64_t(n)) {}
  Json(int64_t n) : kind_(Kind::kNumber), integer_(true), number_(double(n)), int_(n) {}
  Json(std::string s) : kind_(Kind::kString), string_(std::move(s)) {}
  Json(const char* s) : Json(std::string(s)) {}
  Json(Array a) : kind_(Kind::kArray), array_(std::make_shared<Array>(std::move(a))) {}
  Json(Object o);

  // Throws muse::Error with the byte offset of the first problem.
  static Json parse(std::string_view text);

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::kNull; }
  bool is_number() const { return kind_ == Kind::kNumber; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_array() const { return kind_ == Kind::kArray; }
  bool is_object() const { return kind_ == Kind::kObject; }
  // A number written without fraction or exponent that fits int64 (or built from an integer):
  // Python's json module reads those as int, the rest as float.
  bool is_integer() const { return kind_ == Kind::kNumber && integer_; }

  bool as_bool() const;
  double as_number() const;
  int64_t as_int() const;
  const std::string& as_string() const;
  const Array& as_array() const;
  const Object& as_object() const;
  Array& mutable_array();
  Object& mutable_object();

  // Object member access; at() throws when missing, find() returns nullptr.
  const Json& at(const std::string& key) const;
  const Json* find(const std::string& key) const;
  const Json& operator[](size_t i) const { return as_array().at(i); }
  size_t size() const;

  std::string dump() const;
  void dump_to(std::string& out) const;

 private:
  Kind kind_ = Kind::kNull;
  bool bool_ = false;
  bool integer_ = false;
  double number_ = 0;
  int64_t int_ = 0;  // exact value when integer_
  std::string string_;
  std::shared_ptr<Array> array_;
  std::shared_ptr<Object> object_;
};

// A JSON object: members in insertion order, with std::map's interface. Assigning to an
// existing key keeps its position (as Python does for duplicate keys). Lookups are linear for
// small objects and hashed for large ones.
class JsonObject {
 public:
  using value_type = std::pair<std::string, Json>;
  using iterator = std::vector<value_type>::iterator;
  using const_iterator = std::vector<value_type>::const_iterator;

  JsonObject() = default;
  JsonObject(std::initializer_list<value_type> members);

  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  iterator begin() { return items_.begin(); }
  iterator end() { return items_.end(); }
  const_iterator begin() const { return items_.begin(); }
  const_iterator end() const { return items_.end(); }

  iterator find(std::string_view key);
  const_iterator find(std::string_view key) const;
  size_t count(std::string_view key) const { return find(key) != end() ? 1 : 0; }
  const Json& at(std::string_view key) const;  // throws muse::Error when missing
  Json& operator[](std::string_view key);      // appends a null member when missing
  std::pair<iterator, bool> emplace(std::string key, Json value);  // keeps an existing value
  std::pair<iterator, bool> insert_or_assign(std::string key, Json value);
  size_t erase(std::string_view key);
  void clear();

 private:
  static constexpr size_t kIndexFrom = 16;  // members before lookups switch to hashing
  ptrdiff_t index_of(std::string_view key) const;
  void rebuild_index();

  std::vector<value_type> items_;
  std::unordered_map<std::string, size_t> index_;  // key -> position, once size >= kIndexFrom
};

inline Json::Json(Object o)
    : kind_(Kind::kObject), object_(std::make_shared<Object>(std::move(o))) {}

// Appends s as a quoted JSON string.
void append_json_string(std::string& out, std::string_view s);
// Shortest text that reads back as the same float.
std::string format_float(float v);

}  // namespace muse
