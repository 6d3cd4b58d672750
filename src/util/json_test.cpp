#include "util/json.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "util/error.h"

namespace muse {
namespace {

// parse -> dump is stable, and dump -> parse -> dump reproduces it exactly.
std::string round_trip(const std::string& text) {
  const std::string once = Json::parse(text).dump();
  EXPECT_EQ(Json::parse(once).dump(), once) << text;
  return once;
}

TEST(JsonTest, RoundTripsNestedValues) {
  EXPECT_EQ(round_trip(R"( { "b" : [1, 2.5, {"c": null}], "a": {"x": [[], {}]}, "t": true, "f": false } )"),
            R"({"b":[1,2.5,{"c":null}],"a":{"x":[[],{}]},"t":true,"f":false})");
  EXPECT_EQ(round_trip("\"tab\\t nl\\n q\\\" bs\\\\ sl\\/ ctl\\u0001\""),
            "\"tab\\t nl\\n q\\\" bs\\\\ sl/ ctl\\u0001\"");
  const Json j = Json::parse(R"({"k": [10, "s", [true]]})");
  EXPECT_EQ(j.at("k").size(), 3u);
  EXPECT_EQ(j.at("k")[0].as_int(), 10);
  EXPECT_EQ(j.at("k")[1].as_string(), "s");
  EXPECT_TRUE(j.at("k")[2][0].as_bool());
  EXPECT_EQ(j.find("missing"), nullptr);
  EXPECT_THROW(j.at("missing"), Error);
  EXPECT_THROW(j.at("k").as_object(), Error);
}

TEST(JsonTest, ObjectsKeepInsertionOrder) {
  // A repeated key keeps its first position and takes the last value, as Python's json does.
  EXPECT_EQ(round_trip(R"({"z": 1, "a": 2, "m": 3, "a": 4})"), R"({"z":1,"a":4,"m":3})");
  Json::Object o{{"y", 1}, {"x", 2}};
  o["w"] = "new";
  o.insert_or_assign("y", 5);
  EXPECT_FALSE(o.emplace("x", 9).second);
  EXPECT_EQ(Json(o).dump(), R"({"y":5,"x":2,"w":"new"})");
  EXPECT_EQ(o.erase("x"), 1u);
  EXPECT_EQ(o.erase("x"), 0u);
  EXPECT_EQ(Json(o).dump(), R"({"y":5,"w":"new"})");
  EXPECT_EQ(o.count("w"), 1u);
  EXPECT_THROW(o.at("x"), Error);

  // Large objects switch to hashed lookups; order and lookups stay right across the switch.
  Json::Object big;
  std::string expected = "{";
  for (int i = 0; i < 100; ++i) {
    const std::string key = "k" + std::to_string((i * 37) % 100);
    big[key] = i;
    expected += (i ? ",\"" : "\"") + key + "\":" + std::to_string(i);
    ASSERT_EQ(big.find(key)->second.as_int(), i);
  }
  EXPECT_EQ(Json(big).dump(), expected + "}");
  EXPECT_EQ(big.erase("k37"), 1u);
  EXPECT_EQ(big.find("k37"), big.end());
  EXPECT_EQ(big.at("k74").as_int(), 2);
  EXPECT_EQ(big.size(), 99u);
}

TEST(JsonTest, UnicodeEscapes) {
  EXPECT_EQ(Json::parse(R"("\u0041\u00e9\u20ac")").as_string(), "A\xc3\xa9\xe2\x82\xac");
  // A surrogate pair becomes one 4-byte UTF-8 sequence (U+1F600).
  EXPECT_EQ(Json::parse(R"("\ud83d\ude00")").as_string(), "\xf0\x9f\x98\x80");
  EXPECT_EQ(Json::parse(R"("\uD834\uDD1E")").as_string(), "\xf0\x9d\x84\x9e");
  // Raw UTF-8 passes through both ways.
  EXPECT_EQ(round_trip("\"h\xc3\xa9llo \xf0\x9f\x98\x80\""), "\"h\xc3\xa9llo \xf0\x9f\x98\x80\"");
}

TEST(JsonTest, Numbers) {
  EXPECT_DOUBLE_EQ(Json::parse("1e3").as_number(), 1000);
  EXPECT_DOUBLE_EQ(Json::parse("-2.5E-2").as_number(), -0.025);
  EXPECT_DOUBLE_EQ(Json::parse("6.02e+23").as_number(), 6.02e23);
  EXPECT_DOUBLE_EQ(Json::parse("0.125").as_number(), 0.125);
  const double nz = Json::parse("-0").as_number();
  EXPECT_EQ(nz, 0.0);
  EXPECT_TRUE(std::signbit(nz));
  EXPECT_EQ(Json::parse("-0.0").dump(), "-0");
  EXPECT_TRUE(std::isinf(Json::parse("1e400").as_number()));
  for (const char* s : {"0", "-7", "3.25", "1e+300", "1.5e-300", "123456789012", "0.1"})
    EXPECT_EQ(Json::parse(round_trip(s)).as_number(), Json::parse(s).as_number()) << s;
  EXPECT_EQ(Json::parse("9007199254740992").as_int(), int64_t(1) << 53);
  // Integers (no fraction or exponent) are kept exactly, like Python's int.
  EXPECT_TRUE(Json::parse("12").is_integer());
  EXPECT_FALSE(Json::parse("12.0").is_integer());
  EXPECT_FALSE(Json::parse("1e2").is_integer());
  EXPECT_FALSE(Json::parse("-0").is_integer());
  EXPECT_EQ(Json::parse("9007199254740993").as_int(), 9007199254740993);
  EXPECT_EQ(Json::parse("-9223372036854775808").as_int(), INT64_MIN);
  EXPECT_EQ(round_trip("9223372036854775807"), "9223372036854775807");
  EXPECT_FALSE(Json::parse("9223372036854775808").is_integer());  // too big: a float
  EXPECT_TRUE(Json(int64_t(3)).is_integer());
  EXPECT_FALSE(Json(3.0).is_integer());
  EXPECT_THROW(Json::parse("1.5").as_int(), Error);
}

TEST(JsonTest, NestingLimit) {
  EXPECT_NO_THROW(Json::parse(std::string(256, '[') + std::string(256, ']')));
  EXPECT_THROW(Json::parse(std::string(300, '[') + std::string(300, ']')), Error);
  EXPECT_THROW(Json::parse(std::string(100000, '[')), Error);  // no stack overflow
  std::string objs;
  for (int i = 0; i < 300; ++i) objs += "{\"a\":";
  EXPECT_THROW(Json::parse(objs + "1" + std::string(300, '}')), Error);
}

TEST(JsonTest, RejectsMalformedInput) {
  const char* bad[] = {
      "", "   ", "[1,]", "{\"a\":1,}", "[1 2]", "{\"a\" 1}", "{a:1}", "{\"a\":}", "[", "{",
      "\"abc", "\"abc\\", "\"\\x\"", "\"\\u12\"", "\"\\u12g4\"", "\"\\ud800\"", "\"\\udc00\"",
      "\"\\ud800\\u0041\"", "\"\\ud800x\"", "\"a\nb\"", "\"a\tb\"",
      "01", "-01", "00", "1.", ".5", "-", "+1", "1e", "1e+", "--1", "0x10", "NaN", "Infinity",
      "tru", "nul", "True", "[1]x", "{} {}", "1 2", "'a'",
  };
  for (const char* s : bad) EXPECT_THROW(Json::parse(s), Error) << "input: " << s;
  EXPECT_THROW(Json::parse(std::string("\"a\0b\"", 5)), Error);
  try {
    Json::parse("[1,]");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("byte 3"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace muse
