// Tests for support/json.h: layout (compact and indented), string escapes,
// number formats, and that misuse is caught as a bug.
#include "support/json.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>

#include "support/error.h"

namespace fuseopt::support {
namespace {

std::string one_value(double number) { return JsonWriter().value(number).str(); }

TEST(JsonWriter, CompactNesting) {
  JsonWriter w;
  w.begin_object();
  w.key("name").value("adam");
  w.key("steps").value(int64_t{3});
  w.key("ok").value(true);
  w.key("none").null();
  w.key("list")
      .begin_array()
      .value(1)
      .value(2.5)
      .begin_array()
      .end_array()
      .begin_object()
      .end_object()
      .end_array();
  w.end_object();
  ASSERT_TRUE(w.complete());
  EXPECT_EQ(w.str(), R"({"name":"adam","steps":3,"ok":true,"none":null,"list":[1,2.5,[],{}]})");
}

TEST(JsonWriter, Indented) {
  JsonWriter w(2);
  w.begin_object();
  w.key("a").value(1);
  w.key("b").begin_array().value(false).value("x").end_array();
  w.key("c").begin_object().end_object();
  w.key("d").begin_array().end_array();
  w.end_object();
  EXPECT_EQ(w.str(),
            "{\n"
            "  \"a\": 1,\n"
            "  \"b\": [\n"
            "    false,\n"
            "    \"x\"\n"
            "  ],\n"
            "  \"c\": {},\n"
            "  \"d\": []\n"
            "}");
}

TEST(JsonWriter, TopLevelScalars) {
  EXPECT_EQ(JsonWriter().value("hi").str(), "\"hi\"");
  EXPECT_EQ(JsonWriter().null().str(), "null");
  EXPECT_EQ(JsonWriter(4).value(false).str(), "false");
  EXPECT_EQ(JsonWriter(2).begin_array().end_array().str(), "[]");
}

TEST(JsonWriter, EscapesStrings) {
  EXPECT_EQ(json_quote("plain"), "\"plain\"");
  EXPECT_EQ(json_quote("a\"b\\c/d"), R"("a\"b\\c/d")");
  EXPECT_EQ(json_quote("\b\f\n\r\t"), R"("\b\f\n\r\t")");
  EXPECT_EQ(json_quote(std::string("\x00\x01\x1f\x7f", 4)), "\"\\u0000\\u0001\\u001f\x7f\"");
  EXPECT_EQ(json_quote("\xc3\xa9t\xc3\xa9 \xe2\x88\x87"),
            "\"\xc3\xa9t\xc3\xa9 \xe2\x88\x87\"");  // UTF-8 kept
  EXPECT_EQ(JsonWriter().begin_object().key("k\n").value("v\t").end_object().str(),
            R"({"k\n":"v\t"})");
}

TEST(JsonWriter, Doubles) {
  EXPECT_EQ(one_value(0.1), "0.1");
  EXPECT_EQ(one_value(0.001), "0.001");
  EXPECT_EQ(one_value(1e-8), "1e-08");
  EXPECT_EQ(one_value(3.0), "3");
  EXPECT_EQ(one_value(-2.5), "-2.5");
  EXPECT_EQ(one_value(1e300), "1e+300");
  EXPECT_EQ(one_value(-0.0), "-0");
  EXPECT_EQ(one_value(0.9), "0.9");
  EXPECT_EQ(one_value(static_cast<double>(0.1f)), "0.10000000149011612");
}

TEST(JsonWriter, DoublesRoundTrip) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 10000; ++i) {
    uint64_t bits = rng();
    double d;
    std::memcpy(&d, &bits, sizeof d);
    if (!std::isfinite(d)) continue;
    const std::string text = one_value(d);
    EXPECT_EQ(std::strtod(text.c_str(), nullptr), d) << text;
  }
  const double extremes[] = {std::numeric_limits<double>::max(), std::numeric_limits<double>::min(),
                             std::numeric_limits<double>::denorm_min(),
                             std::numeric_limits<double>::lowest()};
  for (double d : extremes) EXPECT_EQ(std::strtod(one_value(d).c_str(), nullptr), d);
}

TEST(JsonWriter, NonFiniteDoublesAreStrings) {
  EXPECT_EQ(one_value(std::numeric_limits<double>::quiet_NaN()), "\"nan\"");
  EXPECT_EQ(one_value(std::numeric_limits<double>::infinity()), "\"inf\"");
  EXPECT_EQ(one_value(-std::numeric_limits<double>::infinity()), "\"-inf\"");
  EXPECT_EQ(JsonWriter().begin_array().value(1.0 / 0.0 * 0.0).end_array().str(), "[\"nan\"]");
}

TEST(JsonWriter, Integers) {
  EXPECT_EQ(JsonWriter().value(std::numeric_limits<int64_t>::min()).str(), "-9223372036854775808");
  EXPECT_EQ(JsonWriter().value(std::numeric_limits<uint64_t>::max()).str(), "18446744073709551615");
  EXPECT_EQ(JsonWriter().value(-7).str(), "-7");          // int
  EXPECT_EQ(JsonWriter().value(size_t{42}).str(), "42");  // size_t
  EXPECT_EQ(JsonWriter().value(static_cast<long long>(-5)).str(), "-5");
  EXPECT_EQ(JsonWriter().value(3.0f).str(), "3");  // float goes to double
}

TEST(JsonWriter, CStringIsAStringNotABool) {
  EXPECT_EQ(JsonWriter().value("text").str(), "\"text\"");
  EXPECT_EQ(JsonWriter().value(std::string("text")).str(), "\"text\"");
  EXPECT_EQ(JsonWriter().value(true).str(), "true");
}

TEST(JsonWriter, MisuseIsABug) {
  EXPECT_THROW(JsonWriter().begin_object().value(1), InternalError);           // value without key
  EXPECT_THROW(JsonWriter().begin_array().key("k"), InternalError);            // key in an array
  EXPECT_THROW(JsonWriter().key("k"), InternalError);                          // key at top level
  EXPECT_THROW(JsonWriter().begin_object().key("a").key("b"), InternalError);  // two keys
  EXPECT_THROW(JsonWriter().begin_object().key("a").end_object(),
               InternalError);                                           // key without value
  EXPECT_THROW(JsonWriter().begin_object().end_array(), InternalError);  // mismatched end
  EXPECT_THROW(JsonWriter().end_object(), InternalError);                // nothing open
  EXPECT_THROW(JsonWriter().value(1).value(2), InternalError);           // two top-level values
  EXPECT_THROW(JsonWriter().str(), InternalError);                       // nothing written
  EXPECT_THROW(JsonWriter().begin_array().str(), InternalError);         // incomplete
}

}  // namespace
}  // namespace fuseopt::support
