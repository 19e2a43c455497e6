// The values that flags carry: strict numbers and NAME=VALUE lists. A malformed value is a
// UserError (exit 1) that quotes it; a flag the command does not know is a UsageError instead.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace fuseopt::tools {

/// The whole of `text` as a finite float64 ("1e-3", "0.9", "-2", "+4"); no spaces, no
/// trailing characters, no "nan" or "inf". `what` names the value in the message.
double parse_number(const std::string& text, const std::string& what);

/// The whole of `text` as a decimal integer in [min, max].
int64_t parse_integer(const std::string& text, const std::string& what, int64_t min,
                      int64_t max);

/// The NAME=VALUE values of a repeated flag such as --set, by name. Throws UserError for a
/// value without '=' or with an empty name, and for a name given twice.
std::map<std::string, std::string> parse_assignments(const std::vector<std::string>& values,
                                                     const std::string& flag);

/// The shortest text that reads back as `value` ("0.001", "1e-08", "0.9", "3").
std::string format_number(double value);

}  // namespace fuseopt::tools
