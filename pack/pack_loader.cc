#include "pack/pack_loader.h"

#include <algorithm>

#include "frontend/rule.h"
#include "ir/printer.h"
#include "runtime/cpu_binary.h"
#include "runtime/cuda/cuda_driver.h"
#include "runtime/cuda/cuda_kernel.h"
#include "support/error.h"
#include "support/sha256.h"

namespace fuseopt::pack {
namespace {

int cpu_preference(const std::string& target) {
  if (target == "host") return 0;
  if (target == "x86-64-v4") return 1;
  if (target == "x86-64-v3") return 2;
  if (target == "x86-64-v2") return 3;
  return 4;
}

std::string targets_of(const std::vector<BinaryEntry>& entries, bool cuda) {
  std::string text;
  for (const BinaryEntry& e : entries) {
    if (e.is_cuda() == cuda) text += (text.empty() ? "" : ", ") + e.target;
  }
  return text;
}

std::vector<BinaryEntry> binaries_of(PackReader& pack, const std::string& rule,
                                     const std::string& config) {
  std::vector<BinaryEntry> found;
  for (BinaryEntry& entry : pack.binaries()) {
    if (entry.rule == rule && entry.config == config) found.push_back(std::move(entry));
  }
  return found;
}

}  // namespace

PackDevice parse_pack_device(const std::string& name) {
  if (name == "auto") return PackDevice::kAuto;
  if (name == "cpu") return PackDevice::kCpu;
  if (name == "cuda") return PackDevice::kCuda;
  throw UserError("unknown device '" + name + "' (choose auto, cpu or cuda)");
}

std::string kernel_ir_hash(const ir::Kernel& kernel) {
  return support::sha256_hex("fuseopt-ir-v1\n" + ir::print_kernel(kernel));
}

PackRuleKernel compile_pack_rule(PackReader& pack, const std::string& rule_name,
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
  PackRuleKernel result;
  result.kernel = rule.compile(rule.resolve_options(options));
  result.config = result.kernel.config_name();
  result.ir_hash = kernel_ir_hash(result.kernel);
  for (const auto& hyper : rule.hypers()) result.hyper_defaults[hyper.name] = hyper.default_value;
  return result;
}

BinaryChoice choose_cuda_binary(const std::vector<BinaryEntry>& candidates, int sm_major,
                                int sm_minor, const std::string& ir_hash) {
  const int sm = sm_major * 10 + sm_minor;
  const std::string exact = "sm_" + std::to_string(sm);
  BinaryChoice choice;
  const BinaryEntry* ptx = nullptr;
  for (const BinaryEntry& entry : candidates) {
    if (!entry.is_cuda()) continue;
    if (entry.ir_hash != ir_hash) {
      choice.reasons += "\n  " + entry.target + ": compiled from other IR";
      continue;
    }
    if (entry.kind == kKindCubin) {
      if (entry.backend_target == exact) {
        choice.binary = &entry;
        return choice;
      }
      choice.reasons += "\n  " + entry.target + ": a cubin for " + entry.backend_target +
                        ", this GPU is " + exact;
      continue;
    }
    // PTX for compute_XY runs on every GPU of compute capability X.Y or later.
    const size_t underscore = entry.backend_target.find('_');
    int arch = 0;
    try {
      arch = underscore == std::string::npos
                 ? 0
                 : std::stoi(entry.backend_target.substr(underscore + 1));
    } catch (const std::exception&) {
      arch = 0;
    }
    if (arch == 0 || arch > sm) {
      choice.reasons += "\n  " + entry.target + ": PTX for " + entry.backend_target +
                        " needs a newer GPU than " + exact;
      continue;
    }
    if (ptx == nullptr) ptx = &entry;
  }
  choice.binary = ptx;
  return choice;
}

BinaryChoice choose_cpu_binary(const std::vector<BinaryEntry>& candidates,
                               const std::string& ir_hash, const std::string& cpu_target) {
  std::vector<const BinaryEntry*> sorted;
  for (const BinaryEntry& entry : candidates) {
    if (entry.kind == kKindCpu && (cpu_target == "host" || entry.target == cpu_target)) {
      sorted.push_back(&entry);
    }
  }
  std::stable_sort(sorted.begin(), sorted.end(), [](const BinaryEntry* a, const BinaryEntry* b) {
    return cpu_preference(a->target) < cpu_preference(b->target);
  });
  BinaryChoice choice;
  for (const BinaryEntry* entry : sorted) {
    if (entry->ir_hash != ir_hash) {
      choice.reasons += "\n  " + entry->target + ": compiled from other IR (hash " +
                        entry->ir_hash.substr(0, 12) + ", this runtime's frontend gives " +
                        ir_hash.substr(0, 12) + ")";
      continue;
    }
    try {
      runtime::check_cpu_target(entry->backend_target);
    } catch (const EnvironmentError& e) {
      choice.reasons += "\n  " + entry->target + ": " + e.what();
      continue;
    }
    choice.binary = entry;
    return choice;
  }
  return choice;
}

std::shared_ptr<const runtime::CompiledKernel> load_cpu_binary(PackReader& pack,
                                                               const ir::Kernel& kernel,
                                                               const BinaryEntry& entry) {
  runtime::CpuBinary binary;
  binary.name = entry.name;
  binary.target = entry.backend_target;
  binary.chunk_elements = entry.chunk_elements;
  binary.phase_functions = entry.phase_functions;
  binary.shared_object = pack.read_blob(entry);
  return runtime::load_cpu_kernel(kernel, binary);
}

std::shared_ptr<const runtime::CompiledKernel> load_cuda_binary(PackReader& pack,
                                                                const ir::Kernel& kernel,
                                                                const BinaryEntry& entry,
                                                                const runtime::CudaDevice& device) {
  if (!entry.has_launch) {
    throw UserError("kernel pack '" + pack.path() + "' is damaged: the CUDA binary '" + entry.name +
                    "' has no launch data (cuda_launch)");
  }
  const std::string blob = pack.read_blob(entry);
  if (const std::string bad = check_blob_format(entry, blob); !bad.empty()) {
    throw UserError("kernel pack '" + pack.path() + "' is damaged: the binary '" + entry.name +
                    "' for " + entry.target + " is " + bad);
  }
  runtime::CudaBinaryView view;
  view.name = entry.name;
  view.arch = entry.backend_target;
  if (entry.kind == kKindCubin) {
    view.cubin = blob;
  } else {
    view.ptx = blob;
  }
  view.phase_functions = entry.phase_functions;
  view.block_size = static_cast<int>(entry.block_size);
  view.grid_limit = static_cast<int>(entry.grid_limit);
  view.chunk_elements = entry.chunk_elements;
  view.table_layout = entry.table_layout;
  return runtime::load_cuda_kernel(kernel, view, device);
}

namespace {

LoadedKernel load_cpu(PackReader& pack, PackRuleKernel source,
                      const std::vector<BinaryEntry>& candidates) {
  if (std::none_of(candidates.begin(), candidates.end(),
                   [](const BinaryEntry& e) { return e.kind == kKindCpu; })) {
    throw UserError(
        "kernel pack '" + pack.path() + "' has no CPU binary of '" + source.config + "'" +
        (candidates.empty() ? " (build the pack with these options)"
                            : " (it has CUDA binaries for: " + targets_of(candidates, true) + ")"));
  }
  const BinaryChoice choice = choose_cpu_binary(candidates, source.ir_hash);
  if (choice.binary == nullptr) {
    throw EnvironmentError("kernel pack '" + pack.path() + "' has no binary of '" + source.config +
                           "' that this machine can run:" + choice.reasons);
  }
  LoadedKernel loaded;
  loaded.kernel = load_cpu_binary(pack, source.kernel, *choice.binary);
  loaded.binary = *choice.binary;
  loaded.hyper_defaults = std::move(source.hyper_defaults);
  return loaded;
}

void require_cuda_binaries(PackReader& pack, const PackRuleKernel& source,
                           const std::vector<BinaryEntry>& candidates) {
  if (std::none_of(candidates.begin(), candidates.end(),
                   [](const BinaryEntry& e) { return e.is_cuda(); })) {
    throw UserError("kernel pack '" + pack.path() + "' has no CUDA binary of '" + source.config +
                    "' (build the pack with --targets sm_80,sm_90,ptx)");
  }
}

LoadedKernel load_cuda(PackReader& pack, PackRuleKernel source, const BinaryChoice& choice,
                       const runtime::CudaDevice& device) {
  const runtime::CudaDeviceInfo& info = device.device();
  if (choice.binary == nullptr) {
    throw EnvironmentError("kernel pack '" + pack.path() + "' has no CUDA binary of '" +
                           source.config + "' that this GPU (" + info.name + ", " + info.arch() +
                           ") can run:" + choice.reasons);
  }
  LoadedKernel loaded;
  loaded.kernel = load_cuda_binary(pack, source.kernel, *choice.binary, device);
  loaded.binary = *choice.binary;
  loaded.hyper_defaults = std::move(source.hyper_defaults);
  return loaded;
}

}  // namespace

LoadedKernel load_cpu_kernel_from_pack(PackReader& pack, const std::string& rule,
                                       const std::map<std::string, std::string>& options) {
  PackRuleKernel source = compile_pack_rule(pack, rule, options);
  const std::vector<BinaryEntry> candidates = binaries_of(pack, rule, source.config);
  return load_cpu(pack, std::move(source), candidates);
}

LoadedKernel load_cuda_kernel_from_pack(PackReader& pack, const std::string& rule,
                                        const std::map<std::string, std::string>& options,
                                        const runtime::CudaDevice& device) {
  PackRuleKernel source = compile_pack_rule(pack, rule, options);
  const std::vector<BinaryEntry> candidates = binaries_of(pack, rule, source.config);
  require_cuda_binaries(pack, source, candidates);
  const BinaryChoice choice = choose_cuda_binary(candidates, device.device().sm_major,
                                                 device.device().sm_minor, source.ir_hash);
  return load_cuda(pack, std::move(source), choice, device);
}

LoadedKernel load_kernel_from_pack(PackReader& pack, const std::string& rule,
                                   const std::map<std::string, std::string>& options,
                                   PackDevice device) {
  PackRuleKernel source = compile_pack_rule(pack, rule, options);
  const std::vector<BinaryEntry> candidates = binaries_of(pack, rule, source.config);
  const bool has_cuda = std::any_of(candidates.begin(), candidates.end(),
                                    [](const BinaryEntry& e) { return e.is_cuda(); });
  const bool has_cpu = std::any_of(candidates.begin(), candidates.end(),
                                   [](const BinaryEntry& e) { return e.kind == kKindCpu; });
  if (device == PackDevice::kCpu || (device == PackDevice::kAuto && !has_cuda)) {
    return load_cpu(pack, std::move(source), candidates);
  }
  require_cuda_binaries(pack, source, candidates);
  // Only now is the driver opened: CPU-only packs never look for a GPU.
  const std::string unavailable = runtime::CudaDriver::unavailable_reason();
  if (!unavailable.empty()) {
    if (device == PackDevice::kAuto && has_cpu)
      return load_cpu(pack, std::move(source), candidates);
    throw EnvironmentError("kernel pack '" + pack.path() + "' has " +
                           (has_cpu ? "CUDA binaries" : "only CUDA binaries") + " of '" +
                           source.config + "' (" + targets_of(candidates, true) +
                           ") and this machine cannot run CUDA: " + unavailable);
  }
  const runtime::CudaDriver& driver = runtime::CudaDriver::get();
  const BinaryChoice choice = choose_cuda_binary(candidates, driver.device().sm_major,
                                                 driver.device().sm_minor, source.ir_hash);
  if (choice.binary == nullptr && device == PackDevice::kAuto && has_cpu) {
    return load_cpu(pack, std::move(source), candidates);  // e.g. a GPU older than sm_80
  }
  return load_cuda(pack, std::move(source), choice, driver);
}

}  // namespace fuseopt::pack
