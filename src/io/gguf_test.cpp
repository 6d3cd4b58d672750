#include "io/gguf.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>

#include "quant/types.h"
#include "util/error.h"

namespace muse {
namespace {

// ---- raw little-endian encoding helpers ----
template <typename T>
std::string enc(T v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof(T));
}
std::string enc_str(const std::string& s) { return enc<uint64_t>(s.size()) + s; }
std::string tag(GgufType t) { return enc<uint32_t>(uint32_t(t)); }
template <typename T>
void patch(std::string& s, size_t at, T v) {
  ASSERT_LE(at + sizeof(T), s.size());
  std::memcpy(s.data() + at, &v, sizeof(T));
}

std::unique_ptr<GgufFile> parse(const std::string& s) {
  return GgufFile::from_memory(reinterpret_cast<const uint8_t*>(s.data()), s.size(), "test.gguf");
}

// Parsing must fail with a one-line muse::Error containing `want`.
void expect_error(const std::string& bytes, const std::string& want) {
  try {
    parse(bytes);
    ADD_FAILURE() << "parsed, expected an error containing \"" << want << "\"";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(want), std::string::npos) << "message: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "message: " << msg;
  }
}

std::string pattern(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (char& c : s) {
    x = x * 1664525u + 1013904223u;
    c = char(x >> 24);
  }
  return s;
}

// Raw GGUF pieces, for files the writer cannot produce.
std::string header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
  return enc<uint32_t>(0x46554747) + enc<uint32_t>(version) + enc<uint64_t>(n_tensors) +
         enc<uint64_t>(n_kv);
}
std::string tensor_info(const std::string& name, std::vector<uint64_t> dims, uint32_t type,
                        uint64_t offset) {
  std::string s = enc_str(name) + enc<uint32_t>(uint32_t(dims.size()));
  for (uint64_t d : dims) s += enc<uint64_t>(d);
  return s + enc<uint32_t>(type) + enc<uint64_t>(offset);
}
std::string pad_to(std::string s, size_t align) {
  s.resize((s.size() + align - 1) / align * align, '\0');
  return s;
}

struct TensorSpec {
  const char* name;
  GgmlType type;
  std::vector<int64_t> dims;
};
const std::vector<TensorSpec> kTensors = {
    {"t.f32", GgmlType::F32, {8, 3}},   {"t.f16", GgmlType::F16, {16, 2, 2}},
    {"t.q4_0", GgmlType::Q4_0, {64, 2}}, {"t.q8_0", GgmlType::Q8_0, {32, 3}},
    {"t.q4_k", GgmlType::Q4_K, {256, 2}}, {"t.f32_4d", GgmlType::F32, {1, 2, 3, 5}},
};
size_t spec_bytes(const TensorSpec& t) {
  int64_t rows = 1;
  for (size_t d = 1; d < t.dims.size(); ++d) rows *= t.dims[d];
  return row_bytes(t.type, t.dims[0]) * size_t(rows);
}

GgufWriter full_writer() {
  GgufWriter w;
  w.set_raw("v.u8", tag(GgufType::kUint8) + enc<uint8_t>(200));
  w.set_raw("v.i8", tag(GgufType::kInt8) + enc<int8_t>(-100));
  w.set_raw("v.u16", tag(GgufType::kUint16) + enc<uint16_t>(60000));
  w.set_raw("v.i16", tag(GgufType::kInt16) + enc<int16_t>(-30000));
  w.set_u32("v.u32", 4000000000u);
  w.set_i32("v.i32", -2000000000);
  w.set_u64("v.u64", (uint64_t(1) << 40) + 5);
  w.set_raw("v.u64max", tag(GgufType::kUint64) + enc<uint64_t>(~uint64_t(0)));
  w.set_raw("v.i64", tag(GgufType::kInt64) + enc<int64_t>(-(int64_t(1) << 50)));
  w.set_f32("v.f32", 1.5f);
  w.set_raw("v.f64", tag(GgufType::kFloat64) + enc<double>(-2.25e100));
  w.set_bool("v.true", true);
  w.set_bool("v.false", false);
  w.set_string("v.str", "h\xc3\xa9llo\nworld");
  w.set_string("v.empty", "");
  w.set_string_array("a.str", {"a", "", "ccc"});
  w.set_f32_array("a.f32", {1.0f, -2.5f, 3.25f});
  w.set_i32_array("a.i32", {7, -8, 9});
  w.set_i32_array("a.empty", {});
  w.set_raw("a.u8", tag(GgufType::kArray) + tag(GgufType::kUint8) + enc<uint64_t>(3) +
                        enc<uint8_t>(1) + enc<uint8_t>(2) + enc<uint8_t>(255));
  w.set_raw("a.i64", tag(GgufType::kArray) + tag(GgufType::kInt64) + enc<uint64_t>(2) +
                         enc<int64_t>(-5) + enc<int64_t>(int64_t(1) << 40));
  w.set_raw("a.f64", tag(GgufType::kArray) + tag(GgufType::kFloat64) + enc<uint64_t>(2) +
                         enc<double>(0.5) + enc<double>(-1e10));
  w.set_raw("a.bool", tag(GgufType::kArray) + tag(GgufType::kBool) + enc<uint64_t>(2) +
                          enc<uint8_t>(1) + enc<uint8_t>(0));
  // [[1, 2], ["x"], []]: nested elements carry their own element type and count.
  w.set_raw("a.nested", tag(GgufType::kArray) + tag(GgufType::kArray) + enc<uint64_t>(3) +
                            tag(GgufType::kInt16) + enc<uint64_t>(2) + enc<int16_t>(1) +
                            enc<int16_t>(2) + tag(GgufType::kString) + enc<uint64_t>(1) +
                            enc_str("x") + tag(GgufType::kUint32) + enc<uint64_t>(0));
  for (size_t k = 0; k < kTensors.size(); ++k) {
    const std::string data = pattern(spec_bytes(kTensors[k]), uint32_t(k));
    w.add_tensor(kTensors[k].name, kTensors[k].type, kTensors[k].dims, data.data(), data.size());
  }
  return w;
}

void check_metadata(const GgufFile& f) {
  ASSERT_EQ(f.metadata().size(), 24u);
  EXPECT_EQ(f.metadata()[0].first, "v.u8");  // file order is kept
  EXPECT_EQ(f.metadata()[23].first, "a.nested");
  EXPECT_EQ(f.at("v.u8").type, GgufType::kUint8);
  EXPECT_EQ(f.get_int("v.u8", 0), 200);
  EXPECT_EQ(f.get_int("v.i8", 0), -100);
  EXPECT_EQ(f.get_int("v.u16", 0), 60000);
  EXPECT_EQ(f.get_int("v.i16", 0), -30000);
  EXPECT_EQ(f.get_int("v.u32", 0), 4000000000LL);
  EXPECT_EQ(f.get_int("v.i32", 0), -2000000000LL);
  EXPECT_EQ(f.get_int("v.u64", 0), (int64_t(1) << 40) + 5);
  EXPECT_EQ(f.at("v.u64max").u, ~uint64_t(0));
  EXPECT_THROW(f.get_int("v.u64max", 0), Error);  // does not fit int64
  EXPECT_EQ(f.get_int("v.i64", 0), -(int64_t(1) << 50));
  EXPECT_EQ(f.at("v.f32").type, GgufType::kFloat32);
  EXPECT_EQ(f.get_double("v.f32", 0), 1.5);
  EXPECT_EQ(f.get_double("v.f64", 0), -2.25e100);
  EXPECT_EQ(f.get_double("v.i32", 0), -2e9);
  EXPECT_EQ(f.get_int("v.true", 0), 1);
  EXPECT_EQ(f.get_int("v.false", 1), 0);
  EXPECT_EQ(f.at("v.true").describe(), "true");
  EXPECT_EQ(f.get_string("v.str"), "h\xc3\xa9llo\nworld");
  EXPECT_EQ(f.at("v.str").describe(), "\"h\xc3\xa9llo\\nworld\"");
  EXPECT_EQ(f.get_string("v.empty", "x"), "");
  EXPECT_EQ(f.get_string("missing", "fb"), "fb");
  EXPECT_EQ(f.get_int("missing", 42), 42);
  EXPECT_EQ(f.find("missing"), nullptr);
  EXPECT_THROW(f.at("missing"), Error);
  EXPECT_THROW(f.get_int("v.str", 0), Error);
  EXPECT_THROW(f.get_string("v.u8"), Error);
  EXPECT_THROW(f.get_int("v.f32", 0), Error);

  const GgufValue& sa = f.at("a.str");
  EXPECT_EQ(sa.elem_type, GgufType::kString);
  ASSERT_EQ(sa.strings.size(), 3u);
  EXPECT_EQ(sa.strings[0], "a");
  EXPECT_EQ(sa.strings[1], "");
  EXPECT_EQ(sa.strings[2], "ccc");
  EXPECT_THROW(sa.as_float_array("a.str"), Error);
  EXPECT_EQ(f.at("a.f32").as_float_array("a"), (std::vector<float>{1.0f, -2.5f, 3.25f}));
  EXPECT_EQ(f.at("a.f32").describe(), "[f32 x 3] 1, -2.5, 3.25");
  EXPECT_THROW(f.at("a.f32").as_int_array("a"), Error);
  EXPECT_EQ(f.at("a.i32").as_int_array("a"), (std::vector<int64_t>{7, -8, 9}));
  EXPECT_EQ(f.at("a.i32").as_float_array("a"), (std::vector<float>{7, -8, 9}));
  EXPECT_EQ(f.at("a.empty").count, 0u);
  EXPECT_TRUE(f.at("a.empty").as_int_array("a").empty());
  EXPECT_EQ(f.at("a.u8").as_int_array("a"), (std::vector<int64_t>{1, 2, 255}));
  EXPECT_EQ(f.at("a.i64").as_int_array("a"), (std::vector<int64_t>{-5, int64_t(1) << 40}));
  EXPECT_EQ(f.at("a.f64").as_float_array("a"), (std::vector<float>{0.5f, -1e10f}));
  EXPECT_EQ(f.at("a.bool").as_int_array("a"), (std::vector<int64_t>{1, 0}));
  const GgufValue& n = f.at("a.nested");
  EXPECT_EQ(n.elem_type, GgufType::kArray);
  ASSERT_EQ(n.nested.size(), 3u);
  EXPECT_EQ(n.nested[0].as_int_array("n"), (std::vector<int64_t>{1, 2}));
  ASSERT_EQ(n.nested[1].strings.size(), 1u);
  EXPECT_EQ(n.nested[1].strings[0], "x");
  EXPECT_EQ(n.nested[2].elem_type, GgufType::kUint32);
  EXPECT_EQ(n.nested[2].count, 0u);
  EXPECT_THROW(n.as_float_array("n"), Error);
  for (const auto& [key, v] : f.metadata()) EXPECT_FALSE(v.describe().empty()) << key;
  EXPECT_EQ(f.at("v.u64max").describe(), "18446744073709551615");
}

void check_tensors(const GgufFile& f, const uint8_t* base) {
  ASSERT_EQ(f.tensors().size(), kTensors.size());
  for (size_t k = 0; k < kTensors.size(); ++k) {
    const TensorSpec& spec = kTensors[k];
    const GgufTensor* t = f.find_tensor(spec.name);
    ASSERT_NE(t, nullptr) << spec.name;
    EXPECT_EQ(t, &f.tensors()[k]);
    EXPECT_EQ(t->type, spec.type);
    ASSERT_EQ(t->n_dims, int(spec.dims.size()));
    int64_t elements = 1;
    for (int d = 0; d < 4; ++d) {
      EXPECT_EQ(t->ne[d], d < t->n_dims ? spec.dims[d] : 1);
      elements *= t->ne[d];
    }
    EXPECT_EQ(t->elements(), elements);
    EXPECT_EQ(t->nbytes, spec_bytes(spec));
    EXPECT_EQ(t->offset % f.alignment(), 0u);
    EXPECT_EQ(size_t(t->data - base) % f.alignment(), 0u) << spec.name;
    const std::string want = pattern(spec_bytes(spec), uint32_t(k));
    EXPECT_EQ(std::memcmp(t->data, want.data(), want.size()), 0) << spec.name;
  }
  EXPECT_EQ(f.find_tensor("t.q4_0")->shape(), "[64, 2]");
  EXPECT_EQ(f.find_tensor("t.f32_4d")->shape(), "[1, 2, 3, 5]");
  EXPECT_EQ(f.find_tensor("nope"), nullptr);
}

TEST(GgufTest, RoundTripAllTypesV2AndV3) {
  const GgufWriter w = full_writer();
  for (uint32_t version : {2u, 3u}) {
    SCOPED_TRACE(version);
    const std::string bytes = w.to_bytes(version);
    auto f = parse(bytes);
    EXPECT_EQ(f->version(), version);
    EXPECT_EQ(f->alignment(), 32u);
    EXPECT_EQ(f->file_size(), bytes.size());
    EXPECT_EQ(f->path(), "test.gguf");
    check_metadata(*f);
    check_tensors(*f, reinterpret_cast<const uint8_t*>(bytes.data()));
  }
  EXPECT_EQ(w.to_bytes(2).substr(8), w.to_bytes(3).substr(8));
}

TEST(GgufTest, CustomAlignment) {
  GgufWriter w = full_writer();
  w.set_u32("general.alignment", 64);
  const std::string bytes = w.to_bytes();
  EXPECT_EQ(bytes.size() % 64, 0u);
  auto f = parse(bytes);
  EXPECT_EQ(f->alignment(), 64u);
  EXPECT_EQ(f->get_int("general.alignment", 0), 64);
  check_tensors(*f, reinterpret_cast<const uint8_t*>(bytes.data()));
  EXPECT_EQ(size_t(f->tensors()[0].data - reinterpret_cast<const uint8_t*>(bytes.data())) % 64, 0u);
}

TEST(GgufTest, NoTensorsNoMetadata) {
  auto f = parse(GgufWriter().to_bytes());
  EXPECT_TRUE(f->metadata().empty());
  EXPECT_TRUE(f->tensors().empty());
  auto g = parse(header(0, 0));  // unpadded, no data section at all
  EXPECT_EQ(g->version(), 3u);
}

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "muse_gguf_test_" + std::to_string(getpid()) + "_" + name;
}

TEST(GgufTest, WriteAndOpenFile) {
  const GgufWriter w = full_writer();
  const std::string path = temp_path("rt.gguf");
  w.write(path);
  {
    auto f = GgufFile::open(path);
    EXPECT_EQ(f->path(), path);
    EXPECT_EQ(f->version(), 3u);
    EXPECT_EQ(f->file_size(), w.to_bytes().size());
    check_metadata(*f);
    const uint8_t* base = f->tensors()[0].data - f->tensors()[0].offset;
    check_tensors(*f, base);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(base) % 32, 0u);  // mmap is page-aligned
  }
  std::remove(path.c_str());
}

TEST(GgufTest, OpenErrorsNameThePath) {
  const std::string missing = temp_path("does_not_exist.gguf");
  try {
    GgufFile::open(missing);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
  const std::string empty = temp_path("empty.gguf");
  std::ofstream(empty).close();
  try {
    GgufFile::open(empty);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(empty), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("empty"), std::string::npos) << e.what();
  }
  std::remove(empty.c_str());
  const std::string bad = temp_path("bad.gguf");
  std::ofstream(bad) << "this is not a gguf file";
  try {
    GgufFile::open(bad);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(bad + ": not a GGUF"), std::string::npos) << e.what();
  }
  std::remove(bad.c_str());
  EXPECT_THROW(GgufFile::open(::testing::TempDir()), Error);  // a directory
  EXPECT_THROW(GgufWriter().write("/nonexistent_dir_muse/x.gguf"), Error);
}

// A small file whose last tensor ends exactly at the end of the file, so that every
// truncation removes something the reader needs.
std::string small_file() {
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_u32("n", 7);
  w.set_bool("b", true);
  w.set_f32_array("fa", {1, 2});
  w.set_string_array("sa", {"x", "yz"});
  w.set_raw("nest", tag(GgufType::kArray) + tag(GgufType::kArray) + enc<uint64_t>(1) +
                        tag(GgufType::kInt8) + enc<uint64_t>(1) + enc<int8_t>(-1));
  const std::string a = pattern(row_bytes(GgmlType::Q8_0, 32), 1);
  const std::string b = pattern(row_bytes(GgmlType::F32, 8) * 2, 2);
  w.add_tensor("a", GgmlType::Q8_0, {32}, a.data(), a.size());
  w.add_tensor("b", GgmlType::F32, {8, 2}, b.data(), b.size());  // 64 bytes: no tail padding
  return w.to_bytes();
}

TEST(GgufTest, EveryTruncationThrows) {
  const std::string full = small_file();
  ASSERT_NO_THROW(parse(full));
  for (size_t n = 0; n < full.size(); ++n) {
    const std::string cut = full.substr(0, n);  // own allocation: ASan sees overreads
    EXPECT_THROW(parse(cut), Error) << "truncated to " << n << " of " << full.size();
  }
}

TEST(GgufTest, ByteFlipsNeverCrash) {
  const std::string full = small_file();
  size_t parsed = 0, failed = 0;
  for (uint8_t mask : {uint8_t(0xFF), uint8_t(0x01), uint8_t(0x80), uint8_t(0x10)}) {
    for (size_t i = 0; i < full.size(); ++i) {
      std::string s = full;
      s[i] = char(uint8_t(s[i]) ^ mask);
      try {
        auto f = parse(s);
        for (const auto& kv : f->metadata()) (void)kv.second.describe();
        for (const GgufTensor& t : f->tensors()) {
          ASSERT_GE(t.data, reinterpret_cast<const uint8_t*>(s.data()));
          ASSERT_LE(t.data + t.nbytes, reinterpret_cast<const uint8_t*>(s.data()) + s.size());
        }
        ++parsed;
      } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
        ++failed;
      }
    }
  }
  EXPECT_GT(parsed, 0u);  // flips inside tensor data are harmless
  EXPECT_GT(failed, 0u);
}

TEST(GgufTest, HeaderCorruptions) {
  const std::string good = small_file();
  std::string s = good;
  s[0] = 'X';
  expect_error(s, "not a GGUF");
  expect_error("GGU", "too small");
  expect_error("", "too small");
  s = good, patch<uint32_t>(s, 4, 1);
  expect_error(s, "version 1");
  s = good, patch<uint32_t>(s, 4, 0);
  expect_error(s, "unsupported GGUF version 0");
  s = good, patch<uint32_t>(s, 4, 4);
  expect_error(s, "unsupported GGUF version 4");
  s = good, patch<uint32_t>(s, 4, 0x03000000);
  expect_error(s, "big-endian");
  s = good, patch<uint64_t>(s, 16, uint64_t(1) << 40);
  expect_error(s, "metadata count");
  s = good, patch<uint64_t>(s, 16, ~uint64_t(0));
  expect_error(s, "metadata count");
  s = good, patch<uint64_t>(s, 8, uint64_t(1) << 60);
  expect_error(s, "tensor count");
  s = good, patch<uint64_t>(s, 24, uint64_t(1) << 50);  // first key's length
  expect_error(s, "metadata key");
  s = good, patch<uint64_t>(s, 24, ~uint64_t(0));
  expect_error(s, "truncated");
  expect_error(header(0, 1) + enc_str("") + tag(GgufType::kUint8) + enc<uint8_t>(0),
               "empty metadata key");
}

TEST(GgufTest, MetadataCorruptions) {
  auto one = [](const std::string& value) {
    return header(0, 1) + enc_str("key") + value + std::string(16, '\0');
  };
  expect_error(one(tag(GgufType::kString) + enc<uint64_t>(uint64_t(1) << 50) + "abc"),
               "string value of 1125899906842624 bytes");
  expect_error(one(tag(GgufType::kString) + enc<uint64_t>(~uint64_t(0))), "runs past the end");
  expect_error(one(enc<uint32_t>(13) + enc<uint32_t>(0)), "unknown metadata value type 13");
  expect_error(one(enc<uint32_t>(0xFFFFFFFF)), "unknown metadata value type");
  expect_error(one(tag(GgufType::kBool) + enc<uint8_t>(2)), "bool value of 2");
  expect_error(one(tag(GgufType::kBool) + enc<uint8_t>(255)), "bool value of 255");
  expect_error(one(tag(GgufType::kArray) + enc<uint32_t>(99) + enc<uint64_t>(0)),
               "unknown metadata value type 99");
  expect_error(one(tag(GgufType::kArray) + tag(GgufType::kUint32) + enc<uint64_t>(~uint64_t(0))),
               "array \"key\"");
  expect_error(one(tag(GgufType::kArray) + tag(GgufType::kUint64) + enc<uint64_t>(uint64_t(1) << 61)),
               "truncated");
  expect_error(one(tag(GgufType::kArray) + tag(GgufType::kString) + enc<uint64_t>(1000)), "strings");
  expect_error(one(tag(GgufType::kArray) + tag(GgufType::kArray) + enc<uint64_t>(1000)), "arrays");
  std::string deep;
  for (int d = 0; d < 12; ++d) deep += tag(GgufType::kArray) + enc<uint64_t>(1);
  expect_error(one(tag(GgufType::kArray) + deep), "nests arrays too deeply");
  // Duplicate keys can only be written by hand: the writer replaces values.
  const std::string kv = enc_str("dup") + tag(GgufType::kUint8) + enc<uint8_t>(1);
  expect_error(header(0, 2) + kv + kv, "duplicate metadata key \"dup\"");
  // Alignment must be a positive power of two (and an integer).
  for (uint32_t al : {0u, 3u, 48u, 1u << 21}) {
    GgufWriter w;
    w.set_raw("general.alignment", tag(GgufType::kUint32) + enc<uint32_t>(al));
    expect_error(w.to_bytes(), "general.alignment must be a power of two, got " + std::to_string(al));
  }
  GgufWriter w3;
  w3.set_u32("general.alignment", 3);
  expect_error(w3.to_bytes(), "power of two");
  GgufWriter ws;
  ws.set_string("general.alignment", "32");
  expect_error(ws.to_bytes(), "not an integer");
}

TEST(GgufTest, TensorCorruptions) {
  const std::string data = pattern(4096, 3);
  auto with = [&](const std::string& name, GgmlType type, std::vector<int64_t> dims, size_t n) {
    GgufWriter w;
    w.add_tensor(name, type, dims, data.data(), n);
    return w.to_bytes();
  };
  expect_error(with("z", GgmlType::F32, {}, 4), "tensor \"z\" has 0 dimensions");
  expect_error(with("z", GgmlType::F32, {1, 1, 1, 1, 1}, 4), "has 5 dimensions");
  expect_error(with("z", GgmlType::F32, {4, 0}, 16), "invalid dimension 0");
  expect_error(with("z", GgmlType::F32, {int64_t(1) << 41}, 4), "invalid dimension");
  expect_error(with("z", GgmlType::F32, {int64_t(1) << 30, int64_t(1) << 30}, 4), "impossibly large");
  expect_error(with("z", GgmlType(200), {32}, 128), "unknown type id 200");
  expect_error(with("z", GgmlType(4), {32}, 128), "unknown type id 4");  // a retired id
  expect_error(with("z", GgmlType::Q4_0, {16}, 18), "not a multiple of the q4_0 block size 32");
  expect_error(with("z", GgmlType::Q4_K, {32, 8}, 144), "block size 256");
  expect_error(with("z", GgmlType::F32, {16}, 16), "truncated");  // data shorter than the shape

  std::string two = header(2, 0) + tensor_info("a", {8}, 0, 0) + tensor_info("b", {8}, 0, 4);
  expect_error(pad_to(two, 32) + std::string(128, '\0'), "tensor \"b\" offset is not aligned");
  two = header(2, 0) + tensor_info("a", {8}, 0, 0) + tensor_info("a", {8}, 0, 32);
  expect_error(pad_to(two, 32) + std::string(128, '\0'), "duplicate tensor \"a\"");
  const std::string far = header(1, 0) + tensor_info("f", {8}, 0, 4096);
  expect_error(pad_to(far, 32) + std::string(128, '\0'), "truncated");
  expect_error(pad_to(header(1, 0) + tensor_info("h", {8}, 0, ~uint64_t(0) - 31), 32) + std::string(64, '\0'),
               "truncated");
  expect_error(header(1, 0) + tensor_info("n", {8}, 0, 0), "no tensor data");
  expect_error(pad_to(header(1, 0) + tensor_info("n", {8}, 0, 0), 32) + std::string(31, '\0'),
               "tensor \"n\" data runs past the end");
  // Exactly enough data parses.
  EXPECT_NO_THROW(parse(pad_to(header(1, 0) + tensor_info("n", {8}, 0, 0), 32) + std::string(32, '\0')));
  // Duplicate names written through the writer are rejected too.
  GgufWriter w;
  w.add_tensor("same", GgmlType::F32, {8}, data.data(), 32);
  w.add_tensor("same", GgmlType::F32, {8}, data.data(), 32);
  expect_error(w.to_bytes(), "duplicate tensor \"same\"");
}

}  // namespace
}  // namespace muse

namespace muse {
namespace {

// The fuzzer's corpus, replayed in every test run: each input parses or fails with muse::Error.
TEST(GgufCorpus, EveryInputParsesOrFailsCleanly) {
  const std::filesystem::path dir = std::filesystem::path(MUSE_SOURCE_DIR) / "fuzz" / "corpus" / "gguf";
  ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir;
  int files = 0, parsed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream f(entry.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    ++files;
    try {
      auto g = GgufFile::from_memory(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
      for (const auto& kv : g->metadata()) (void)kv.second.describe();
      ++parsed;
    } catch (const Error&) {
    }
  }
  EXPECT_GT(files, 10);
  EXPECT_GT(parsed, 0) << "the seeds are valid files";
}

}  // namespace
}  // namespace muse
