// The `fuseopt` program: finds the subcommand in the table below, parses its flags, runs it,
// and turns every error into a one-line message on stderr and an exit code (CLI.md):
// 0 ok, 1 user error, 2 usage error, 3 internal error, 4 environment.
#include <cstdio>
#include <exception>
#include <iostream>
#include <new>
#include <span>
#include <string>
#include <vector>

#include "support/edit_distance.h"
#include "support/error.h"
#include "tools/fuseopt/args.h"
#include "tools/fuseopt/subcommands.h"

#ifndef FUSEOPT_VERSION
#error "FUSEOPT_VERSION must be defined by the build (tools/fuseopt/CMakeLists.txt)"
#endif

namespace fuseopt::tools {
namespace {

enum ExitCode : int {
  kOk = 0,
  kUserError = 1,
  kUsageError = 2,
  kInternalError = 3,
  kEnvironmentError = 4,
};

// Every subcommand, in the order `fuseopt --help` lists them.
constexpr Subcommand kSubcommands[] = {
    {"rules", "list the built-in rules: hypers, options, states and scalars", rules_spec,
     run_rules, true},
    {"check", "parse and check rules, printing every error and warning", check_spec, run_check,
     true},
    {"emit", "print a rule's IR, Halide pipelines or CUDA C; write cubins and PTX",
     emit_spec, run_emit, true},
    {"run", "run steps of a rule on one tensor given as .npy files", run_spec, run_run, true},
    {"demo", "the main job: check, compile, tune and time AdaMomentum", demo_spec,
     run_demo, true},
    {"bench", "time steps and compare with the memory bandwidth", bench_spec, run_bench, true},
    {"tune", "autotune kernels and record the winners in the cache", tune_spec, run_tune, true},
    {"cache", "inspect and manage the cache database", cache_spec, run_cache, true},
    {"pack", "build, list and check kernel packs", pack_spec, run_pack, true},
};

const Subcommand* find_subcommand(const std::string& name) {
  for (const Subcommand& sub : kSubcommands) {
    if (name == sub.name) return &sub;
  }
  return nullptr;
}

std::string program_help() {
  std::string out =
      "usage: fuseopt SUBCOMMAND [ARGS...]\n"
      "       fuseopt SUBCOMMAND --help\n"
      "       fuseopt --help | --version\n"
      "\n"
      "fuseopt compiles deep-learning optimizer update rules written in its rule language.\n"
      "A RULE is the name of a built-in rule (see 'fuseopt rules') or the path of a .opt file.\n"
      "\n"
      "subcommands:\n";
  for (const Subcommand& sub : kSubcommands) {
    std::string line = std::string("  ") + sub.name;
    line.resize(10, ' ');
    line += sub.summary;
    if (!sub.is_built) line += " (not built yet)";
    out += line + "\n";
  }
  out +=
      "\n"
      "exit codes: 0 success, 1 user error (bad rule or input file), 2 usage error,\n"
      "            3 internal error (a bug in fuseopt), 4 environment (missing GPU, compiler, ...)\n";
  return out;
}

// Diagnostics arrive as several lines ending in a summary; the summary gets the prefix.
void print_error(const std::string& prefix, std::string message, const std::string& suffix = "") {
  while (!message.empty() && message.back() == '\n') message.pop_back();
  const size_t last_newline = message.rfind('\n');
  if (last_newline != std::string::npos) {
    std::cerr << message.substr(0, last_newline + 1);
    message.erase(0, last_newline + 1);
  }
  std::cerr << prefix << message << suffix << "\n";
}

// fail_internal_check() already starts its messages with "internal error".
std::string without_internal_error_prefix(std::string message) {
  for (const char* prefix : {"internal error: ", "internal error "}) {
    if (message.starts_with(prefix)) return message.substr(std::string(prefix).size());
  }
  return message;
}

int run_program(std::span<const std::string> argv) {
  if (argv.empty()) {
    std::cerr << program_help();
    throw UsageError("a subcommand is needed; see 'fuseopt --help'");
  }
  const std::string& first = argv[0];
  if (first == "--help" || first == "-h") {
    std::cout << program_help();
    return kOk;
  }
  if (first == "--version") {
    std::cout << "fuseopt " << FUSEOPT_VERSION << "\n";
    return kOk;
  }
  if (first == "help") {  // `fuseopt help [SUBCOMMAND]`
    if (argv.size() == 1) {
      std::cout << program_help();
      return kOk;
    }
    if (const Subcommand* sub = find_subcommand(argv[1])) {
      std::cout << help_text(sub->spec());
      return kOk;
    }
    throw UsageError("unknown subcommand '" + argv[1] + "'; see 'fuseopt --help'");
  }

  const Subcommand* sub = find_subcommand(first);
  if (!sub) {
    const bool is_flag = first.starts_with("-");
    std::string message = std::string("unknown ") + (is_flag ? "flag" : "subcommand") + " '" +
                          first + "'";
    std::vector<std::string> names{"help"};
    if (is_flag) names = {"--help", "--version"};
    for (const Subcommand& s : kSubcommands) {
      if (!is_flag) names.push_back(s.name);
    }
    if (auto suggestion = support::closest_match(first, names)) {
      message += " (did you mean '" + *suggestion + "'?)";
    }
    throw UsageError(message + "; see 'fuseopt --help'");
  }

  const CommandSpec spec = sub->spec();
  const Args args = parse_args(spec, argv.subspan(1));
  if (args.wants_help()) {
    std::cout << help_text(spec);
    return kOk;
  }
  return sub->run(args);
}

}  // namespace
}  // namespace fuseopt::tools

int main(int argc, char** argv) {
  using namespace fuseopt::tools;
  const std::vector<std::string> args(argv + 1, argv + argc);
  int code = kInternalError;
  try {
    code = run_program(args);
  } catch (const UsageError& e) {
    print_error("fuseopt: error: ", e.what());
    code = kUsageError;
  } catch (const fuseopt::UserError& e) {
    print_error("fuseopt: error: ", e.what());
    code = kUserError;
  } catch (const fuseopt::EnvironmentError& e) {
    print_error("fuseopt: error: ", e.what());
    code = kEnvironmentError;
  } catch (const std::bad_alloc&) {
    print_error("fuseopt: error: ", "out of memory");
    code = kEnvironmentError;
  } catch (const fuseopt::InternalError& e) {
    print_error("fuseopt: internal error: ", without_internal_error_prefix(e.what()),
                " (this is a bug in fuseopt)");
    code = kInternalError;
  } catch (const std::exception& e) {
    print_error("fuseopt: internal error: ", e.what(), " (this is a bug in fuseopt)");
    code = kInternalError;
  } catch (...) {
    print_error("fuseopt: internal error: ", "an unknown exception",
                " (this is a bug in fuseopt)");
    code = kInternalError;
  }
  std::cout.flush();
  if (!std::cout) {
    // A full disk or closed pipe on stdout loses output: never report success then.
    std::cerr << "fuseopt: error: cannot write to standard output\n";
    if (code == kOk) code = kEnvironmentError;
  }
  return code;
}
