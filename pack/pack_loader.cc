#include "pack/pack_loader.h"

#include <algorithm>

#include "frontend/rule.h"
#include "ir/printer.h"
#include "runtime/cpu_binary.h"
#include "support/error.h"
#include "support/sha256.h"

namespace fuseopt::pack {
namespace {

int preference(const std::string& target) {
  if (target == "host") return 0;
  if (target == "x86-64-v4") return 1;
  if (target == "x86-64-v3") return 2;
  if (target == "x86-64-v2") return 3;
  return 4;
}

}  // namespace

LoadedKernel load_cpu_kernel_from_pack(PackReader& pack, const std::string& rule_name,
                                       const std::map<std::string, std::string>& options) {
  const std::vector<RuleEntry> rules = pack.rules();
  const auto rule_entry = std::find_if(rules.begin(), rules.end(),
                                       [&](const RuleEntry& r) { return r.name == rule_name; });
  if (rule_entry == rules.end()) {
    std::string names;
    for (const RuleEntry& r : rules) names += (names.empty() ? "" : ", ") + r.name;
    throw UserError("kernel pack '" + pack.path() + "' has no rule '" + rule_name +
                    "' (it has: " + (names.empty() ? "none" : names) + ")");
  }
  if (support::sha256_hex(rule_entry->source) != rule_entry->sha256) {
    throw UserError("kernel pack '" + pack.path() + "' is damaged: the source of rule '" +
                    rule_name + "' does not match its SHA-256");
  }
  const frontend::Rule rule = frontend::rule_from_text(rule_entry->source, rule_name);
  const ir::Kernel kernel = rule.compile(rule.resolve_options(options));
  const std::string config = kernel.config_name();
  const std::string ir_hash =
      support::sha256_hex("fuseopt-ir-v1\n" + ir::print_kernel(kernel));

  std::vector<BinaryEntry> candidates;
  for (BinaryEntry& entry : pack.binaries()) {
    if (entry.rule == rule_name && entry.config == config && entry.kind == "cpu") {
      candidates.push_back(std::move(entry));
    }
  }
  if (candidates.empty()) {
    throw UserError("kernel pack '" + pack.path() + "' has no CPU binary of '" + config +
                    "' (build the pack with these options)");
  }
  std::stable_sort(candidates.begin(), candidates.end(), [](const auto& a, const auto& b) {
    return preference(a.target) < preference(b.target);
  });
  std::string reasons;
  for (const BinaryEntry& entry : candidates) {
    if (entry.ir_hash != ir_hash) {
      reasons += "\n  " + entry.target + ": compiled from other IR (hash " +
                 entry.ir_hash.substr(0, 12) + ", this runtime's frontend gives " +
                 ir_hash.substr(0, 12) + ")";
      continue;
    }
    try {
      runtime::check_cpu_target(entry.backend_target);
    } catch (const EnvironmentError& e) {
      reasons += "\n  " + entry.target + ": " + e.what();
      continue;
    }
    runtime::CpuBinary binary;
    binary.name = entry.name;
    binary.target = entry.backend_target;
    binary.chunk_elements = entry.chunk_elements;
    binary.phase_functions = entry.phase_functions;
    binary.shared_object = pack.read_blob(entry);
    LoadedKernel loaded;
    loaded.kernel = runtime::load_cpu_kernel(kernel, binary);
    loaded.binary = entry;
    for (const auto& hyper : rule.hypers()) loaded.hyper_defaults[hyper.name] = hyper.default_value;
    return loaded;
  }
  throw EnvironmentError("kernel pack '" + pack.path() + "' has no binary of '" + config +
                         "' that this machine can run:" + reasons);
}

}  // namespace fuseopt::pack
