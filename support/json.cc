// The JSON writer of support/json.h: a stack of open containers decides where
// commas, colons and line breaks go.
#include "support/json.h"

#include <charconv>
#include <cmath>
#include <cstdio>

#include "support/error.h"

namespace fuseopt::support {

std::string json_quote(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out += '"';
  for (const char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

JsonWriter::JsonWriter(int indent) : indent_(indent < 0 ? 0 : indent) {}

void JsonWriter::new_line() {
  if (indent_ == 0) return;
  out_ += '\n';
  out_.append(stack_.size() * static_cast<size_t>(indent_), ' ');
}

void JsonWriter::before_value() {
  FUSEOPT_CHECK(!done_, "JsonWriter: a second top-level value");
  if (stack_.empty()) return;
  Frame& top = stack_.back();
  if (top.is_object) {
    FUSEOPT_CHECK(top.expects_value, "JsonWriter: a value in an object needs key() first");
    top.expects_value = false;
    return;  // key() already placed the separator
  }
  if (top.has_items) out_ += ',';
  top.has_items = true;
  new_line();
}

void JsonWriter::after_value() {
  if (stack_.empty()) done_ = true;
}

JsonWriter& JsonWriter::key(std::string_view name) {
  FUSEOPT_CHECK(!stack_.empty() && stack_.back().is_object, "JsonWriter: key() outside an object");
  Frame& top = stack_.back();
  FUSEOPT_CHECK(!top.expects_value, "JsonWriter: key() where a value is due");
  if (top.has_items) out_ += ',';
  top.has_items = true;
  top.expects_value = true;
  new_line();
  out_ += json_quote(name);
  out_ += indent_ == 0 ? ":" : ": ";
  return *this;
}

JsonWriter& JsonWriter::begin_object() {
  before_value();
  out_ += '{';
  stack_.push_back(Frame{.is_object = true});
  return *this;
}

JsonWriter& JsonWriter::begin_array() {
  before_value();
  out_ += '[';
  stack_.push_back(Frame{.is_object = false});
  return *this;
}

JsonWriter& JsonWriter::end(bool is_object) {
  FUSEOPT_CHECK(!stack_.empty() && stack_.back().is_object == is_object,
                is_object ? "JsonWriter: end_object() without a matching begin_object()"
                          : "JsonWriter: end_array() without a matching begin_array()");
  FUSEOPT_CHECK(!stack_.back().expects_value, "JsonWriter: a key without a value");
  const bool had_items = stack_.back().has_items;
  stack_.pop_back();
  if (had_items) new_line();
  out_ += is_object ? '}' : ']';
  after_value();
  return *this;
}

JsonWriter& JsonWriter::end_object() { return end(true); }
JsonWriter& JsonWriter::end_array() { return end(false); }

JsonWriter& JsonWriter::value(std::string_view text) {
  before_value();
  out_ += json_quote(text);
  after_value();
  return *this;
}

JsonWriter& JsonWriter::value(double number) {
  if (std::isnan(number)) return value(std::string_view("nan"));
  if (std::isinf(number)) return value(std::string_view(number > 0 ? "inf" : "-inf"));
  before_value();
  // Shortest text that reads back as the same double; it is always valid JSON
  // ("3", "0.1", "1e-08", "-0"), as no finite double prints as inf or nan.
  char buf[32];
  const auto result = std::to_chars(buf, buf + sizeof buf, number);
  FUSEOPT_CHECK(result.ec == std::errc(), "JsonWriter: cannot format a double");
  out_.append(buf, result.ptr);
  after_value();
  return *this;
}

JsonWriter& JsonWriter::value(int64_t number) {
  before_value();
  out_ += std::to_string(number);
  after_value();
  return *this;
}

JsonWriter& JsonWriter::value(uint64_t number) {
  before_value();
  out_ += std::to_string(number);
  after_value();
  return *this;
}

JsonWriter& JsonWriter::value(bool flag) {
  before_value();
  out_ += flag ? "true" : "false";
  after_value();
  return *this;
}

JsonWriter& JsonWriter::null() {
  before_value();
  out_ += "null";
  after_value();
  return *this;
}

const std::string& JsonWriter::str() const {
  FUSEOPT_CHECK(done_, "JsonWriter: str() before the top-level value is complete");
  return out_;
}

}  // namespace fuseopt::support
