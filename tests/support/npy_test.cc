// Tests for support/npy.h: round trips, files laid out byte for byte as NumPy
// writes them, and every way a .npy file can be wrong.
#include "support/npy.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "support/error.h"

namespace fuseopt::support {
namespace {

/// The bytes of a .npy file as NumPy lays them out: magic, version, little-endian
/// header length, then `dict` padded with spaces and ended by '\n' so that the data
/// starts at a multiple of 64, then `data`.
std::string npy_bytes(std::string_view dict, std::string_view data = {}, int major = 1) {
  const size_t preamble_size = major == 1 ? 10 : 12;
  std::string header(dict);
  const size_t unpadded = preamble_size + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  for (size_t i = 0; i < preamble_size - 8; ++i)
    out += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header + std::string(data);
}

/// Little-endian float32 bytes of `values`.
std::string f32_bytes(std::initializer_list<float> values) {
  std::string out;
  for (float v : values) {
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    for (int i = 0; i < 4; ++i) out += static_cast<char>((bits >> (8 * i)) & 0xff);
  }
  return out;
}

// Unique per test and process: ctest runs the tests of this program in parallel.
std::string temp_path(const std::string& file) {
  const auto* test = testing::UnitTest::GetInstance()->current_test_info();
  return testing::TempDir() + "npy_test_" + std::to_string(getpid()) + "_" + test->name() + "_" + file;
}

void write_file(const std::string& path, std::string_view bytes) {
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// The UserError message that parsing `bytes` as "x.npy" gives. Also checks that
/// reading the same bytes from a file fails alike, with the path in the message.
std::string parse_error(std::string_view bytes) {
  std::string message;
  try {
    parse_npy_f32(bytes, "x.npy");
    ADD_FAILURE() << "parse_npy_f32 accepted bad input";
  } catch (const UserError& e) {
    message = e.what();
    EXPECT_EQ(message.rfind("x.npy: ", 0), 0u) << message;
  }
  const std::string path = temp_path("bad.npy");
  write_file(path, bytes);
  try {
    read_npy_f32(path);
    ADD_FAILURE() << "read_npy_f32 accepted bad input";
  } catch (const UserError& e) {
    EXPECT_EQ(std::string(e.what()), path + message.substr(5));
  }
  return message;
}

std::string parse_error_for_dict(std::string_view dict, std::string_view data = {}) {
  return parse_error(npy_bytes(dict, data));
}

#define EXPECT_CONTAINS(text, part) EXPECT_NE((text).find(part), std::string::npos) << (text)

// ---- Shapes ------------------------------------------------------------------------

TEST(ShapeToString, FormatsLikeNumPy) {
  EXPECT_EQ(shape_to_string({}), "()");
  EXPECT_EQ(shape_to_string({5}), "(5,)");
  EXPECT_EQ(shape_to_string({3, 4}), "(3, 4)");
  EXPECT_EQ(shape_to_string({2, 0, 7}), "(2, 0, 7)");
}

TEST(ElementCount, MultipliesDimensions) {
  EXPECT_EQ(element_count({}), 1);
  EXPECT_EQ(element_count({5}), 5);
  EXPECT_EQ(element_count({3, 4}), 12);
  EXPECT_EQ(element_count({3, 0, 4}), 0);
}

TEST(ElementCount, RejectsNegativeAndOverflow) {
  EXPECT_THROW(element_count({3, -1}), UserError);
  EXPECT_THROW(element_count({int64_t{1} << 32, int64_t{1} << 32}), UserError);
  EXPECT_EQ(element_count({int64_t{1} << 31, int64_t{1} << 31}), int64_t{1} << 62);
}

// ---- Files NumPy writes --------------------------------------------------------------

TEST(ParseNpy, ReadsFileAsNumPyWritesIt) {
  // np.save of np.arange(6, dtype=np.float32).reshape(2, 3), NumPy 1.x layout.
  const std::string bytes = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                                      f32_bytes({0, 1, 2, 3, 4, 5}));
  ASSERT_EQ(bytes.size(), 128u + 24u);
  EXPECT_EQ(bytes.substr(0, 10), std::string("\x93NUMPY\x01\x00v\x00", 10));  // header_len 118
  const NpyArray a = parse_npy_f32(bytes, "x.npy");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.data, (std::vector<float>{0, 1, 2, 3, 4, 5}));
}

TEST(ParseNpy, ReadsNumPyGrowthPadding) {
  // Newer NumPy pads the header with extra spaces so the shape can grow in place.
  const std::string dict =
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }" + std::string(20, ' ');
  const NpyArray a = parse_npy_f32(npy_bytes(dict, f32_bytes({1.5f, -2, 1e30f})), "x.npy");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(a.data, (std::vector<float>{1.5f, -2, 1e30f}));
}

TEST(ParseNpy, ReadsVersion2And3Headers) {
  for (int major : {2, 3}) {
    const std::string bytes = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
                                        f32_bytes({7, 8}), major);
    EXPECT_EQ(static_cast<int>(bytes[6]), major);
    const NpyArray a = parse_npy_f32(bytes, "x.npy");
    EXPECT_EQ(a.shape, (std::vector<int64_t>{2}));
    EXPECT_EQ(a.data, (std::vector<float>{7, 8}));
  }
}

TEST(ParseNpy, HeaderKeysInAnyOrderWithAnySpacing) {
  const char* dicts[] = {
      "{'shape': (2, 2), 'fortran_order': False, 'descr': '<f4'}",
      "{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(2,2)}",
      "  {\t'fortran_order' :False ,\n 'shape' : ( 2 , 2 , ) , 'descr' : '<f4' , }",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 2L), }",  // Python 2 NumPy
  };
  for (const char* dict : dicts) {
    const NpyArray a = parse_npy_f32(npy_bytes(dict, f32_bytes({1, 2, 3, 4})), "x.npy");
    EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 2})) << dict;
    EXPECT_EQ(a.data, (std::vector<float>{1, 2, 3, 4})) << dict;
  }
}

TEST(ParseNpy, ZeroDimensionalArrayHasOneElement) {
  const NpyArray a = parse_npy_f32(
      npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", f32_bytes({42})),
      "x.npy");
  EXPECT_TRUE(a.shape.empty());
  EXPECT_EQ(a.data, (std::vector<float>{42}));
}

TEST(ParseNpy, ZeroSizeArrays) {
  const NpyArray a = parse_npy_f32(
      npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (0,), }"), "x.npy");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{0}));
  EXPECT_TRUE(a.data.empty());
  const NpyArray b = parse_npy_f32(
      npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 0, 5), }"), "x.npy");
  EXPECT_EQ(b.shape, (std::vector<int64_t>{3, 0, 5}));
  EXPECT_TRUE(b.data.empty());
}

// ---- Round trips -----------------------------------------------------------------------

TEST(WriteNpy, RoundTripsThroughFiles) {
  const std::vector<std::vector<int64_t>> shapes = {{}, {1}, {5}, {3, 4}, {2, 3, 4}, {0}, {4, 0}};
  for (const auto& shape : shapes) {
    std::vector<float> data(static_cast<size_t>(element_count(shape)));
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>(i) * 0.25f - 1.0f;
    const std::string path = temp_path("round_trip.npy");
    write_npy_f32(path, shape, data);
    const std::string bytes = read_file(path);
    ASSERT_EQ((bytes.size() - data.size() * 4) % 64, 0u) << "data must start 64-byte aligned";
    const NpyArray a = read_npy_f32(path);
    EXPECT_EQ(a.shape, shape);
    EXPECT_EQ(a.data, data);
    EXPECT_EQ(parse_npy_f32(bytes, path).data, data);
  }
}

TEST(WriteNpy, WritesExactlyWhatNumPyWrites) {
  const std::string path = temp_path("exact.npy");
  const std::vector<float> data = {0, 1, 2, 3, 4, 5};
  write_npy_f32(path, {2, 3}, data);
  EXPECT_EQ(read_file(path),
            npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                      f32_bytes({0, 1, 2, 3, 4, 5})));
}

TEST(WriteNpy, KeepsSpecialValues) {
  const std::string path = temp_path("special.npy");
  const std::vector<float> data = {std::numeric_limits<float>::infinity(), -0.0f,
                                   std::numeric_limits<float>::denorm_min(),
                                   std::numeric_limits<float>::max()};
  write_npy_f32(path, {4}, data);
  const NpyArray a = read_npy_f32(path);
  ASSERT_EQ(a.data.size(), 4u);
  EXPECT_EQ(std::memcmp(a.data.data(), data.data(), 16), 0);
  write_npy_f32(path, {1}, std::vector<float>{std::numeric_limits<float>::quiet_NaN()});
  EXPECT_TRUE(std::isnan(read_npy_f32(path).data[0]));
}

TEST(WriteNpy, ShapeMismatchIsABug) {
  const std::vector<float> data = {1, 2, 3};
  EXPECT_THROW(write_npy_f32(temp_path("mismatch.npy"), {2, 2}, data), InternalError);
  EXPECT_THROW(write_npy_f32(temp_path("mismatch.npy"), {-3}, data), InternalError);
}

TEST(WriteNpy, MissingFolderIsAUserError) {
  const std::string path = temp_path("no_such_folder/out.npy");
  try {
    write_npy_f32(path, {1}, std::vector<float>{1});
    FAIL() << "wrote into a missing folder";
  } catch (const UserError& e) {
    EXPECT_CONTAINS(std::string(e.what()), path);
  }
}

// ---- Files that cannot be read ---------------------------------------------------------

TEST(ReadNpy, MissingFileNamesThePath) {
  const std::string path = temp_path("does_not_exist.npy");
  try {
    read_npy_f32(path);
    FAIL() << "read a missing file";
  } catch (const UserError& e) {
    EXPECT_CONTAINS(std::string(e.what()), path);
    EXPECT_CONTAINS(std::string(e.what()), "cannot open");
  }
}

TEST(ReadNpy, DirectoryIsAUserError) {
  const std::string path = temp_path("a_folder");
  std::filesystem::create_directories(path);
  try {
    read_npy_f32(path);
    FAIL() << "read a directory";
  } catch (const UserError& e) {
    EXPECT_CONTAINS(std::string(e.what()), "directory");
  }
}

// ---- Bad preambles ---------------------------------------------------------------------

TEST(ParseNpyErrors, BadMagic) {
  EXPECT_EQ(parse_error("hello, this is text, not an array"), "x.npy: not a .npy file (bad magic)");
  EXPECT_CONTAINS(parse_error(""), "bad magic");
  EXPECT_CONTAINS(parse_error("\x93NUMPX\x01\x00"), "bad magic");
  EXPECT_CONTAINS(parse_error(std::string("PK\x03\x04", 4) + "zipzipzip"), ".npz");
}

TEST(ParseNpyErrors, TruncatedPreamble) {
  EXPECT_CONTAINS(parse_error("\x93NUM"), "truncated");
  EXPECT_CONTAINS(parse_error(std::string("\x93NUMPY\x01\x00\x40", 9)), "truncated");
  EXPECT_CONTAINS(parse_error(std::string("\x93NUMPY\x02\x00\x40\x00", 10)), "truncated");
}

TEST(ParseNpyErrors, UnsupportedVersion) {
  std::string bytes =
      npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", f32_bytes({1}));
  bytes[6] = 4;
  EXPECT_CONTAINS(parse_error(bytes), "version 4.0");
  bytes[6] = 1;
  bytes[7] = 1;
  EXPECT_CONTAINS(parse_error(bytes), "version 1.1");
  bytes[6] = 0;
  bytes[7] = 0;
  EXPECT_CONTAINS(parse_error(bytes), "version 0.0");
}

TEST(ParseNpyErrors, HeaderLongerThanFile) {
  std::string bytes =
      npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", f32_bytes({1}));
  bytes[8] = '\xff';
  bytes[9] = '\xff';
  const std::string message = parse_error(bytes);
  EXPECT_CONTAINS(message, "truncated");
  EXPECT_CONTAINS(message, "65535");
  // A v2.0 header length near 4 GiB must not be allocated before it is checked.
  std::string v2 =
      npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", f32_bytes({1}), 2);
  v2[8] = v2[9] = v2[10] = v2[11] = '\xff';
  EXPECT_CONTAINS(parse_error(v2), "4294967295");
}

// ---- Bad dtypes and orders -------------------------------------------------------------

TEST(ParseNpyErrors, Float64) {
  EXPECT_EQ(parse_error_for_dict("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
                                 std::string(24, '\0')),
            "x.npy: dtype is float64 ('<f8'); fuseopt needs float32 ('<f4')");
}

TEST(ParseNpyErrors, OtherDtypes) {
  EXPECT_CONTAINS(parse_error_for_dict("{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }"),
                  "float16 ('<f2')");
  EXPECT_CONTAINS(parse_error_for_dict("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }"),
                  "int32 ('<i4')");
  EXPECT_CONTAINS(parse_error_for_dict("{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }"),
                  "uint8 ('|u1')");
  EXPECT_CONTAINS(parse_error_for_dict("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }"),
                  "bool");
  EXPECT_CONTAINS(parse_error_for_dict("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }"),
                  "Python objects");
  EXPECT_CONTAINS(
      parse_error_for_dict("{'descr': 'weird', 'fortran_order': False, 'shape': (2,), }"),
      "'weird'");
  EXPECT_CONTAINS(parse_error_for_dict(
                      "{'descr': \"[('a', '<f4')]\", 'fortran_order': False, 'shape': (2,), }"),
                  "fuseopt needs float32");
  EXPECT_CONTAINS(
      parse_error_for_dict(
          "{'descr': [('a', '<f4'), ('b', '<i8')], 'fortran_order': False, 'shape': (2,), }"),
      "structured");
  EXPECT_CONTAINS(parse_error_for_dict("{'descr': 4, 'fortran_order': False, 'shape': (2,), }"),
                  "not a dtype string");
}

TEST(ParseNpyErrors, BigEndianFloat32) {
  const std::string message = parse_error_for_dict(
      "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", std::string(8, '\0'));
  EXPECT_CONTAINS(message, "big-endian");
  EXPECT_CONTAINS(message, "'>f4'");
  EXPECT_CONTAINS(message, "'<f4'");
}

TEST(ParseNpyErrors, Float32WithoutByteOrder) {
  for (const char* descr : {"|f4", "=f4", "f4"}) {
    const std::string message = parse_error_for_dict(
        std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (2,), }",
        std::string(8, '\0'));
    EXPECT_CONTAINS(message, std::string("'") + descr + "'");
    EXPECT_CONTAINS(message, "little-endian float32 ('<f4')");
  }
}

TEST(ParseNpyErrors, FortranOrder) {
  EXPECT_EQ(parse_error_for_dict("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
                                 f32_bytes({1, 2, 3, 4}))
                .rfind("x.npy: fortran_order arrays are not supported; save a C-ordered array", 0),
            0u);
  EXPECT_CONTAINS(parse_error_for_dict("{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }"),
                  "fortran_order");
}

// ---- Bad shapes and sizes --------------------------------------------------------------

TEST(ParseNpyErrors, TruncatedData) {
  const std::string data(40, '\0');
  EXPECT_EQ(
      parse_error_for_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", data),
      "x.npy: truncated: header says 12 elements (48 bytes) but only 40 bytes of data follow");
}

TEST(ParseNpyErrors, ExtraData) {
  const std::string message = parse_error_for_dict(
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", std::string(12, '\0'));
  EXPECT_CONTAINS(message, "4 unexpected bytes after the data");
}

TEST(ParseNpyErrors, HugeShapeWithoutData) {
  // Claims 4 TB of data; must fail on the size check, not on an allocation.
  EXPECT_CONTAINS(
      parse_error_for_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }"),
      "header says 1000000000000 elements (4000000000000 bytes) but only 0 bytes");
}

TEST(ParseNpyErrors, NegativeDimension) {
  const std::string message =
      parse_error_for_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (3, -1), }");
  EXPECT_CONTAINS(message, "negative dimension");
  EXPECT_CONTAINS(message, "(3, -1)");
}

TEST(ParseNpyErrors, OverflowingShape) {
  EXPECT_CONTAINS(
      parse_error_for_dict(
          "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }"),
      "too many elements");
  // Fits in int64 as elements but not as bytes.
  EXPECT_CONTAINS(
      parse_error_for_dict(
          "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904,), }"),
      "too many elements");
  // As in NumPy, a zero dimension does not excuse the others overflowing.
  EXPECT_CONTAINS(
      parse_error_for_dict(
          "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 0), }"),
      "too many elements");
  EXPECT_CONTAINS(
      parse_error_for_dict(
          "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }"),
      "too large (99999999999999999999999)");
  EXPECT_CONTAINS(
      parse_error_for_dict(
          "{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775808,), }"),
      "too large");
  EXPECT_CONTAINS(
      parse_error_for_dict(
          "{'descr': '<f4', 'fortran_order': False, 'shape': (-9223372036854775808,), }"),
      "negative dimension");
}

TEST(ParseNpyErrors, ShapeNotATupleOfIntegers) {
  // (5) is the integer 5 in Python, not a tuple.
  EXPECT_CONTAINS(parse_error_for_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (5), }"),
                  "'shape' is an integer, not a tuple");
  EXPECT_CONTAINS(parse_error_for_dict("{'descr': '<f4', 'fortran_order': False, 'shape': [5], }"),
                  "'shape' is a list");
  EXPECT_CONTAINS(
      parse_error_for_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 'a'), }"),
      "not only integers");
  EXPECT_CONTAINS(
      parse_error_for_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (2, True), }"),
      "not only integers");
  EXPECT_CONTAINS(
      parse_error_for_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (2.5,), }"),
      "malformed");
}

// ---- Malformed header dicts ------------------------------------------------------------

TEST(ParseNpyErrors, MissingDuplicateAndUnknownKeys) {
  EXPECT_CONTAINS(parse_error_for_dict("{'descr': '<f4', 'fortran_order': False, }"),
                  "missing key 'shape'");
  EXPECT_CONTAINS(parse_error_for_dict("{'descr': '<f4', 'shape': (), }"),
                  "missing key 'fortran_order'");
  EXPECT_CONTAINS(parse_error_for_dict("{}"), "missing key 'descr'");
  EXPECT_CONTAINS(parse_error_for_dict(
                      "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (), }"),
                  "'descr' appears twice");
  EXPECT_CONTAINS(
      parse_error_for_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (), 'extra': 1, }"),
      "unexpected key 'extra'");
}

TEST(ParseNpyErrors, MalformedSyntax) {
  const char* dicts[] = {
      "",
      "   ",
      "'descr': '<f4'",
      "{'descr' '<f4', 'fortran_order': False, 'shape': (), }",
      "{'descr': '<f4' 'fortran_order': False, 'shape': (), }",
      "{'descr': '<f4, 'fortran_order': False, 'shape': (), }",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (), } trailing",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3}",
      "{'descr': '<f4', 'fortran_order': false, 'shape': (), }",
      "{'descr': '<f4', 'fortran_order': Falsehood, 'shape': (), }",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (,), }",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,,), }",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (-), }",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2x), }",
      "{descr: '<f4', 'fortran_order': False, 'shape': (), }",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (), }}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': {}, }",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (), ",
      "{'descr': '<f4\\",
  };
  for (const char* dict : dicts) {
    EXPECT_CONTAINS(parse_error_for_dict(dict), "malformed .npy header");
  }
}

TEST(ParseNpyErrors, DeepNestingIsRejectedNotOverflowingTheStack) {
  const std::string dict =
      "{'descr': " + std::string(100000, '[') + ", 'fortran_order': False, 'shape': (), }";
  EXPECT_CONTAINS(parse_error_for_dict(dict), "nested too deeply");
}

TEST(ParseNpyErrors, BinaryGarbageInHeaderIsQuotedSafely) {
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (\x01\xff), }";
  const std::string message = parse_error_for_dict(dict);
  EXPECT_CONTAINS(message, "\\x01");
  EXPECT_EQ(message.find('\x01'), std::string::npos);
}

// ---- Robustness: every prefix and random corruptions ----------------------------------------

TEST(ParseNpyFuzz, TruncationsAndCorruptionsNeverCrash) {
  const std::string good = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                                     f32_bytes({1, 2, 3, 4, 5, 6}));
  for (size_t n = 0; n < good.size(); ++n) {
    EXPECT_THROW(parse_npy_f32(std::string_view(good).substr(0, n), "x.npy"), UserError) << n;
  }
  std::mt19937 rng(12345);
  const std::string alphabet = "{}()[]',:-0123456789 \n\"TrueFalsNoL<>|f4i8x\x93\xff";
  for (int iteration = 0; iteration < 20000; ++iteration) {
    std::string bytes = good;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % bytes.size();
      switch (rng() % 4) {
        case 0:
          bytes[at] = static_cast<char>(rng());
          break;
        case 1:
          bytes[at] = alphabet[rng() % alphabet.size()];
          break;
        case 2:
          bytes.insert(at, 1, alphabet[rng() % alphabet.size()]);
          break;
        default:
          bytes.erase(at, 1);
          break;
      }
    }
    try {
      const NpyArray a = parse_npy_f32(bytes, "x.npy");
      EXPECT_EQ(static_cast<int64_t>(a.data.size()), element_count(a.shape));
    } catch (const UserError&) {
      // Rejected cleanly: fine.
    }
  }
}

}  // namespace
}  // namespace fuseopt::support
