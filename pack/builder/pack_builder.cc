#include "pack/builder/pack_builder.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <set>

#include "autotune/cache_db.h"
#include "codegen/cuda/cuda_codegen.h"
#include "codegen/cuda/launch_shape.h"
#include "codegen/halide/cpu_codegen.h"
#include "frontend/rule.h"
#include "ir/printer.h"
#include "pack/builder/pack_signing.h"
#include "pack/pack_db.h"
#include "pack/pack_reader.h"
#include "runtime/kernel_abi.h"
#include "support/error.h"
#include "support/sha256.h"

#ifndef FUSEOPT_VERSION
#define FUSEOPT_VERSION "unknown"
#endif

namespace fuseopt::pack {
namespace {

const char* const kCpuTargets[] = {"host", "x86-64-v2", "x86-64-v3", "x86-64-v4"};
const char* const kCudaTargets[] = {"sm_80", "sm_90", "ptx"};

bool is_cuda_target(const std::string& target) {
  for (const char* t : kCudaTargets) {
    if (target == t) return true;
  }
  return false;
}

// The NVRTC arch of a CUDA pack target: the SM itself (a cubin), or PTX for kPackPtxArch.
std::string cuda_arch(const std::string& target) {
  return target == "ptx" ? std::string(kPackPtxArch) : target;
}

codegen::CpuSchedule schedule_for(const std::string& target) {
  codegen::CpuSchedule schedule = codegen::default_cpu_schedule();
  if (target == "x86-64-v2") schedule.vector_width = 4;
  if (target == "x86-64-v3") schedule.vector_width = 8;
  if (target == "x86-64-v4") schedule.vector_width = 16;
  return schedule;
}

std::string option_list(const std::vector<ir::OptionValue>& options) {
  std::string text;
  for (const ir::OptionValue& o : options) {
    text += (text.empty() ? "" : ",") + o.name + "=" + std::to_string(o.value);
  }
  return text;
}

std::string hex(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string text;
  for (unsigned char c : bytes) {
    text += kDigits[c >> 4];
    text += kDigits[c & 15];
  }
  return text;
}

std::string join(const std::vector<std::string>& parts, const char* separator) {
  std::string text;
  for (const std::string& part : parts) text += (text.empty() ? "" : separator) + part;
  return text;
}

// Compiles `kernel` with NVRTC for a CUDA pack target and stores it with its launch data:
// the cubin for "sm_XX", the PTX of kPackPtxArch for "ptx" (the driver JIT-compiles it for
// GPUs with no cubin in the pack). The launch shape is the built-in default.
void insert_cuda_binary(db::Connection& db, const std::string& rule, const ir::Kernel& kernel,
                        const std::string& options, const std::string& ir_hash,
                        const std::string& target,
                        const std::function<void(const std::string&)>& progress) {
  const codegen::CudaLaunchShape shape;
  const std::string arch = cuda_arch(target);
  const codegen::CudaBinary binary = codegen::compile_cuda_kernel(kernel, shape, arch);
  const bool is_ptx = target == "ptx";
  std::string blob = is_ptx ? binary.ptx : binary.cubin;
  while (is_ptx && !blob.empty() && blob.back() == '\0') blob.pop_back();  // NVRTC's NUL
  FUSEOPT_CHECK(!blob.empty(), "NVRTC gave no " + std::string(is_ptx ? "PTX" : "cubin") +
                                   " for " + arch);
  db::Statement insert(db,
                       "INSERT INTO binary (rule, config, options, target, kind, "
                       "backend_target, ir_hash, name, schedule, chunk_elements, "
                       "phase_functions, blob, sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, "
                       "?9, ?10, ?11, ?12, ?13)");
  insert.bind_text(1, rule)
      .bind_text(2, kernel.config_name())
      .bind_text(3, options)
      .bind_text(4, target)
      .bind_text(5, is_ptx ? kKindPtx : kKindCubin)
      .bind_text(6, arch)
      .bind_text(7, ir_hash)
      .bind_text(8, binary.name)
      .bind_text(9, shape.spelling())
      .bind(10, shape.chunk_elements)
      .bind_text(11, join(binary.phase_functions, "\n"))
      .bind_blob(12, blob)
      .bind_text(13, support::sha256_hex(blob));
  insert.run();
  db::Statement launch(db,
                       "INSERT INTO cuda_launch (binary, block_size, grid_limit, table_layout) "
                       "VALUES (last_insert_rowid(), ?1, ?2, ?3)");
  launch.bind(1, shape.block_size).bind(2, shape.grid_limit).bind_text(3, binary.table_layout);
  launch.run();
  if (progress) {
    char line[256];
    std::snprintf(line, sizeof line, "%-40s %-10s %7zu bytes  %.2f s", kernel.config_name().c_str(),
                  target.c_str(), blob.size(), binary.compile_seconds);
    progress(line);
  }
}

}  // namespace

std::vector<std::string> parse_targets(const std::string& list) {
  std::vector<std::string> targets;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = std::min(list.find(',', start), list.size());
    const std::string item = list.substr(start, comma - start);
    start = comma + 1;
    if (item.empty()) continue;
    if (item == "cpu" || item == "all") {
      for (const char* t : kCpuTargets) targets.emplace_back(t);
    }
    if (item == "cuda" || item == "all") {
      for (const char* t : kCudaTargets) targets.emplace_back(t);
    }
    if (item == "cpu" || item == "cuda" || item == "all") continue;
    bool known = is_cuda_target(item);
    for (const char* t : kCpuTargets) known = known || item == t;
    if (!known) {
      throw UserError("unknown pack target '" + item +
                      "' (known: host, x86-64-v2, x86-64-v3, x86-64-v4, sm_80, sm_90, ptx; "
                      "cpu, cuda or all for groups)");
    }
    targets.push_back(item);
  }
  if (targets.empty()) throw UserError("--targets names no target");
  std::vector<std::string> unique;
  for (const std::string& t : targets) {
    if (std::find(unique.begin(), unique.end(), t) == unique.end()) unique.push_back(t);
  }
  return unique;
}

PackBuildReport build_pack(const PackBuildSettings& settings,
                           const std::function<void(const std::string&)>& progress) {
  const auto started = std::chrono::steady_clock::now();
  if (settings.rules.empty()) throw UserError("'pack build' needs at least one RULE");
  if (settings.targets.empty()) throw UserError("'pack build' needs at least one target");
  std::vector<frontend::Rule> rules;
  for (const std::string& name : settings.rules) rules.push_back(frontend::load_rule(name));
  // CUDA targets need NVRTC on the building machine (never on the one that runs the pack):
  // say so before compiling anything.
  std::string nvrtc;
  if (std::any_of(settings.targets.begin(), settings.targets.end(), is_cuda_target)) {
    try {
      nvrtc = codegen::nvrtc_version();
    } catch (const EnvironmentError& e) {
      throw EnvironmentError(std::string("the CUDA pack targets (sm_80, sm_90, ptx) are compiled "
                                         "by NVRTC on the building machine: ") +
                             e.what());
    }
  }

  const std::string temporary = settings.output + ".tmp-" + std::to_string(getpid());
  std::remove(temporary.c_str());
  PackBuildReport report;
  {
    db::Connection db(temporary, false);
    db.execute("PRAGMA journal_mode = OFF");
    db.execute("PRAGMA synchronous = OFF");
    db.execute("BEGIN");
    db.execute(kPackSchema);
    std::set<std::string> hashes;
    std::vector<std::string> rule_names;
    for (const frontend::Rule& rule : rules) {
      if (std::find(rule_names.begin(), rule_names.end(), rule.name()) != rule_names.end()) {
        continue;
      }
      rule_names.push_back(rule.name());
      const std::string source(rule.source().text());
      db::Statement insert_rule(db, "INSERT INTO rule (name, source, sha256) VALUES (?1, ?2, ?3)");
      insert_rule.bind_text(1, rule.name()).bind_text(2, source).bind_text(3, support::sha256_hex(source));
      insert_rule.run();

      std::vector<std::vector<ir::OptionValue>> combinations;
      if (settings.options.empty()) {
        combinations = rule.option_combinations();
      } else {
        std::map<std::string, std::string> mine;
        for (const auto& [name, value] : settings.options) {
          for (const auto& option : rule.options()) {
            if (option.name == name) mine[name] = value;
          }
        }
        combinations.push_back(rule.resolve_options(mine));
      }
      for (const auto& options : combinations) {
        ir::Kernel kernel;
        try {
          kernel = rule.compile(options);
        } catch (const UserError&) {
          continue;  // a combination the rule rejects
        }
        const std::string ir_hash = support::sha256_hex("fuseopt-ir-v1\n" + ir::print_kernel(kernel));
        hashes.insert(ir_hash);
        for (const std::string& target : settings.targets) {
          if (is_cuda_target(target)) {
            insert_cuda_binary(db, rule.name(), kernel, option_list(options), ir_hash, target,
                               progress);
            ++report.binaries;
            continue;
          }
          const codegen::CpuSchedule schedule = schedule_for(target);
          const codegen::HalideCpuBinary binary = codegen::compile_cpu_kernel(kernel, schedule, target);
          db::Statement insert(db,
                               "INSERT INTO binary (rule, config, options, target, kind, "
                               "backend_target, ir_hash, name, schedule, chunk_elements, "
                               "phase_functions, blob, sha256) VALUES (?1, ?2, ?3, ?4, 'cpu', "
                               "?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)");
          insert.bind_text(1, rule.name())
              .bind_text(2, kernel.config_name())
              .bind_text(3, option_list(options))
              .bind_text(4, target)
              .bind_text(5, binary.target)
              .bind_text(6, ir_hash)
              .bind_text(7, binary.name)
              .bind_text(8, schedule.spelling())
              .bind(9, schedule.chunk_elements)
              .bind_text(10, join(binary.phase_functions, "\n"))
              .bind_blob(11, binary.shared_object)
              .bind_text(12, support::sha256_hex(binary.shared_object));
          insert.run();
          ++report.binaries;
          if (progress) {
            char line[256];
            std::snprintf(line, sizeof line, "%-40s %-10s %7zu bytes  %.2f s",
                          kernel.config_name().c_str(), target.c_str(),
                          binary.shared_object.size(), binary.compile_seconds);
            progress(line);
          }
        }
      }
    }

    // The cache's tuning decisions for these kernels, with the device class they hold for.
    struct stat info;
    if (!settings.cache_path.empty() && stat(settings.cache_path.c_str(), &info) == 0) {
      try {
        autotune::CacheDb cache(settings.cache_path);
        for (const autotune::DecisionListing& listing : cache.list_decisions()) {
          const autotune::DecisionRow& d = listing.decision;
          const std::string ir_hash = hex(d.ir_hash);
          if (!hashes.count(ir_hash) || d.stale) continue;
          db::Statement insert(db,
                               "INSERT OR REPLACE INTO decision (ir_hash, problem_key, "
                               "device_class, config_json, source, sha256) VALUES (?1, ?2, ?3, "
                               "?4, ?5, ?6)");
          insert.bind_text(1, ir_hash)
              .bind_text(2, d.problem_key)
              .bind_text(3, hex(d.device_class_fp))
              .bind_text(4, d.config_json)
              .bind_text(5, d.source)
              .bind_text(6, support::sha256_hex(d.config_json));
          insert.run();
          ++report.decisions;
        }
      } catch (const std::exception& e) {
        if (progress) progress(std::string("warning: no tuning decisions copied: ") + e.what());
      }
    }

    const std::map<std::string, std::string> manifest = {
        {"format_version", std::to_string(kPackFormatVersion)},
        {"abi_version", std::to_string(runtime::kKernelAbiVersion)},
        {"fuseopt_version", FUSEOPT_VERSION},
        {"halide_version", codegen::halide_version()},
        {"created", std::to_string(static_cast<long long>(std::time(nullptr)))},
        {"targets", join(settings.targets, ",")},
        {"rules", join(rule_names, ",")},
    };
    if (!nvrtc.empty()) {
      db::Statement insert(db, "INSERT INTO manifest (key, value) VALUES ('nvrtc_version', ?1)");
      insert.bind_text(1, nvrtc);
      insert.run();
    }
    for (const auto& [key, value] : manifest) {
      db::Statement insert(db, "INSERT INTO manifest (key, value) VALUES (?1, ?2)");
      insert.bind_text(1, key).bind_text(2, value);
      insert.run();
    }
    if (!settings.sign_key.empty()) {
      const auto [public_key, signature] = sign_digest(settings.sign_key, content_digest(db));
      db::Statement insert(db, "INSERT INTO signature (public_key, signature) VALUES (?1, ?2)");
      insert.bind_text(1, public_key).bind_text(2, signature);
      insert.run();
    }
    db.execute("COMMIT");
    // The header marks it last: an interrupted build never looks like a pack.
    db.execute(("PRAGMA user_version = " + std::to_string(kPackFormatVersion)).c_str());
    db.execute(("PRAGMA application_id = " + std::to_string(kPackApplicationId)).c_str());
    db.execute("VACUUM");
  }
  chmod(temporary.c_str(), 0444);
  if (std::rename(temporary.c_str(), settings.output.c_str()) != 0) {
    std::remove(temporary.c_str());
    throw EnvironmentError("cannot write the kernel pack '" + settings.output + "'");
  }
  report.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return report;
}

}  // namespace fuseopt::pack
