#include "io/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>

#include "util/error.h"

namespace muse {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr int kMaxArrayDepth = 8;
constexpr uint64_t kMaxDims = 4;

int scalar_size(GgufType t) {
  switch (t) {
    case GgufType::kUint8: case GgufType::kInt8: case GgufType::kBool: return 1;
    case GgufType::kUint16: case GgufType::kInt16: return 2;
    case GgufType::kUint32: case GgufType::kInt32: case GgufType::kFloat32: return 4;
    case GgufType::kUint64: case GgufType::kInt64: case GgufType::kFloat64: return 8;
    default: return 0;
  }
}

// Bounds-checked cursor over the file bytes.
class Cursor {
 public:
  Cursor(const uint8_t* p, size_t n, const std::string& label) : p_(p), n_(n), label_(label) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return n_ - pos_; }

  template <typename... Parts>
  [[noreturn]] void error(const Parts&... parts) const {
    fail(label_, ": ", parts...);
  }
  const uint8_t* take(uint64_t bytes, const char* what) {
    if (bytes > remaining()) error("truncated file (", what, " runs past the end at byte ", pos_, ")");
    const uint8_t* r = p_ + pos_;
    pos_ += bytes;
    return r;
  }
  template <typename T>
  T read(const char* what) {
    T v;
    std::memcpy(&v, take(sizeof(T), what), sizeof(T));
    return v;
  }
  std::string_view read_string(const char* what) {
    const uint64_t len = read<uint64_t>(what);
    if (len > remaining()) error("truncated file (", what, " of ", len, " bytes runs past the end)");
    return std::string_view(reinterpret_cast<const char*>(take(len, what)), len);
  }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
  const std::string& label_;
};

GgufType read_type_tag(Cursor& c, const char* what) {
  const uint32_t t = c.read<uint32_t>(what);
  if (t > uint32_t(GgufType::kFloat64)) c.error("unknown metadata value type ", t, " in ", what);
  return GgufType(t);
}

void read_value(Cursor& c, GgufType type, GgufValue& v, int depth, const std::string& key) {
  v.type = type;
  switch (type) {
    case GgufType::kUint8: v.u = c.read<uint8_t>("value"); break;
    case GgufType::kInt8: v.i = c.read<int8_t>("value"); break;
    case GgufType::kUint16: v.u = c.read<uint16_t>("value"); break;
    case GgufType::kInt16: v.i = c.read<int16_t>("value"); break;
    case GgufType::kUint32: v.u = c.read<uint32_t>("value"); break;
    case GgufType::kInt32: v.i = c.read<int32_t>("value"); break;
    case GgufType::kUint64: v.u = c.read<uint64_t>("value"); break;
    case GgufType::kInt64: v.i = c.read<int64_t>("value"); break;
    case GgufType::kFloat32: v.f = c.read<float>("value"); break;
    case GgufType::kFloat64: v.f = c.read<double>("value"); break;
    case GgufType::kBool: {
      const uint8_t b = c.read<uint8_t>("value");
      if (b > 1) c.error("metadata \"", key, "\" has a bool value of ", int(b));
      v.u = b;
      break;
    }
    case GgufType::kString: v.str = c.read_string("string value"); break;
    case GgufType::kArray: {
      if (depth >= kMaxArrayDepth) c.error("metadata \"", key, "\" nests arrays too deeply");
      v.elem_type = read_type_tag(c, "array element type");
      v.count = c.read<uint64_t>("array length");
      const int es = scalar_size(v.elem_type);
      if (es > 0) {
        if (v.count > c.remaining() / es)
          c.error("truncated file (array \"", key, "\" of ", v.count, " elements runs past the end)");
        v.raw = c.take(v.count * es, "array");
      } else if (v.elem_type == GgufType::kString) {
        // Each string needs at least its 8-byte length.
        if (v.count > c.remaining() / 8)
          c.error("truncated file (array \"", key, "\" of ", v.count, " strings runs past the end)");
        v.strings.reserve(v.count);
        for (uint64_t k = 0; k < v.count; ++k) v.strings.push_back(c.read_string("array string"));
      } else {
        if (v.count > c.remaining() / 12)
          c.error("truncated file (array \"", key, "\" of ", v.count, " arrays runs past the end)");
        v.nested.resize(v.count);
        for (uint64_t k = 0; k < v.count; ++k) read_value(c, GgufType::kArray, v.nested[k], depth + 1, key);
      }
      break;
    }
  }
}

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

double scalar_at(GgufType t, const uint8_t* p) {
  switch (t) {
    case GgufType::kUint8: return load<uint8_t>(p);
    case GgufType::kInt8: return load<int8_t>(p);
    case GgufType::kUint16: return load<uint16_t>(p);
    case GgufType::kInt16: return load<int16_t>(p);
    case GgufType::kUint32: return load<uint32_t>(p);
    case GgufType::kInt32: return load<int32_t>(p);
    case GgufType::kUint64: return double(load<uint64_t>(p));
    case GgufType::kInt64: return double(load<int64_t>(p));
    case GgufType::kFloat32: return load<float>(p);
    case GgufType::kFloat64: return load<double>(p);
    case GgufType::kBool: return load<uint8_t>(p);
    default: return 0;
  }
}

}  // namespace

const char* gguf_type_name(GgufType t) {
  static const char* names[] = {"u8",  "i8",  "u16", "i16", "u32", "i32", "f32",
                                "bool", "str", "array", "u64", "i64", "f64"};
  return uint32_t(t) <= 12 ? names[uint32_t(t)] : "?";
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufType::kUint8: case GgufType::kInt8: case GgufType::kUint16: case GgufType::kInt16:
    case GgufType::kUint32: case GgufType::kInt32: case GgufType::kUint64: case GgufType::kInt64:
    case GgufType::kBool:
      return true;
    default: return false;
  }
}

int64_t GgufValue::as_int(std::string_view what) const {
  if (!is_integer()) fail("metadata \"", std::string(what), "\" is not an integer");
  switch (type) {
    case GgufType::kInt8: case GgufType::kInt16: case GgufType::kInt32: case GgufType::kInt64:
      return i;
    default:
      if (u > uint64_t(std::numeric_limits<int64_t>::max()))
        fail("metadata \"", std::string(what), "\" is out of range");
      return int64_t(u);
  }
}
double GgufValue::as_double(std::string_view what) const {
  if (is_float()) return f;
  return double(as_int(what));
}
std::string GgufValue::as_string(std::string_view what) const {
  if (type != GgufType::kString) fail("metadata \"", std::string(what), "\" is not a string");
  return std::string(str);
}
std::vector<float> GgufValue::as_float_array(std::string_view what) const {
  if (type != GgufType::kArray || !raw) fail("metadata \"", std::string(what), "\" is not a numeric array");
  std::vector<float> out(count);
  const int es = scalar_size(elem_type);
  for (uint64_t k = 0; k < count; ++k) out[k] = float(scalar_at(elem_type, raw + k * es));
  return out;
}
std::vector<int64_t> GgufValue::as_int_array(std::string_view what) const {
  if (type != GgufType::kArray || !raw || elem_type == GgufType::kFloat32 ||
      elem_type == GgufType::kFloat64)
    fail("metadata \"", std::string(what), "\" is not an integer array");
  std::vector<int64_t> out(count);
  const int es = scalar_size(elem_type);
  for (uint64_t k = 0; k < count; ++k) out[k] = int64_t(scalar_at(elem_type, raw + k * es));
  return out;
}

std::string GgufValue::describe(size_t max_items) const {
  auto quote = [](std::string_view s) {
    std::string out = "\"";
    for (char ch : s.substr(0, 60)) out += (ch == '\n') ? std::string("\\n") : std::string(1, ch);
    if (s.size() > 60) out += "...";
    return out + "\"";
  };
  switch (type) {
    case GgufType::kString: return quote(str);
    case GgufType::kBool: return u ? "true" : "false";
    case GgufType::kFloat32: case GgufType::kFloat64: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%g", f);
      return buf;
    }
    case GgufType::kArray: {
      std::string out = std::string("[") + gguf_type_name(elem_type) + " x " + std::to_string(count) + "] ";
      for (uint64_t k = 0; k < count && k < max_items; ++k) {
        if (k) out += ", ";
        if (raw) {
          char buf[32];
          std::snprintf(buf, sizeof buf, "%g", scalar_at(elem_type, raw + k * scalar_size(elem_type)));
          out += buf;
        } else if (!strings.empty()) {
          out += quote(strings[k]);
        } else {
          out += nested[k].describe(2);
        }
      }
      if (count > max_items) out += ", ...";
      return out;
    }
    case GgufType::kUint8: case GgufType::kUint16: case GgufType::kUint32: case GgufType::kUint64:
      return std::to_string(u);
    default:
      return std::to_string(i);
  }
}

std::string GgufTensor::shape() const {
  std::string s = "[";
  for (int d = 0; d < n_dims; ++d) s += (d ? ", " : "") + std::to_string(ne[d]);
  return s + "]";
}

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, ": cannot open (", std::strerror(errno), ")");
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, ": not a regular file");
  }
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = path;
  f->size_ = size_t(st.st_size);
  if (f->size_ == 0) {
    ::close(fd);
    fail(path, ": empty file, not a GGUF model");
  }
  void* p = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) fail(path, ": cannot map file (", std::strerror(errno), ")");
  f->base_ = static_cast<const uint8_t*>(p);
  f->mapped_ = true;
  f->parse();
  return f;
}

std::unique_ptr<GgufFile> GgufFile::from_memory(const uint8_t* data, size_t size,
                                                const std::string& label) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = label;
  f->base_ = data;
  f->size_ = size;
  f->parse();
  return f;
}

void GgufFile::release(const uint8_t* p, size_t n) const {
  if (!mapped_ || p < base_ || p + n > base_ + size_) return;
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t from = (uintptr_t(p) + page - 1) / page * page,
                  to = (uintptr_t(p) + n) / page * page;
  if (to > from) madvise(reinterpret_cast<void*>(from), to - from, MADV_DONTNEED);
}

GgufFile::~GgufFile() {
  if (mapped_) munmap(const_cast<uint8_t*>(base_), size_);
}

void GgufFile::parse() {
  Cursor c(base_, size_, path_);
  if (size_ < 4) c.error("too small to be a GGUF file (", size_, " bytes)");
  const uint32_t magic = c.read<uint32_t>("magic");
  if (magic != kMagic) c.error("not a GGUF file (bad magic)");
  version_ = c.read<uint32_t>("version");
  if (version_ == 1) c.error("GGUF version 1 is not supported (re-convert the model)");
  if (version_ > 0xffff) c.error("big-endian or corrupt GGUF (version field ", version_, ")");
  if (version_ != 2 && version_ != 3) c.error("unsupported GGUF version ", version_);
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  // Each entry needs at least a dozen bytes, which bounds the counts before we allocate.
  if (n_kv > c.remaining() / 12) c.error("metadata count ", n_kv, " is larger than the file allows");
  if (n_tensors > c.remaining() / 24) c.error("tensor count ", n_tensors, " is larger than the file allows");

  kv_.reserve(n_kv);
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key(c.read_string("metadata key"));
    if (key.empty()) c.error("empty metadata key");
    GgufValue v;
    const GgufType t = read_type_tag(c, "metadata value type");
    read_value(c, t, v, 0, key);
    if (kv_index_.count(key)) c.error("duplicate metadata key \"", key, "\"");
    kv_index_[key] = kv_.size();
    kv_.emplace_back(std::move(key), std::move(v));
  }
  if (const GgufValue* a = find("general.alignment")) {
    const int64_t al = a->as_int("general.alignment");
    if (al <= 0 || al > (1 << 20) || (al & (al - 1)))
      c.error("general.alignment must be a power of two, got ", al);
    alignment_ = uint64_t(al);
  }

  tensors_.reserve(n_tensors);
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensor t;
    t.name = std::string(c.read_string("tensor name"));
    const uint32_t n_dims = c.read<uint32_t>("tensor dimension count");
    if (n_dims == 0 || n_dims > kMaxDims)
      c.error("tensor \"", t.name, "\" has ", n_dims, " dimensions (1 to 4 supported)");
    t.n_dims = int(n_dims);
    uint64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = c.read<uint64_t>("tensor dimension");
      if (ne == 0 || ne > (uint64_t(1) << 40))
        c.error("tensor \"", t.name, "\" has an invalid dimension ", ne);
      if (elements > (uint64_t(1) << 50) / ne) c.error("tensor \"", t.name, "\" is impossibly large");
      elements *= ne;
      t.ne[d] = int64_t(ne);
    }
    const uint32_t type = c.read<uint32_t>("tensor type");
    if (!type_known(type)) c.error("tensor \"", t.name, "\" has unknown type id ", type);
    t.type = GgmlType(type);
    const TypeTraits& tr = type_traits(t.type);
    if (t.ne[0] % tr.block_size != 0)
      c.error("tensor \"", t.name, "\" row of ", t.ne[0], " is not a multiple of the ",
              tr.name, " block size ", tr.block_size);
    t.nbytes = size_t(elements / tr.block_size) * tr.block_bytes;
    t.offset = c.read<uint64_t>("tensor offset");
    if (t.offset % alignment_) c.error("tensor \"", t.name, "\" offset is not aligned");
    if (tensor_index_.count(t.name)) c.error("duplicate tensor \"", t.name, "\"");
    tensor_index_[t.name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }

  const uint64_t data_start = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
  if (data_start > size_ && !tensors_.empty()) c.error("truncated file (no tensor data)");
  const uint64_t data_size = data_start <= size_ ? size_ - data_start : 0;
  for (GgufTensor& t : tensors_) {
    if (t.offset > data_size || t.nbytes > data_size - t.offset)
      c.error("truncated file (tensor \"", t.name, "\" data runs past the end)");
    t.data = base_ + data_start + t.offset;
  }
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}
const GgufValue& GgufFile::at(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) fail(path_, ": missing metadata \"", std::string(key), "\"");
  return *v;
}
std::string GgufFile::get_string(std::string_view key, const std::string& fallback) const {
  const GgufValue* v = find(key);
  return v ? v->as_string(key) : fallback;
}
int64_t GgufFile::get_int(std::string_view key, int64_t fallback) const {
  const GgufValue* v = find(key);
  return v ? v->as_int(key) : fallback;
}
double GgufFile::get_double(std::string_view key, double fallback) const {
  const GgufValue* v = find(key);
  return v ? v->as_double(key) : fallback;
}
const GgufTensor* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

// ---- writer ----
namespace {
template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}
}  // namespace

void GgufWriter::set(const std::string& key, std::string bytes) {
  for (auto& kv : kv_)
    if (kv.first == key) {
      kv.second = std::move(bytes);
      return;
    }
  kv_.emplace_back(key, std::move(bytes));
}
void GgufWriter::set_string(const std::string& key, const std::string& value) {
  std::string b;
  put<uint32_t>(b, uint32_t(GgufType::kString));
  put_string(b, value);
  set(key, std::move(b));
}
void GgufWriter::set_u32(const std::string& key, uint32_t value) {
  std::string b;
  put<uint32_t>(b, uint32_t(GgufType::kUint32));
  put(b, value);
  set(key, std::move(b));
  if (key == "general.alignment") alignment_ = value;
}
void GgufWriter::set_i32(const std::string& key, int32_t value) {
  std::string b;
  put<uint32_t>(b, uint32_t(GgufType::kInt32));
  put(b, value);
  set(key, std::move(b));
}
void GgufWriter::set_u64(const std::string& key, uint64_t value) {
  std::string b;
  put<uint32_t>(b, uint32_t(GgufType::kUint64));
  put(b, value);
  set(key, std::move(b));
}
void GgufWriter::set_f32(const std::string& key, float value) {
  std::string b;
  put<uint32_t>(b, uint32_t(GgufType::kFloat32));
  put(b, value);
  set(key, std::move(b));
}
void GgufWriter::set_bool(const std::string& key, bool value) {
  std::string b;
  put<uint32_t>(b, uint32_t(GgufType::kBool));
  put<uint8_t>(b, value);
  set(key, std::move(b));
}
void GgufWriter::set_string_array(const std::string& key, const std::vector<std::string>& values) {
  std::string b;
  put<uint32_t>(b, uint32_t(GgufType::kArray));
  put<uint32_t>(b, uint32_t(GgufType::kString));
  put<uint64_t>(b, values.size());
  for (const auto& v : values) put_string(b, v);
  set(key, std::move(b));
}
void GgufWriter::set_f32_array(const std::string& key, const std::vector<float>& values) {
  std::string b;
  put<uint32_t>(b, uint32_t(GgufType::kArray));
  put<uint32_t>(b, uint32_t(GgufType::kFloat32));
  put<uint64_t>(b, values.size());
  for (float v : values) put(b, v);
  set(key, std::move(b));
}
void GgufWriter::set_i32_array(const std::string& key, const std::vector<int32_t>& values) {
  std::string b;
  put<uint32_t>(b, uint32_t(GgufType::kArray));
  put<uint32_t>(b, uint32_t(GgufType::kInt32));
  put<uint64_t>(b, values.size());
  for (int32_t v : values) put(b, v);
  set(key, std::move(b));
}
void GgufWriter::set_raw(const std::string& key, const std::string& typed_value_bytes) {
  set(key, typed_value_bytes);
}

void GgufWriter::add_tensor(const std::string& name, GgmlType type,
                            const std::vector<int64_t>& dims, const void* data, size_t nbytes) {
  tensors_.push_back(
      Tensor{name, type, dims, std::string(static_cast<const char*>(data), nbytes)});
}

std::string GgufWriter::header_bytes(uint32_t version) const {
  std::string out;
  put<uint32_t>(out, kMagic);
  put<uint32_t>(out, version);
  put<uint64_t>(out, tensors_.size());
  put<uint64_t>(out, kv_.size());
  for (const auto& [key, bytes] : kv_) {
    put_string(out, key);
    out += bytes;
  }
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    put_string(out, t.name);
    put<uint32_t>(out, uint32_t(t.dims.size()));
    for (int64_t d : t.dims) put<uint64_t>(out, uint64_t(d));
    put<uint32_t>(out, uint32_t(t.type));
    put<uint64_t>(out, offset);
    offset += padded(t.data.size());
  }
  out.resize(padded(out.size()), '\0');
  return out;
}

std::string GgufWriter::to_bytes(uint32_t version) const {
  std::string out = header_bytes(version);
  for (const Tensor& t : tensors_) {
    out += t.data;
    out.resize(padded(out.size()), '\0');
  }
  return out;
}

void GgufWriter::write(const std::string& path) const {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) fail(path, ": cannot create file");
  const std::string header = header_bytes(3);
  f.write(header.data(), std::streamsize(header.size()));
  const std::string zeros(alignment_, '\0');
  for (const Tensor& t : tensors_) {
    f.write(t.data.data(), std::streamsize(t.data.size()));
    f.write(zeros.data(), std::streamsize(padded(t.data.size()) - t.data.size()));
  }
  if (!f) fail(path, ": write failed");
}

}  // namespace muse
