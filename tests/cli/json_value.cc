#include "tests/cli/json_value.h"

#include <charconv>
#include <cstdint>

namespace fuseopt::testing {
namespace {

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  std::optional<JsonValue> parse_document(std::string* error) {
    JsonValue value;
    bool ok = parse_value(value, 0);
    skip_space();
    if (ok && pos_ != text_.size()) ok = fail("text after the value");
    if (!ok) {
      if (error) *error = error_ + " at byte " + std::to_string(pos_);
      return std::nullopt;
    }
    return value;
  }

 private:
  bool fail(const std::string& message) {
    if (error_.empty()) error_ = message;
    return false;
  }

  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n' ||
                                   text_[pos_] == '\r' || text_[pos_] == '\t')) {
      ++pos_;
    }
  }

  bool consume(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  bool parse_value(JsonValue& value, int depth) {
    if (depth > 100) return fail("nesting too deep");
    skip_space();
    if (pos_ >= text_.size()) return fail("unexpected end");
    const char c = text_[pos_];
    if (c == '{') return parse_object(value, depth);
    if (c == '[') return parse_array(value, depth);
    if (c == '"') {
      value.kind = JsonValue::Kind::kString;
      return parse_string(value.string);
    }
    if (consume("true")) {
      value.kind = JsonValue::Kind::kBool;
      value.boolean = true;
      return true;
    }
    if (consume("false")) {
      value.kind = JsonValue::Kind::kBool;
      return true;
    }
    if (consume("null")) return true;
    return parse_number(value);
  }

  bool parse_number(JsonValue& value) {
    // JSON's grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
    const size_t start = pos_;
    auto digits = [&] {
      const size_t from = pos_;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
      return pos_ > from;
    };
    if (pos_ < text_.size() && text_[pos_] == '-') ++pos_;
    if (pos_ < text_.size() && text_[pos_] == '0') {
      ++pos_;
    } else if (!digits()) {
      return fail("expected a value");
    }
    if (pos_ < text_.size() && text_[pos_] == '.') {
      ++pos_;
      if (!digits()) return fail("expected digits after '.'");
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
      if (!digits()) return fail("expected an exponent");
    }
    value.kind = JsonValue::Kind::kNumber;
    const auto result = std::from_chars(text_.data() + start, text_.data() + pos_, value.number);
    if (result.ec != std::errc()) return fail("bad number");
    return true;
  }

  bool parse_string(std::string& out) {
    ++pos_;  // the opening quote
    while (pos_ < text_.size()) {
      const char c = text_[pos_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return fail("control character in a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= text_.size()) break;
      const char e = text_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          if (pos_ + 4 > text_.size()) return fail("short \\u escape");
          uint32_t code = 0;
          const auto result = std::from_chars(text_.data() + pos_, text_.data() + pos_ + 4, code, 16);
          if (result.ptr != text_.data() + pos_ + 4) return fail("bad \\u escape");
          pos_ += 4;
          // Enough for the tests: code points below 0x800, as UTF-8.
          if (code < 0x80) {
            out += static_cast<char>(code);
          } else if (code < 0x800) {
            out += static_cast<char>(0xC0 | (code >> 6));
            out += static_cast<char>(0x80 | (code & 0x3F));
          } else {
            return fail("\\u escape above U+07FF");
          }
          break;
        }
        default:
          return fail("bad escape");
      }
    }
    return fail("unterminated string");
  }

  bool parse_array(JsonValue& value, int depth) {
    value.kind = JsonValue::Kind::kArray;
    ++pos_;
    skip_space();
    if (consume("]")) return true;
    while (true) {
      value.array.emplace_back();
      if (!parse_value(value.array.back(), depth + 1)) return false;
      skip_space();
      if (consume("]")) return true;
      if (!consume(",")) return fail("expected ',' or ']'");
    }
  }

  bool parse_object(JsonValue& value, int depth) {
    value.kind = JsonValue::Kind::kObject;
    ++pos_;
    skip_space();
    if (consume("}")) return true;
    while (true) {
      skip_space();
      if (pos_ >= text_.size() || text_[pos_] != '"') return fail("expected a key");
      std::string key;
      if (!parse_string(key)) return false;
      skip_space();
      if (!consume(":")) return fail("expected ':'");
      JsonValue member;
      if (!parse_value(member, depth + 1)) return false;
      if (!value.object.emplace(key, std::move(member)).second) return fail("duplicate key " + key);
      skip_space();
      if (consume("}")) return true;
      if (!consume(",")) return fail("expected ',' or '}'");
    }
  }

  std::string_view text_;
  size_t pos_ = 0;
  std::string error_;
};

}  // namespace

const JsonValue& JsonValue::operator[](const std::string& key) const {
  static const JsonValue kNull;
  auto it = object.find(key);
  return it == object.end() ? kNull : it->second;
}

std::optional<JsonValue> parse_json(std::string_view text, std::string* error) {
  return Parser(text).parse_document(error);
}

}  // namespace fuseopt::testing
