// The .npy reader and writer of support/npy.h, after NumPy's format spec
// (numpy/lib/format.py): a magic string, a version, a header length, a Python
// dict literal as header, then the raw array bytes.
#include "support/npy.h"

#include <algorithm>
#include <bit>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <utility>

#include "support/error.h"

namespace fuseopt::support {
namespace {

constexpr std::string_view kMagic = "\x93NUMPY";
constexpr size_t kMagicSize = 6;
// Magic, two version bytes and a header length of 2 (v1.0) or 4 (v2.0, v3.0) bytes.
constexpr size_t kMaxPreambleSize = kMagicSize + 2 + 4;
constexpr int64_t kFloatSize = 4;
// Deepest nesting of tuples and lists the header parser follows (structured dtypes nest).
constexpr int kMaxNesting = 32;

[[noreturn]] void fail(const std::string& name, const std::string& message) {
  throw UserError(name + ": " + message);
}

/// Text from a file, quoted and cut short, safe to put in a one-line message.
std::string printable(std::string_view text, size_t max_chars = 80) {
  std::string out;
  for (size_t i = 0; i < text.size() && i < max_chars; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '\\') {
      out += "\\\\";
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (text.size() > max_chars) out += "...";
  return out;
}

/// Product of the dimensions (all non-negative), or nullopt if it overflows int64.
/// As in NumPy, the non-zero dimensions must multiply without overflow even when a
/// zero dimension makes the array empty.
std::optional<int64_t> checked_count(const std::vector<int64_t>& shape) {
  int64_t product = 1;
  bool has_zero = false;
  for (int64_t dim : shape) {
    if (dim == 0) {
      has_zero = true;
      continue;
    }
    if (product > std::numeric_limits<int64_t>::max() / dim) return std::nullopt;
    product *= dim;
  }
  return has_zero ? 0 : product;
}

// ---- The header: a Python dict literal ---------------------------------------------

/// A value of the Python literal subset that .npy headers use.
struct PyValue {
  enum class Kind { kString, kInt, kBool, kNone, kTuple, kList };
  Kind kind = Kind::kNone;
  std::string text;  // a string's contents, or an integer's source text
  int64_t integer = 0;
  bool int_overflow = false;  // the integer does not fit in int64
  bool boolean = false;
  std::vector<PyValue> items;  // of a tuple or list
};

const char* kind_name(const PyValue& v) {
  switch (v.kind) {
    case PyValue::Kind::kString:
      return "a string";
    case PyValue::Kind::kInt:
      return "an integer";
    case PyValue::Kind::kBool:
      return "a bool";
    case PyValue::Kind::kNone:
      return "None";
    case PyValue::Kind::kTuple:
      return "a tuple";
    case PyValue::Kind::kList:
      return "a list";
  }
  return "a value";
}

/// Recursive-descent parser for `{key: value, ...}` with string keys and values that
/// are strings, integers, True/False/None, tuples or lists. Every read is bounds-checked.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& name) : text_(text), name_(name) {}

  std::vector<std::pair<std::string, PyValue>> parse_dict() {
    std::vector<std::pair<std::string, PyValue>> entries;
    skip_space();
    expect('{');
    skip_space();
    while (!at('}')) {
      if (!at('\'') && !at('"')) error("expected a quoted key or '}'");
      std::string key = parse_string();
      skip_space();
      expect(':');
      skip_space();
      PyValue value = parse_value(0);
      entries.emplace_back(std::move(key), std::move(value));
      skip_space();
      if (at(',')) {
        ++pos_;
        skip_space();
      } else if (!at('}')) {
        error("expected ',' or '}'");
      }
    }
    ++pos_;  // '}'
    skip_space();
    if (pos_ != text_.size()) error("unexpected text after the closing '}'");
    return entries;
  }

 private:
  [[noreturn]] void error(const std::string& what) const {
    // Quote the header without the padding NumPy puts after the dict.
    std::string_view shown = text_;
    while (!shown.empty() && (shown.back() == ' ' || shown.back() == '\n')) shown.remove_suffix(1);
    fail(name_, "malformed .npy header: " + what + " at offset " + std::to_string(pos_) + " of '" +
                    printable(shown, 200) + "'");
  }

  bool at(char c) const { return pos_ < text_.size() && text_[pos_] == c; }

  void expect(char c) {
    if (!at(c)) error(std::string("expected '") + c + "'");
    ++pos_;
  }

  void skip_space() {
    while (pos_ < text_.size() && std::strchr(" \t\n\r\f\v", text_[pos_]) != nullptr &&
           text_[pos_] != '\0') {
      ++pos_;
    }
  }

  PyValue parse_value(int depth) {
    if (depth > kMaxNesting) error("values nested too deeply");
    if (pos_ >= text_.size()) error("unexpected end of header");
    const char c = text_[pos_];
    PyValue v;
    if (c == '\'' || c == '"') {
      v.kind = PyValue::Kind::kString;
      v.text = parse_string();
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      parse_int(v);
    } else if (c == '(' || c == '[') {
      parse_sequence(v, depth);
    } else if (consume_word("True")) {
      v.kind = PyValue::Kind::kBool;
      v.boolean = true;
    } else if (consume_word("False")) {
      v.kind = PyValue::Kind::kBool;
    } else if (consume_word("None")) {
      v.kind = PyValue::Kind::kNone;
    } else {
      error("unexpected character '" + printable(text_.substr(pos_, 1)) + "'");
    }
    return v;
  }

  bool consume_word(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    const size_t end = pos_ + word.size();
    if (end < text_.size()) {
      const char next = text_[end];
      if (std::isalnum(static_cast<unsigned char>(next)) || next == '_') return false;
    }
    pos_ = end;
    return true;
  }

  std::string parse_string() {
    const char quote = text_[pos_++];
    std::string out;
    while (true) {
      if (pos_ >= text_.size()) error("unterminated string");
      const char c = text_[pos_++];
      if (c == quote) return out;
      if (c == '\n') error("unterminated string");
      if (c == '\\') {
        // Escapes do not occur in the strings fuseopt accepts; keep the escaped byte.
        if (pos_ >= text_.size()) error("unterminated string");
        out += text_[pos_++];
      } else {
        out += c;
      }
    }
  }

  void parse_int(PyValue& v) {
    const size_t start = pos_;
    const bool negative = at('-');
    if (negative) ++pos_;
    if (pos_ >= text_.size() || text_[pos_] < '0' || text_[pos_] > '9') {
      error("expected digits after '-'");
    }
    // Magnitudes up to 2^63 so that the most negative int64 still parses.
    const uint64_t limit =
        static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + (negative ? 1 : 0);
    uint64_t magnitude = 0;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      const auto digit = static_cast<uint64_t>(text_[pos_] - '0');
      if (magnitude > (limit - digit) / 10) v.int_overflow = true;
      if (!v.int_overflow) magnitude = magnitude * 10 + digit;
      ++pos_;
    }
    v.kind = PyValue::Kind::kInt;
    v.text = std::string(text_.substr(start, pos_ - start));
    if (at('L') || at('l')) ++pos_;  // Python 2 long suffix, written by old NumPy
    if (pos_ < text_.size() &&
        (std::isalnum(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '.')) {
      error("expected an integer");
    }
    if (!v.int_overflow) {
      v.integer = negative ? static_cast<int64_t>(0 - magnitude) : static_cast<int64_t>(magnitude);
    }
  }

  /// A tuple `( ... )` or list `[ ... ]`. Like Python, `(x)` without a comma is just x.
  void parse_sequence(PyValue& v, int depth) {
    const char open = text_[pos_++];
    const char close = open == '(' ? ')' : ']';
    std::vector<PyValue> items;
    bool trailing_comma = false;
    skip_space();
    while (!at(close)) {
      items.push_back(parse_value(depth + 1));
      skip_space();
      trailing_comma = false;
      if (at(',')) {
        ++pos_;
        trailing_comma = true;
        skip_space();
      } else if (!at(close)) {
        error(std::string("expected ',' or '") + close + "'");
      }
    }
    ++pos_;  // close
    if (open == '(' && items.size() == 1 && !trailing_comma) {
      v = std::move(items[0]);
      return;
    }
    v.kind = open == '(' ? PyValue::Kind::kTuple : PyValue::Kind::kList;
    v.items = std::move(items);
  }

  std::string_view text_;
  const std::string& name_;
  size_t pos_ = 0;
};

// ---- Checking the header's three entries -------------------------------------------

/// Explains why `descr` is not '<f4', e.g. "dtype is float64 ('<f8'); fuseopt needs ...".
std::string describe_wrong_dtype(const PyValue& descr) {
  if (descr.kind == PyValue::Kind::kList) {
    return "dtype is a structured (record) dtype; fuseopt needs float32 ('<f4')";
  }
  if (descr.kind != PyValue::Kind::kString) {
    return std::string("'descr' is ") + kind_name(descr) +
           ", not a dtype string; fuseopt needs float32 ('<f4')";
  }
  const std::string& s = descr.text;
  std::string_view rest = s;
  char order = 0;
  if (!rest.empty() && std::strchr("<>|=", rest[0]) != nullptr && rest[0] != '\0') {
    order = rest[0];
    rest.remove_prefix(1);
  }
  std::string type_name;
  if (!rest.empty()) {
    const std::string_view digits = rest.substr(1);
    const bool numeric_size = !digits.empty() && digits.size() <= 3 &&
                              digits.find_first_not_of("0123456789") == std::string_view::npos;
    const int bytes = numeric_size ? std::stoi(std::string(digits)) : 0;
    const std::string bits = std::to_string(bytes * 8);
    switch (rest[0]) {
      case 'f':
        if (numeric_size) type_name = "float" + bits;
        break;
      case 'i':
        if (numeric_size) type_name = "int" + bits;
        break;
      case 'u':
        if (numeric_size) type_name = "uint" + bits;
        break;
      case 'c':
        if (numeric_size) type_name = "complex" + bits;
        break;
      case 'b':
        if (numeric_size) type_name = "bool";
        break;
      case '?':
        if (digits.empty()) type_name = "bool";
        break;
      case 'U':
        type_name = "a unicode string";
        break;
      case 'S':
        type_name = "a byte string";
        break;
      case 'O':
        type_name = "Python objects";
        break;
      case 'V':
        type_name = "void (raw bytes)";
        break;
      case 'M':
        type_name = "datetime64";
        break;
      case 'm':
        type_name = "timedelta64";
        break;
      default:
        break;
    }
  }
  const std::string quoted = "('" + printable(s) + "')";
  if (type_name == "float32") {
    if (order == '>') {
      return "dtype is big-endian float32 " + quoted +
             "; fuseopt needs little-endian float32 ('<f4')";
    }
    return "dtype is float32 without a little-endian byte order " + quoted +
           "; fuseopt needs little-endian float32 ('<f4')";
  }
  if (type_name.empty()) return "dtype is '" + printable(s) + "'; fuseopt needs float32 ('<f4')";
  const std::string endian = order == '>' ? "big-endian " : "";
  return "dtype is " + endian + type_name + " " + quoted + "; fuseopt needs float32 ('<f4')";
}

/// The shape as written in the header, e.g. "(3, -1)", for messages about bad shapes.
std::string shape_source_text(const PyValue& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.items.size(); ++i) {
    if (i > 0) out += ", ";
    out += shape.items[i].text;
  }
  if (shape.items.size() == 1) out += ",";
  return printable(out + ")", 200);
}

struct NpyHeader {
  std::vector<int64_t> shape;
  int64_t count = 0;  // elements
};

NpyHeader check_header(std::string_view header_text, const std::string& name) {
  const auto entries = HeaderParser(header_text, name).parse_dict();
  const PyValue* descr = nullptr;
  const PyValue* fortran_order = nullptr;
  const PyValue* shape = nullptr;
  for (const auto& [key, value] : entries) {
    const PyValue** slot = key == "descr"           ? &descr
                           : key == "fortran_order" ? &fortran_order
                           : key == "shape"         ? &shape
                                                    : nullptr;
    if (slot == nullptr) {
      fail(name, "malformed .npy header: unexpected key '" + printable(key) +
                     "' (the header has exactly 'descr', 'fortran_order' and 'shape')");
    }
    if (*slot != nullptr) fail(name, "malformed .npy header: key '" + key + "' appears twice");
    *slot = &value;
  }
  for (const auto& [key, value] :
       {std::pair{"descr", descr}, std::pair{"fortran_order", fortran_order},
        std::pair{"shape", shape}}) {
    if (value == nullptr)
      fail(name, std::string("malformed .npy header: missing key '") + key + "'");
  }

  if (descr->kind != PyValue::Kind::kString || descr->text != "<f4") {
    fail(name, describe_wrong_dtype(*descr));
  }
  if (fortran_order->kind != PyValue::Kind::kBool) {
    fail(name, std::string("malformed .npy header: 'fortran_order' is ") +
                   kind_name(*fortran_order) + ", not True or False");
  }
  if (fortran_order->boolean) {
    fail(name,
         "fortran_order arrays are not supported; save a C-ordered array "
         "(np.save(path, np.ascontiguousarray(arr)))");
  }
  if (shape->kind != PyValue::Kind::kTuple) {
    fail(name, std::string("malformed .npy header: 'shape' is ") + kind_name(*shape) +
                   ", not a tuple of integers");
  }
  NpyHeader header;
  for (const PyValue& dim : shape->items) {
    if (dim.kind != PyValue::Kind::kInt) {
      fail(name, std::string("malformed .npy header: 'shape' holds ") + kind_name(dim) +
                     ", not only integers");
    }
    if (dim.int_overflow) {
      fail(name, "shape " + shape_source_text(*shape) + " has a dimension too large (" +
                     printable(dim.text) + ")");
    }
    if (dim.integer < 0) {
      fail(name,
           "shape " + shape_source_text(*shape) + " has a negative dimension (" + dim.text + ")");
    }
    header.shape.push_back(dim.integer);
  }
  const std::optional<int64_t> count = checked_count(header.shape);
  if (!count || *count > std::numeric_limits<int64_t>::max() / kFloatSize) {
    fail(name, "shape " + shape_to_string(header.shape) +
                   " has too many elements (its size overflows 64 bits)");
  }
  header.count = *count;
  return header;
}

// ---- The preamble and the data -----------------------------------------------------

struct Preamble {
  size_t size = 0;  // bytes of magic, version and header length
  uint64_t header_len = 0;
};

/// Checks magic and version in the first bytes of a file of `file_size` bytes and
/// that the header they announce fits in the file.
Preamble check_preamble(std::string_view head, uint64_t file_size, const std::string& name) {
  if (file_size == 0) fail(name, "not a .npy file (bad magic: the file is empty)");
  const size_t magic_seen = std::min(head.size(), kMagicSize);
  if (head.substr(0, magic_seen) != kMagic.substr(0, magic_seen)) {
    if (head.starts_with("PK\x03\x04")) {
      fail(name,
           "not a .npy file (bad magic); it looks like a .npz archive, "
           "which fuseopt does not read: save each array with np.save");
    }
    fail(name, "not a .npy file (bad magic)");
  }
  if (head.size() < kMagicSize + 2) fail(name, "truncated: the file ends inside the .npy preamble");
  const auto major = static_cast<unsigned char>(head[6]);
  const auto minor = static_cast<unsigned char>(head[7]);
  if (major < 1 || major > 3 || minor != 0) {
    fail(name, "unsupported .npy format version " + std::to_string(major) + "." +
                   std::to_string(minor) + " (fuseopt reads 1.0, 2.0 and 3.0)");
  }
  Preamble p;
  const size_t len_bytes = major == 1 ? 2 : 4;
  p.size = kMagicSize + 2 + len_bytes;
  if (head.size() < p.size) fail(name, "truncated: the file ends inside the .npy preamble");
  for (size_t i = 0; i < len_bytes; ++i) {  // little-endian
    p.header_len |= static_cast<uint64_t>(static_cast<unsigned char>(head[8 + i])) << (8 * i);
  }
  if (p.header_len > file_size - p.size) {
    fail(name, "truncated: the preamble says the header is " + std::to_string(p.header_len) +
                   " bytes but only " + std::to_string(file_size - p.size) + " bytes follow");
  }
  return p;
}

/// Checks that exactly the header's element count of float32 values follow it.
void check_data_size(const NpyHeader& header, uint64_t data_bytes, const std::string& name) {
  const auto expected = static_cast<uint64_t>(header.count) * kFloatSize;
  const std::string says = "header says " + std::to_string(header.count) + " elements (" +
                           std::to_string(expected) + " bytes)";
  if (data_bytes < expected) {
    fail(name, "truncated: " + says + " but only " + std::to_string(data_bytes) +
                   " bytes of data follow");
  }
  if (data_bytes > expected) {
    fail(name, std::to_string(data_bytes - expected) + " unexpected bytes after the data: " + says +
                   " but " + std::to_string(data_bytes) + " bytes of data follow");
  }
}

/// Turns floats stored little-endian into native ones, or back: on a big-endian
/// machine it reverses the bytes of each value, elsewhere it does nothing.
void swap_to_or_from_little_endian(float* values, size_t count) {
  if constexpr (std::endian::native == std::endian::big) {
    auto* bytes = reinterpret_cast<unsigned char*>(values);
    for (size_t i = 0; i < count; ++i) {
      std::swap(bytes[4 * i], bytes[4 * i + 3]);
      std::swap(bytes[4 * i + 1], bytes[4 * i + 2]);
    }
  } else {
    (void)values;
    (void)count;
  }
}

/// The header NumPy writes: the dict, padded with spaces and a final '\n' so that
/// preamble plus header is a multiple of 64 bytes.
std::string make_header(const std::vector<int64_t>& shape, size_t preamble_size) {
  std::string header =
      "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape_to_string(shape) + ", }";
  const size_t unpadded = preamble_size + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  return header;
}

/// Closes a FILE* on every path out of a scope.
struct FileCloser {
  std::FILE* file;
  ~FileCloser() {
    if (file != nullptr) std::fclose(file);
  }
};

std::string errno_text(int error) { return std::strerror(error); }

}  // namespace

int64_t element_count(const std::vector<int64_t>& shape) {
  for (int64_t dim : shape) {
    if (dim < 0) {
      throw UserError("shape " + shape_to_string(shape) + " has a negative dimension (" +
                      std::to_string(dim) + ")");
    }
  }
  const std::optional<int64_t> count = checked_count(shape);
  if (!count) {
    throw UserError("shape " + shape_to_string(shape) +
                    " has too many elements (its size overflows 64 bits)");
  }
  return *count;
}

std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  if (shape.size() == 1) out += ",";
  return out + ")";
}

NpyArray parse_npy_f32(std::string_view bytes, const std::string& name_for_errors) {
  const std::string& name = name_for_errors;
  const Preamble pre = check_preamble(bytes.substr(0, kMaxPreambleSize), bytes.size(), name);
  const NpyHeader header = check_header(bytes.substr(pre.size, pre.header_len), name);
  const std::string_view data = bytes.substr(pre.size + pre.header_len);
  check_data_size(header, data.size(), name);
  NpyArray array;
  array.shape = header.shape;
  array.data.resize(static_cast<size_t>(header.count));
  if (!array.data.empty()) std::memcpy(array.data.data(), data.data(), data.size());
  swap_to_or_from_little_endian(array.data.data(), array.data.size());
  return array;
}

NpyArray read_npy_f32(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail(path, "is a directory, not a .npy file");
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) fail(path, "cannot open: " + errno_text(errno));
  FileCloser closer{file};

  auto read_exactly = [&](void* to, size_t n) {
    if (n > 0 && std::fread(to, 1, n, file) != n) {
      if (std::ferror(file)) throw EnvironmentError(path + ": read failed: " + errno_text(errno));
      fail(path, "truncated: the file changed size while it was read");
    }
  };

  // A file we cannot seek in (a pipe) is read whole and parsed from memory.
  if (std::fseek(file, 0, SEEK_END) != 0) {
    std::string bytes;
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, file)) > 0) bytes.append(buf, n);
    if (std::ferror(file)) throw EnvironmentError(path + ": read failed: " + errno_text(errno));
    return parse_npy_f32(bytes, path);
  }
  const long end = std::ftell(file);
  if (end < 0 || std::fseek(file, 0, SEEK_SET) != 0) {
    throw EnvironmentError(path + ": cannot find the file's size: " + errno_text(errno));
  }
  const auto file_size = static_cast<uint64_t>(end);

  std::string head(static_cast<size_t>(std::min<uint64_t>(file_size, kMaxPreambleSize)), '\0');
  read_exactly(head.data(), head.size());
  const Preamble pre = check_preamble(head, file_size, path);
  // check_preamble has bounded header_len by the file's size, so this allocation is sane.
  std::string header_text(static_cast<size_t>(pre.header_len), '\0');
  if (std::fseek(file, static_cast<long>(pre.size), SEEK_SET) != 0) {
    throw EnvironmentError(path + ": seek failed: " + errno_text(errno));
  }
  read_exactly(header_text.data(), header_text.size());
  const NpyHeader header = check_header(header_text, path);
  check_data_size(header, file_size - pre.size - pre.header_len, path);

  NpyArray array;
  array.shape = header.shape;
  array.data.resize(static_cast<size_t>(header.count));
  read_exactly(array.data.data(), array.data.size() * kFloatSize);
  swap_to_or_from_little_endian(array.data.data(), array.data.size());
  return array;
}

void write_npy_f32(const std::string& path, const std::vector<int64_t>& shape,
                   std::span<const float> data) {
  for (int64_t dim : shape)
    FUSEOPT_CHECK(dim >= 0, "write_npy_f32: negative dimension in shape " + shape_to_string(shape));
  const std::optional<int64_t> count = checked_count(shape);
  FUSEOPT_CHECK(count && static_cast<uint64_t>(*count) == data.size(),
                "write_npy_f32: shape " + shape_to_string(shape) + " does not match " +
                    std::to_string(data.size()) + " values");

  // Version 1.0 unless the header length does not fit in its 16 bits (NumPy does the same).
  std::string header = make_header(shape, kMagicSize + 2 + 2);
  unsigned char major = 1;
  if (header.size() > 0xffff) {
    major = 2;
    header = make_header(shape, kMagicSize + 2 + 4);
  }
  std::string preamble(kMagic);
  preamble += static_cast<char>(major);
  preamble += '\0';
  const size_t len_bytes = major == 1 ? 2 : 4;
  for (size_t i = 0; i < len_bytes; ++i)
    preamble += static_cast<char>((header.size() >> (8 * i)) & 0xff);

  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) {
    const int error = errno;
    const std::string message = path + ": cannot create: " + errno_text(error);
    if (error == ENOENT || error == ENOTDIR || error == EISDIR || error == ENAMETOOLONG) {
      throw UserError(message);
    }
    throw EnvironmentError(message);
  }
  bool ok = std::fwrite(preamble.data(), 1, preamble.size(), file) == preamble.size() &&
            std::fwrite(header.data(), 1, header.size(), file) == header.size();
  if constexpr (std::endian::native == std::endian::little) {
    ok = ok &&
         (data.empty() || std::fwrite(data.data(), kFloatSize, data.size(), file) == data.size());
  } else {
    std::vector<float> chunk(std::min<size_t>(data.size(), 1 << 16));
    for (size_t done = 0; ok && done < data.size(); done += chunk.size()) {
      const size_t n = std::min(chunk.size(), data.size() - done);
      std::memcpy(chunk.data(), data.data() + done, n * kFloatSize);
      swap_to_or_from_little_endian(chunk.data(), n);
      ok = std::fwrite(chunk.data(), kFloatSize, n, file) == n;
    }
  }
  int error = ok ? 0 : errno;
  if (std::fclose(file) != 0 && ok) {
    ok = false;
    error = errno;
  }
  if (!ok) {
    std::remove(path.c_str());
    throw EnvironmentError(path + ": write failed: " + errno_text(error));
  }
}

}  // namespace fuseopt::support
