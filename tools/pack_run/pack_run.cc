// `fuseopt-pack-run PACK RULE [--size N] [--steps K] [--set NAME=VALUE]... [--option
// NAME=VALUE]... [--device auto|cpu|cuda] [--trusted-key PUBFILE]... [--threads T] [--json]`:
// loads the best binary of RULE for this machine from a kernel pack (on a GPU the cubin of its
// exact SM, else the PTX; on the CPU the best x86-64 level it supports), runs K steps on
// generated data and prints the parameters' checksum and the time per step. With trusted keys
// (--trusted-key, $FUSEOPT_PACK_TRUSTED_KEYS) only packs signed by one of them are run.
// Exit codes (as fuseopt's): 0 done, 1 a bad or untrusted pack or input, 2 usage, 3 an
// internal error, 4 this machine cannot run the pack's binaries.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <string>
#include <vector>

#include "pack/pack_loader.h"
#include "pack/pack_trust.h"
#include "runtime/optimizer.h"
#include "support/error.h"
#include "support/sha256.h"

namespace {

constexpr const char* kUsage =
    "usage: fuseopt-pack-run PACK RULE [--size N] [--steps K] [--set NAME=VALUE]...\n"
    "                        [--option NAME=VALUE]... [--device auto|cpu|cuda]\n"
    "                        [--trusted-key PUBFILE]... [--threads T] [--json]\n";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

int64_t parse_int(const std::string& flag, const std::string& text, int64_t min) {
  try {
    size_t used = 0;
    const long long value = std::stoll(text, &used);
    if (used == text.size() && value >= min) return value;
  } catch (const std::exception&) {
  }
  throw UsageError(flag + " needs an integer of at least " + std::to_string(min) + ", not '" +
                   text + "'");
}

std::pair<std::string, std::string> split_assignment(const std::string& flag,
                                                     const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) throw UsageError(flag + " needs NAME=VALUE, not '" + text + "'");
  return {text.substr(0, eq), text.substr(eq + 1)};
}

// Deterministic data: a small linear congruential generator, values in [-1, 1).
void fill(std::vector<float>& values, uint64_t seed) {
  uint64_t state = seed * 6364136223846793005ULL + 1442695040888963407ULL;
  for (float& v : values) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    v = static_cast<float>(static_cast<double>(state >> 40) / static_cast<double>(1ULL << 24) * 2.0 - 1.0);
  }
}

int run(int argc, char** argv) {
  std::vector<std::string> positionals;
  int64_t size = 1 << 20, steps = 10, threads = 0;
  bool json = false;
  std::map<std::string, double> hypers;
  std::map<std::string, std::string> options;
  std::string device = "auto";
  std::vector<std::string> key_files;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--size") {
      size = parse_int(arg, next(), 1);
    } else if (arg == "--steps") {
      steps = parse_int(arg, next(), 1);
    } else if (arg == "--threads") {
      threads = parse_int(arg, next(), 0);
    } else if (arg == "--device") {
      device = next();
      if (device != "auto" && device != "cpu" && device != "cuda") {
        throw UsageError("--device needs auto, cpu or cuda, not '" + device + "'");
      }
    } else if (arg == "--trusted-key") {
      key_files.push_back(next());
    } else if (arg == "--json") {
      json = true;
    } else if (arg == "--set") {
      const auto [name, value] = split_assignment(arg, next());
      char* end = nullptr;
      const double number = std::strtod(value.c_str(), &end);
      if (value.empty() || *end != '\0') throw UsageError("--set " + name + " needs a number, not '" + value + "'");
      hypers[name] = number;
    } else if (arg == "--option") {
      const auto [name, value] = split_assignment(arg, next());
      options[name] = value;
    } else if (arg.starts_with("-")) {
      throw UsageError("unknown flag '" + arg + "'");
    } else {
      positionals.push_back(arg);
    }
  }
  if (positionals.size() != 2) throw UsageError("needs a PACK and a RULE");

  // Keys are read before the pack is opened: a bad key file is the first error.
  std::vector<fuseopt::pack::TrustedKey> keys;
  for (const std::string& file : key_files) keys.push_back(fuseopt::pack::read_public_key(file));
  for (const auto& key : fuseopt::pack::trusted_keys_from_environment()) keys.push_back(key);

  const auto started = std::chrono::steady_clock::now();
  fuseopt::pack::PackReader pack(positionals[0], fuseopt::runtime::kKernelAbiVersion);
  fuseopt::pack::require_trusted_signature(
      pack, keys, "the trusted keys (--trusted-key, $" +
                      std::string(fuseopt::pack::kTrustedKeysVariable) + ")");
  fuseopt::pack::LoadedKernel loaded = fuseopt::pack::load_kernel_from_pack(
      pack, positionals[1], options, fuseopt::pack::parse_pack_device(device));
  fuseopt::Optimizer optimizer(loaded.kernel, hypers, static_cast<int>(threads));
  const auto loaded_at = std::chrono::steady_clock::now();
  const size_t tensor = optimizer.add_tensor(size);
  {
    std::vector<float> values(static_cast<size_t>(size));
    fill(values, 1);
    optimizer.write_param(tensor, values);
    fill(values, 2);
    optimizer.write_grad(tensor, values);
  }
  const auto data_at = std::chrono::steady_clock::now();
  optimizer.step();
  const auto first_step_at = std::chrono::steady_clock::now();
  for (int64_t s = 1; s < steps; ++s) optimizer.step();
  optimizer.synchronize();
  const auto done = std::chrono::steady_clock::now();

  const std::vector<float> param = optimizer.read_param(tensor);
  const std::string checksum = fuseopt::support::sha256_hex(
      std::string_view(reinterpret_cast<const char*>(param.data()), param.size() * sizeof(float)));
  double sum = 0;
  for (float v : param) sum += v;
  const double load_ms = std::chrono::duration<double, std::milli>(loaded_at - started).count();
  // Load plus first step, leaving out the generation of the data.
  const double first_ms =
      load_ms + std::chrono::duration<double, std::milli>(first_step_at - data_at).count();
  const double step_ms = std::chrono::duration<double, std::milli>(done - data_at).count() /
                         static_cast<double>(steps);
  if (json) {
    std::printf("{\"rule\": \"%s\", \"binary\": \"%s\", \"target\": \"%s\", \"size\": %lld, "
                "\"steps\": %lld, \"checksum\": \"%s\", \"sum\": %.9g, \"load_ms\": %.3f, "
                "\"load_and_first_step_ms\": %.3f, \"step_ms\": %.4f, \"binary_bytes\": %lld, "
                "\"kind\": \"%s\", \"trusted_signature\": %s}\n",
                positionals[1].c_str(), loaded.binary.name.c_str(), loaded.binary.target.c_str(),
                static_cast<long long>(size), static_cast<long long>(steps), checksum.c_str(), sum,
                load_ms, first_ms, step_ms, static_cast<long long>(loaded.binary.size),
                loaded.binary.kind.c_str(), keys.empty() ? "false" : "true");
  } else {
    std::printf("rule:       %s (%s)\n", positionals[1].c_str(), loaded.binary.config.c_str());
    std::printf("binary:     %s for %s (%s %s)\n", loaded.binary.name.c_str(),
                loaded.binary.target.c_str(), loaded.binary.kind.c_str(),
                loaded.binary.backend_target.c_str());
    if (!keys.empty()) std::printf("signature:  valid, by a trusted key\n");
    std::printf("steps:      %lld on %lld elements\n", static_cast<long long>(steps),
                static_cast<long long>(size));
    std::printf("checksum:   %s (sum %.9g)\n", checksum.c_str(), sum);
    std::printf("load:       %.3f ms (with the first step, data generation excluded: %.3f ms)\n",
                load_ms, first_ms);
    std::printf("per step:   %.4f ms\n", step_ms);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "fuseopt-pack-run: error: %s\n%s", e.what(), kUsage);
    return 2;
  } catch (const fuseopt::UserError& e) {
    std::fprintf(stderr, "fuseopt-pack-run: error: %s\n", e.what());
    return 1;
  } catch (const fuseopt::EnvironmentError& e) {
    std::fprintf(stderr, "fuseopt-pack-run: error: %s\n", e.what());
    return 4;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuseopt-pack-run: internal error: %s\n", e.what());
    return 3;
  }
}
