#include "tools/fuseopt/flag_values.h"

#include <charconv>
#include <cmath>

#include "support/error.h"

namespace fuseopt::tools {

double parse_number(const std::string& text, const std::string& what) {
  // from_chars takes no leading '+', which people write (and Python's repr never does).
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  if (begin != end && *begin == '+' && begin + 1 != end && begin[1] != '-') ++begin;
  double value = 0;
  const auto [stop, error] = std::from_chars(begin, end, value, std::chars_format::general);
  if (text.empty() || error == std::errc::invalid_argument || stop != end) {
    throw UserError(what + " must be a number, not '" + text + "'");
  }
  if (error == std::errc::result_out_of_range || !std::isfinite(value)) {
    throw UserError(what + " must be a finite number, not '" + text + "'");
  }
  return value;
}

int64_t parse_integer(const std::string& text, const std::string& what, int64_t min,
                      int64_t max) {
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  if (begin != end && *begin == '+' && begin + 1 != end && begin[1] != '-') ++begin;
  int64_t value = 0;
  const auto [stop, error] = std::from_chars(begin, end, value);
  const bool ok = !text.empty() && error == std::errc() && stop == end;
  if (!ok || value < min || value > max) {
    std::string range = max == INT64_MAX ? ">= " + std::to_string(min)
                                         : "from " + std::to_string(min) + " to " +
                                               std::to_string(max);
    throw UserError(what + " must be an integer " + range + ", not '" + text + "'");
  }
  return value;
}

std::map<std::string, std::string> parse_assignments(const std::vector<std::string>& values,
                                                     const std::string& flag) {
  std::map<std::string, std::string> result;
  for (const std::string& text : values) {
    const size_t eq = text.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw UserError(flag + " takes NAME=VALUE, not '" + text + "'");
    }
    std::string name = text.substr(0, eq);
    if (!result.emplace(name, text.substr(eq + 1)).second) {
      throw UserError(flag + " " + name + " is given twice");
    }
  }
  return result;
}

std::string format_number(double value) {
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, result.ptr);
}

}  // namespace fuseopt::tools
