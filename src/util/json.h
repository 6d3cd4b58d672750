// A small JSON value with a strict parser (RFC 8259) and a compact writer.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace muse {

class Json {
 public:
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };
  using Array = std::vector<Json>;
  using Object = std::map<std::string, Json>;

  Json() = default;
  Json(std::nullptr_t) {}
  Json(bool b) : kind_(Kind::kBool), bool_(b) {}
  Json(double n) : kind_(Kind::kNumber), number_(n) {}
  Json(int n) : Json(double(n)) {}
  Json(int64_t n) : Json(double(n)) {}
  Json(std::string s) : kind_(Kind::kString), string_(std::move(s)) {}
  Json(const char* s) : Json(std::string(s)) {}
  Json(Array a) : kind_(Kind::kArray), array_(std::make_shared<Array>(std::move(a))) {}
  Json(Object o) : kind_(Kind::kObject), object_(std::make_shared<Object>(std::move(o))) {}

  // Throws muse::Error with the byte offset of the first problem.
  static Json parse(std::string_view text);

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::kNull; }
  bool is_number() const { return kind_ == Kind::kNumber; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_array() const { return kind_ == Kind::kArray; }
  bool is_object() const { return kind_ == Kind::kObject; }

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
  double number_ = 0;
  std::string string_;
  std::shared_ptr<Array> array_;
  std::shared_ptr<Object> object_;
};

// Appends s as a quoted JSON string.
void append_json_string(std::string& out, std::string_view s);
// Shortest text that reads back as the same float.
std::string format_float(float v);

}  // namespace muse
