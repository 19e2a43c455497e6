// A small JSON reader for tests of machine-readable output (`fuseopt rules --json`,
// scalars.json). fuseopt itself only writes JSON (support/json.h).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fuseopt::testing {

struct JsonValue {
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject } kind = Kind::kNull;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<JsonValue> array;
  std::map<std::string, JsonValue> object;

  bool has(const std::string& key) const { return object.count(key) != 0; }
  /// The member `key` of an object; a null value when absent.
  const JsonValue& operator[](const std::string& key) const;
};

/// Parses exactly one JSON value (surrounded by optional whitespace); empty on any error,
/// with a description in `error` when given.
std::optional<JsonValue> parse_json(std::string_view text, std::string* error = nullptr);

}  // namespace fuseopt::testing
