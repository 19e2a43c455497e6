// `fuseopt cache (path | ls | show KEY | verify | clear)`: where the cache database is, what
// it holds (tuned decisions, binaries, measurements), its integrity, and emptying it.
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "autotune/cache_db.h"
#include "autotune/cache_location.h"
#include "autotune/config.h"
#include "support/edit_distance.h"
#include "support/error.h"
#include "support/sha256.h"
#include "tools/fuseopt/subcommands.h"

namespace fuseopt::tools {
namespace {

std::string hex(const std::string& bytes, size_t digits = 64) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string text;
  for (unsigned char c : bytes) {
    text += kDigits[c >> 4];
    text += kDigits[c & 15];
  }
  return text.substr(0, digits);
}

// Left-aligned in `width` columns, and at least one space after it whatever its length.
std::string pad(std::string text, size_t width) {
  text += ' ';
  if (text.size() < width) text.resize(width, ' ');
  return text;
}

std::string format_ns(const std::optional<double>& ns) {
  if (!ns) return "-";
  char text[32];
  if (*ns < 1e3) {
    std::snprintf(text, sizeof text, "%.0f ns", *ns);
  } else if (*ns < 1e6) {
    std::snprintf(text, sizeof text, "%.1f us", *ns / 1e3);
  } else {
    std::snprintf(text, sizeof text, "%.2f ms", *ns / 1e6);
  }
  return text;
}

std::string config_spelling(const std::string& json) {
  const auto config = autotune::Config::from_json(json);
  if (!config) return json;
  try {
    if (config->knobs().size() == 4) return autotune::cpu_spelling(*config);
    if (config->knobs().size() == 2 && config->find(autotune::kVectorKnob) &&
        config->find(autotune::kUnrollKnob)) {  // a binary's code knobs
      return "v" + std::to_string(config->get(autotune::kVectorKnob)) + "_u" +
             std::to_string(config->get(autotune::kUnrollKnob));
    }
    return config->describe();
  } catch (const std::exception&) {
    return config->describe();
  }
}

bool exists(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0;
}

// The cache of the environment, or nothing when it is off or was never created (looking
// must not create one).
const autotune::CacheLocation& location() {
  static const autotune::CacheLocation where = autotune::cache_location();
  return where;
}

bool has_cache() {
  if (location().path.empty()) {
    std::cout << "no cache: " << location().disabled_because << "\n";
    return false;
  }
  if (!exists(location().path)) {
    std::cout << "no cache yet at " << location().path << "\n";
    return false;
  }
  return true;
}

int run_ls() {
  if (!has_cache()) return 0;
  autotune::CacheDb db(location().path);
  const autotune::CacheSummary s = db.summary();
  std::cout << location().path << ": " << s.kernels << " kernels, " << s.binaries
            << " binaries (" << (s.blob_bytes + 1023) / 1024 << " KiB), " << s.measurements
            << " measurements, " << s.decisions << " decisions, " << s.devices << " devices\n";
  const auto decisions = db.list_decisions();
  if (decisions.empty()) return 0;
  std::cout << "\n"
            << pad("key", 14) << pad("kernel", 34) << pad("bucket", 15) << pad("config", 22)
            << pad("time", 11) << pad("gain", 8) << "device\n";
  for (const autotune::DecisionListing& d : decisions) {
    char gain[32] = "-";
    if (d.decision.margin) std::snprintf(gain, sizeof gain, "%+.1f%%", *d.decision.margin * 100);
    std::cout << pad(hex(d.decision.ir_hash, 12), 14) << pad(d.family, 34)
              << pad(d.decision.problem_key, 15) << pad(config_spelling(d.decision.config_json), 22)
              << pad(format_ns(d.winner_median_ns), 11) << pad(gain, 8) << d.device_name
              << (d.decision.stale ? " (stale)" : "") << "\n";
  }
  return 0;
}

int run_show(const std::string& key) {
  if (!has_cache()) return 0;
  autotune::CacheDb db(location().path);
  const std::vector<autotune::KernelRow> kernels = db.find_kernels(key);
  if (kernels.empty()) {
    throw UserError("no kernel in the cache matches '" + key +
                    "' (give a key prefix of at least 4 hex digits or a kernel name from "
                    "'fuseopt cache ls')");
  }
  for (const autotune::KernelRow& k : kernels) {
    std::cout << "kernel " << k.family << "\n"
              << "  key      " << hex(k.ir_hash) << "\n"
              << "  codegen  " << k.codegen_version << "\n";
    const auto binaries = db.list_binaries(k.ir_hash);
    std::cout << "binaries (" << binaries.size() << ")\n";
    for (const autotune::BinaryRow& b : binaries) {
      std::cout << "  " << pad(config_spelling(b.config_json), 12) << pad(b.format, 6)
                << pad(std::to_string((b.size + 1023) / 1024) + " KiB", 10) << "sha256 "
                << hex(b.sha256, 16) << "  " << b.isa_target << "\n";
    }
    const auto decisions = db.list_decisions_for(k.ir_hash);
    std::cout << "decisions (" << decisions.size() << ")\n";
    for (const autotune::DecisionListing& d : decisions) {
      char gain[32] = "-";
      if (d.decision.margin) std::snprintf(gain, sizeof gain, "%+.1f%%", *d.decision.margin * 100);
      std::cout << "  " << pad(d.decision.problem_key, 15)
                << pad(config_spelling(d.decision.config_json), 22)
                << pad(format_ns(d.winner_median_ns), 11) << pad(gain, 8) << d.device_name
                << " (" << d.decision.source << (d.decision.stale ? ", stale" : "") << ")\n";
    }
    const auto measurements = db.list_measurements(k.ir_hash);
    std::cout << "measurements (" << measurements.size() << ")\n";
    std::string last_key;
    for (const autotune::MeasurementRow& m : measurements) {
      if (m.problem_key != last_key) {
        std::cout << "  " << m.problem_key << "\n";
        last_key = m.problem_key;
      }
      char bandwidth[32] = "";
      if (m.eff_bw_gbs) std::snprintf(bandwidth, sizeof bandwidth, "%.1f GB/s", *m.eff_bw_gbs);
      std::cout << "    " << pad(config_spelling(m.config_json), 22) << pad(m.status, 14)
                << pad(format_ns(m.median_ns), 11) << pad("n=" + std::to_string(m.n_samples), 7)
                << bandwidth << "\n";
    }
    std::cout << "ir\n" << k.ir_text;
    if (!k.ir_text.empty() && k.ir_text.back() != '\n') std::cout << "\n";
  }
  return 0;
}

int run_verify() {
  if (!has_cache()) return 0;
  autotune::CacheDb db(location().path);
  if (db.mode() == autotune::CacheMode::kDisabled) {
    throw EnvironmentError("the cache at " + location().path + " cannot be opened");
  }
  const autotune::VerifyReport report = db.verify();
  std::cout << "integrity_check: " << report.integrity << "\n"
            << "blobs: " << report.blobs_checked << " checked, " << report.blobs_dropped
            << " with a wrong SHA-256" << (report.blobs_dropped > 0 ? " (dropped)" : "") << "\n"
            << "foreign keys: " << report.foreign_key_problems << " problems\n";
  if (!report.ok()) {
    throw UserError("the cache at " + location().path + " failed verification" +
                    (report.integrity != "ok" ? "; it was moved aside and a new one started" : ""));
  }
  std::cout << "ok\n";
  return 0;
}

int run_clear() {
  if (!has_cache()) return 0;
  autotune::CacheDb db(location().path);
  const autotune::CacheSummary before = db.summary();
  if (!db.clear()) {
    throw EnvironmentError("the cache at " + location().path + " cannot be written");
  }
  std::cout << "cleared " << location().path << ": " << before.binaries << " binaries, "
            << before.measurements << " measurements, " << before.decisions << " decisions\n";
  return 0;
}

}  // namespace

CommandSpec cache_spec() {
  return {
      .name = "cache",
      .synopsis = "(path | ls | show KEY | verify | clear)",
      .description =
          "Inspects and manages the cache database of compiled kernels and tuning results:\n"
          "  path     prints where it is ($FUSEOPT_CACHE, else $XDG_CACHE_HOME/fuseopt/, else\n"
          "           ~/.cache/fuseopt/; FUSEOPT_CACHE=off turns caching off)\n"
          "  ls       lists the tuned decisions per kernel, size bucket and device\n"
          "  show KEY shows a kernel (KEY: a key prefix from 'ls' or a kernel name): its\n"
          "           binaries, decisions, every measurement and its IR\n"
          "  verify   runs SQLite's integrity check and checks every binary's SHA-256\n"
          "  clear    deletes everything in it\n",
      .positional_name = "ACTION",
      .min_positionals = 1,
      .max_positionals = 2,
  };
}

int run_cache(const Args& args) {
  const std::string& action = args.positionals()[0];
  const std::vector<std::string> actions = {"path", "ls", "show", "verify", "clear"};
  if (std::find(actions.begin(), actions.end(), action) == actions.end()) {
    std::string message = "unknown cache action '" + action + "'";
    if (auto match = support::closest_match(action, actions)) {
      message += " (did you mean '" + *match + "'?)";
    }
    throw UsageError(message + "; " + see_help("cache"));
  }
  const bool wants_key = action == "show";
  if (wants_key && args.positionals().size() != 2) {
    throw UsageError("'cache show' needs a KEY; " + see_help("cache"));
  }
  if (!wants_key && args.positionals().size() != 1) {
    throw UsageError("'cache " + action + "' takes no argument; " + see_help("cache"));
  }
  if (action == "path") {
    if (location().path.empty()) {
      std::cout << "off (" << location().disabled_because << ")\n";
    } else {
      std::cout << location().path << "\n";
    }
    return 0;
  }
  if (action == "ls") return run_ls();
  if (action == "show") return run_show(args.positionals()[1]);
  if (action == "verify") return run_verify();
  return run_clear();
}

}  // namespace fuseopt::tools
