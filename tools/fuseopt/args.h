// The command line of one subcommand: which flags it takes (a CommandSpec), what was given
// (Args), and the parser between them. Anything the spec does not allow is a UsageError,
// which the program reports with exit code 2. The same spec writes `fuseopt SUB --help`.
#pragma once

#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace fuseopt::tools {

/// The command line itself is wrong: an unknown subcommand or flag, a missing argument.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class FlagKind {
  kSwitch,    ///< `--json`: present or not, takes no value
  kValue,     ///< `--out DIR` or `--out=DIR`, at most once
  kRepeated,  ///< `--set NAME=VALUE`, any number of times, in order
};

struct FlagSpec {
  std::string spelling;    ///< as typed, dashes included: "--out", "-o"
  FlagKind kind = FlagKind::kSwitch;
  std::string value_name;  ///< "DIR" in `--out DIR`; empty for switches
  std::string help;        ///< one line for --help
  bool required = false;
};

struct CommandSpec {
  std::string name;             ///< "run"
  std::string synopsis;         ///< everything after "fuseopt run" in the usage line
  std::string description;      ///< paragraphs for --help, each line ending in '\n'
  std::string positional_name;  ///< "RULE", for messages
  int min_positionals = 0;
  int max_positionals = 0;  ///< -1: any number
  std::vector<FlagSpec> flags;
};

/// What one command line gave, checked against its CommandSpec.
class Args {
 public:
  const std::string& command() const { return command_; }
  /// True when --help or -h was given; then nothing else was checked.
  bool wants_help() const { return wants_help_; }
  const std::vector<std::string>& positionals() const { return positionals_; }
  /// A switch was given, or a value flag was given at least once.
  bool has(const std::string& spelling) const;
  /// The value of a kValue flag, if given.
  std::optional<std::string> value(const std::string& spelling) const;
  /// The value of a kValue flag, or `fallback`.
  std::string value_or(const std::string& spelling, const std::string& fallback) const;
  /// Every value of a kRepeated flag, in command-line order.
  std::vector<std::string> values(const std::string& spelling) const;

 private:
  friend Args parse_args(const CommandSpec& spec, std::span<const std::string> argv);
  std::string command_;
  bool wants_help_ = false;
  std::vector<std::string> positionals_;
  std::map<std::string, std::vector<std::string>> flags_;  // a switch maps to {}
};

/// Parses the arguments after the subcommand's name. Flags and positionals may be mixed;
/// a value flag takes the next argument or the text after '='; `--` ends the flags.
/// Throws UsageError for an unknown flag (with a suggestion), a missing value, a value
/// given to a switch, a value flag given twice, a missing required flag, or the wrong number
/// of positionals. With --help nothing is checked.
Args parse_args(const CommandSpec& spec, std::span<const std::string> argv);

/// `fuseopt SUB --help`: the usage line, the description and the flags in a table.
std::string help_text(const CommandSpec& spec);

/// "see 'fuseopt run --help'", for the end of usage messages.
std::string see_help(const std::string& command);

}  // namespace fuseopt::tools
