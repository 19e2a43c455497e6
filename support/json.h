// A small streaming JSON writer for fuseopt's machine-readable output (tuning
// reports, benchmark results). It only writes; it never parses.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fuseopt::support {

/// Returns `text` as a quoted JSON string: '"' and '\' escaped, \b \f \n \r \t by
/// name, other control characters as \u00XX. Bytes from 0x80 up are copied as they
/// are, so UTF-8 input gives UTF-8 output.
std::string json_quote(std::string_view text);

/// Builds one JSON value as text, compact or indented:
///
///   JsonWriter w(2);
///   w.begin_object().key("lr").value(0.001).key("steps").value(10).end_object();
///   std::string text = w.str();
///
/// Non-finite doubles, which JSON cannot represent, are written as the strings
/// "nan", "inf" and "-inf". Finite doubles are written in the shortest form that
/// reads back to the same double (e.g. 0.1, 3, 1e-08). Misuse (a value where a key
/// is due, an unbalanced end_*, str() before the value is complete) is a bug and
/// throws InternalError.
class JsonWriter {
 public:
  /// `indent` spaces per nesting level; 0 writes compact JSON on one line.
  explicit JsonWriter(int indent = 0);

  /// Starts an object; then alternate key() and a value until end_object().
  JsonWriter& begin_object();
  JsonWriter& end_object();
  /// Starts an array; then values until end_array().
  JsonWriter& begin_array();
  JsonWriter& end_array();
  /// Writes an object's key; the next call must write its value.
  JsonWriter& key(std::string_view name);

  /// Writes a string.
  JsonWriter& value(std::string_view text);
  JsonWriter& value(const char* text) { return value(std::string_view(text)); }
  JsonWriter& value(const std::string& text) { return value(std::string_view(text)); }
  /// Writes a number (or "nan", "inf", "-inf" as strings, see above).
  JsonWriter& value(double number);
  JsonWriter& value(int64_t number);
  JsonWriter& value(uint64_t number);
  /// Writes any other integer type exactly (int, unsigned, size_t, ...).
  template <std::integral T>
  requires(!std::same_as<T, bool>) JsonWriter& value(T number) {
    if constexpr (std::is_signed_v<T>) {
      return value(static_cast<int64_t>(number));
    } else {
      return value(static_cast<uint64_t>(number));
    }
  }
  /// Writes true or false.
  JsonWriter& value(bool flag);
  /// Writes null.
  JsonWriter& null();

  /// True once one complete top-level value has been written.
  bool complete() const { return done_; }
  /// The JSON text; the top-level value must be complete.
  const std::string& str() const;

 private:
  struct Frame {
    bool is_object;
    bool has_items = false;
    bool expects_value = false;  // in an object, after key()
  };

  void before_value();  // separators and indentation before a value or key
  void after_value();
  void new_line();
  JsonWriter& end(bool is_object);

  int indent_;
  std::string out_;
  std::vector<Frame> stack_;
  bool done_ = false;
};

}  // namespace fuseopt::support
