// `fuseopt pack (build RULE... -o FILE [--targets LIST] [--options NAME=VALUE]... |
// inspect FILE | verify FILE)`: kernel packs (docs/packs.md).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "autotune/cache_location.h"
#include "pack/builder/pack_builder.h"
#include "pack/builder/pack_signing.h"
#include "pack/pack_reader.h"
#include "support/error.h"
#include "tools/fuseopt/subcommands.h"

namespace fuseopt::tools {
namespace {

std::string pad(std::string text, size_t width) {
  text += ' ';
  if (text.size() < width) text.resize(width, ' ');
  return text;
}

int run_build(const Args& args) {
  const auto& positionals = args.positionals();
  pack::PackBuildSettings settings;
  settings.rules.assign(positionals.begin() + 1, positionals.end());
  if (settings.rules.empty()) throw UsageError("'pack build' needs a RULE; " + see_help("pack"));
  const auto output = args.value("-o");
  if (!output) throw UsageError("'pack build' needs -o FILE; " + see_help("pack"));
  settings.output = *output;
  settings.targets = pack::parse_targets(args.value_or("--targets", "host"));
  for (const std::string& item : args.values("--options")) {
    size_t start = 0;
    while (start <= item.size()) {
      const size_t comma = std::min(item.find(',', start), item.size());
      const std::string assignment = item.substr(start, comma - start);
      start = comma + 1;
      if (assignment.empty()) continue;
      const size_t eq = assignment.find('=');
      if (eq == std::string::npos || eq == 0) {
        throw UsageError("--options needs NAME=VALUE, not '" + assignment + "'");
      }
      settings.options[assignment.substr(0, eq)] = assignment.substr(eq + 1);
    }
  }
  settings.cache_path = autotune::cache_location().path;
  settings.sign_key = args.value_or("--sign", "");
  const pack::PackBuildReport report = pack::build_pack(
      settings, [](const std::string& line) { std::cout << "  " << line << "\n" << std::flush; });
  std::printf("wrote %s: %d binaries, %d tuning decisions, in %.1f s\n", settings.output.c_str(),
              report.binaries, report.decisions, report.seconds);
  return 0;
}

int run_inspect(const std::string& path) {
  pack::PackReader reader(path);
  std::cout << path << "\n";
  for (const auto& [key, value] : reader.manifest()) {
    std::string shown = value;
    if (key == "created") {
      const std::time_t when = static_cast<std::time_t>(std::stoll(value));
      char text[64];
      std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&when));
      shown = text;
    }
    std::cout << "  " << pad(key + ":", 18) << shown << "\n";
  }
  const auto rules = reader.rules();
  std::cout << "\nrules (" << rules.size() << "):\n";
  for (const auto& rule : rules) {
    std::cout << "  " << pad(rule.name, 16) << rule.source.size() << " bytes  sha256 "
              << rule.sha256.substr(0, 16) << "\n";
  }
  const auto binaries = reader.binaries();
  std::cout << "\nbinaries (" << binaries.size() << "):\n  " << pad("config", 36)
            << pad("target", 11) << pad("kind", 7) << pad("arch", 11) << pad("schedule", 22)
            << pad("bytes", 10) << pad("ir", 14) << "sha256\n";
  for (const auto& b : binaries) {
    // The CPU's Halide target string is long: its x86-64 level is the target column.
    std::cout << "  " << pad(b.config, 36) << pad(b.target, 11) << pad(b.kind, 7)
              << pad(b.is_cuda() ? b.backend_target : "-", 11) << pad(b.schedule, 22)
              << pad(std::to_string(b.size), 10) << pad(b.ir_hash.substr(0, 12), 14)
              << b.sha256.substr(0, 16) << "\n";
  }
  // Bytes per rule and target, summed over option combinations: what each target adds to a
  // pack (docs/performance.md lists these figures).
  std::vector<std::string> targets;
  std::map<std::string, std::map<std::string, int64_t>> bytes;  // rule -> target -> bytes
  for (const auto& b : binaries) {
    if (std::find(targets.begin(), targets.end(), b.target) == targets.end()) {
      targets.push_back(b.target);
    }
    bytes[b.rule][b.target] += b.size;
  }
  if (!binaries.empty()) {
    std::cout << "\nbytes per rule and target:\n  " << pad("rule", 16);
    for (const std::string& t : targets) std::cout << pad(t, 11);
    std::cout << "\n";
    for (const auto& [rule, per_target] : bytes) {
      std::cout << "  " << pad(rule, 16);
      for (const std::string& t : targets) {
        const auto found = per_target.find(t);
        std::cout << pad(found == per_target.end() ? "-" : std::to_string(found->second), 11);
      }
      std::cout << "\n";
    }
  }
  const auto signatures = reader.signatures();
  std::cout << "\nsignatures (" << signatures.size() << "):\n";
  for (const auto& sig : signatures) std::cout << "  ed25519 key " << sig.public_key << "\n";
  const auto decisions = reader.decisions();
  std::cout << "\ntuning decisions (" << decisions.size() << "):\n";
  for (const auto& d : decisions) {
    std::cout << "  " << pad(d.ir_hash.substr(0, 12), 14) << pad(d.problem_key, 15)
              << pad(d.device_class.substr(0, 12), 14) << d.config_json << "\n";
  }
  return 0;
}

int run_verify(const std::string& path, const std::string& public_key) {
  pack::PackReader reader(path);
  std::vector<std::string> problems = reader.verify();
  if (!public_key.empty()) {
    try {
      pack::check_signature(reader, public_key);
    } catch (const UserError& e) {
      problems.push_back(e.what());
    }
  }
  for (const std::string& problem : problems) std::cout << "  " << problem << "\n";
  if (!problems.empty()) {
    throw UserError("kernel pack '" + path + "' failed verification: " +
                    std::to_string(problems.size()) + " problem(s)");
  }
  std::cout << path << ": ok (" << reader.rules().size() << " rules, "
            << reader.binaries().size() << " binaries, " << reader.decisions().size()
            << " decisions, every SHA-256 matches"
            << (public_key.empty() ? "" : ", signed by " + public_key) << ")\n";
  return 0;
}

}  // namespace

CommandSpec pack_spec() {
  return {
      .name = "pack",
      .synopsis = "(build RULE... -o FILE [--targets LIST] [--options NAME=VALUE]... "
                  "[--sign KEYFILE] | inspect FILE | verify FILE [--key PUBFILE] | "
                  "keygen KEYFILE)",
      .description =
          "Builds, lists and checks kernel packs (docs/packs.md): read-only files of\n"
          "binaries compiled ahead of time, which fuseopt-pack-run loads with no compiler.\n"
          "  build    compiles every option combination of each RULE (or the one --options\n"
          "           names) for each target: host, x86-64-v2, x86-64-v3, x86-64-v4 (Halide),\n"
          "           sm_80, sm_90 (cubins) and ptx (compute_80 PTX), both by NVRTC; groups\n"
          "           cpu, cuda, all (default: host), with the cache's tuning decisions\n"
          "  inspect  lists the manifest, rules, binaries and decisions\n"
          "  verify   checks the manifest and every SHA-256 (and with --key, the ed25519\n"
          "           signature); exit code 1 on a mismatch\n"
          "  keygen   writes a new ed25519 key pair: KEYFILE (secret) and KEYFILE.pub\n",
      .positional_name = "ACTION",
      .min_positionals = 1,
      .max_positionals = -1,
      .flags =
          {
              {"-o", FlagKind::kValue, "FILE", "the pack to write (build)"},
              {"--targets", FlagKind::kValue, "LIST", "the targets to build for (build)"},
              {"--options", FlagKind::kRepeated, "NAME=VALUE",
               "build only these option values (build)"},
              {"--sign", FlagKind::kValue, "KEYFILE", "sign with this secret key (build)"},
              {"--key", FlagKind::kValue, "PUBFILE", "require a signature by this key (verify)"},
          },
  };
}

int run_pack(const Args& args) {
  const auto& positionals = args.positionals();
  const std::string& action = positionals[0];
  if (action == "build") return run_build(args);
  if (action == "inspect" || action == "verify" || action == "keygen") {
    if (positionals.size() != 2) {
      throw UsageError("'pack " + action + "' needs one FILE; " + see_help("pack"));
    }
    if (action == "keygen") {
      pack::generate_key_pair(positionals[1]);
      std::cout << "wrote " << positionals[1] << " (secret) and " << positionals[1]
                << ".pub (public)\n";
      return 0;
    }
    return action == "inspect" ? run_inspect(positionals[1])
                               : run_verify(positionals[1], args.value_or("--key", ""));
  }
  throw UsageError("unknown pack action '" + action + "' (build, inspect, verify or keygen); " +
                   see_help("pack"));
}

}  // namespace fuseopt::tools
