// GGUF v2/v3: a memory-mapped reader that validates everything before anyone reads it, and a
// writer. Every malformed file is reported by a one-line muse::Error, never by a crash.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "quant/types.h"

namespace muse {

enum class GgufType : uint32_t {
  kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5, kFloat32 = 6,
  kBool = 7, kString = 8, kArray = 9, kUint64 = 10, kInt64 = 11, kFloat64 = 12,
};
const char* gguf_type_name(GgufType t);

// One metadata value. Strings and array elements point into the mapped file.
struct GgufValue {
  GgufType type = GgufType::kUint8;
  uint64_t u = 0;  // unsigned integers and bool
  int64_t i = 0;   // signed integers
  double f = 0;    // floats
  std::string_view str;
  // Arrays: element type, count, and either raw little-endian scalars or parsed elements.
  GgufType elem_type = GgufType::kUint8;
  uint64_t count = 0;
  const uint8_t* raw = nullptr;           // scalar arrays
  std::vector<std::string_view> strings;  // string arrays
  std::vector<GgufValue> nested;          // arrays of arrays

  bool is_integer() const;
  bool is_float() const { return type == GgufType::kFloat32 || type == GgufType::kFloat64; }
  // Conversions that fail with a message naming `what` when the value does not fit.
  int64_t as_int(std::string_view what) const;
  double as_double(std::string_view what) const;
  std::string as_string(std::string_view what) const;
  std::vector<float> as_float_array(std::string_view what) const;
  std::vector<int64_t> as_int_array(std::string_view what) const;
  // Short human-readable rendering (arrays abbreviated), for `muse info`.
  std::string describe(size_t max_items = 8) const;
};

struct GgufTensor {
  std::string name;
  GgmlType type = GgmlType::F32;
  int n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};  // ne[0] is the contiguous dimension
  uint64_t offset = 0;           // from the start of the data section
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  int64_t elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  std::string shape() const;  // "[576, 49152]"
};

class GgufFile {
 public:
  // Maps and parses a file. Throws muse::Error("FILE: what is wrong").
  static std::unique_ptr<GgufFile> open(const std::string& path);
  // Parses bytes owned by the caller (fuzzing, tests); they must outlive the object.
  static std::unique_ptr<GgufFile> from_memory(const uint8_t* data, size_t size,
                                               const std::string& label = "<memory>");
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::string& path() const { return path_; }
  size_t file_size() const { return size_; }

  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* find(std::string_view key) const;
  const GgufValue& at(std::string_view key) const;  // throws when missing
  std::string get_string(std::string_view key, const std::string& fallback = "") const;
  int64_t get_int(std::string_view key, int64_t fallback) const;
  double get_double(std::string_view key, double fallback) const;

  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find_tensor(std::string_view name) const;

  // Gives back the file's pages wholly inside [p, p + n) (a tensor copied elsewhere): they are
  // read from the file again if touched. Nothing for bytes not mapped from a file.
  void release(const uint8_t* p, size_t n) const;

 private:
  GgufFile() = default;
  void parse();

  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t, std::less<>> kv_index_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

// Builds a GGUF v3 file in memory and writes it.
class GgufWriter {
 public:
  void set_string(const std::string& key, const std::string& value);
  void set_u32(const std::string& key, uint32_t value);
  void set_i32(const std::string& key, int32_t value);
  void set_u64(const std::string& key, uint64_t value);
  void set_f32(const std::string& key, float value);
  void set_bool(const std::string& key, bool value);
  void set_string_array(const std::string& key, const std::vector<std::string>& values);
  void set_f32_array(const std::string& key, const std::vector<float>& values);
  void set_i32_array(const std::string& key, const std::vector<int32_t>& values);
  // Raw value bytes (type tag included) for tests of unusual files.
  void set_raw(const std::string& key, const std::string& typed_value_bytes);

  // Tensor data is copied; dims are ne[0] (contiguous) first.
  void add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& dims,
                  const void* data, size_t nbytes);

  std::string to_bytes(uint32_t version = 3) const;
  void write(const std::string& path) const;  // throws muse::Error on I/O failure

 private:
  struct Tensor {
    std::string name;
    GgmlType type;
    std::vector<int64_t> dims;
    std::string data;
  };
  void set(const std::string& key, std::string bytes);
  std::string header_bytes(uint32_t version) const;
  size_t padded(size_t n) const { return (n + alignment_ - 1) / alignment_ * alignment_; }
  std::vector<std::pair<std::string, std::string>> kv_;
  std::vector<Tensor> tensors_;
  uint32_t alignment_ = 32;
};

}  // namespace muse
