// Device and toolchain fingerprints. Keys are written in alphabetical order so the JSON,
// and with it the digest, is canonical.
#include "autotune/fingerprint.h"

#include <sched.h>
#include <sys/utsname.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "autotune/codegen_digest.h"
#include "runtime/kernel_abi.h"
#include "support/json.h"

#ifndef FUSEOPT_VERSION
#error "FUSEOPT_VERSION must be defined by the build (autotune/CMakeLists.txt)"
#endif

namespace fuseopt::autotune {
namespace {

// The flags that change which code Halide or a compiler may emit; the rest (virtualisation,
// security mitigations) would only split device classes for nothing.
const std::set<std::string>& code_relevant_flags() {
  static const std::set<std::string> flags = {
      "abm",        "avx",         "avx2",        "avx512_bf16", "avx512_fp16", "avx512_vnni",
      "avx512bw",   "avx512cd",    "avx512dq",    "avx512f",     "avx512ifma",  "avx512vbmi",
      "avx512vl",   "bmi1",        "bmi2",        "cx16",        "f16c",        "fma",
      "lahf_lm",    "movbe",       "popcnt",      "sse4_1",      "sse4_2",      "ssse3",
      "xsave",      "avx_vnni",    "amx_tile",    "amx_bf16",    "amx_int8",
  };
  return flags;
}

std::string trim(const std::string& text) {
  const size_t begin = text.find_first_not_of(" \t");
  if (begin == std::string::npos) return "";
  const size_t end = text.find_last_not_of(" \t\r\n");
  return text.substr(begin, end - begin + 1);
}

std::string read_small_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return "";
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// "32K", "1024K", "32M" as sysfs writes cache sizes.
int64_t parse_size(const std::string& text) {
  const std::string t = trim(text);
  if (t.empty()) return 0;
  int64_t value = 0;
  size_t i = 0;
  for (; i < t.size() && t[i] >= '0' && t[i] <= '9'; ++i) value = value * 10 + (t[i] - '0');
  if (i < t.size()) {
    if (t[i] == 'K') value <<= 10;
    if (t[i] == 'M') value <<= 20;
    if (t[i] == 'G') value <<= 30;
  }
  return value;
}

int parse_int(const std::string& text) {
  try {
    return std::stoi(text);
  } catch (const std::exception&) {
    return 0;
  }
}

void read_caches(CpuDescription& cpu) {
  const std::string base = "/sys/devices/system/cpu/cpu0/cache/index";
  for (int index = 0; index < 8; ++index) {
    const std::string dir = base + std::to_string(index) + "/";
    const std::string level = trim(read_small_file(dir + "level"));
    if (level.empty()) break;
    const std::string type = trim(read_small_file(dir + "type"));
    const int64_t size = parse_size(read_small_file(dir + "size"));
    if (level == "1" && type == "Data") cpu.l1d_bytes = size;
    if (level == "2") cpu.l2_bytes = size;
    if (level == "3") cpu.l3_bytes = size;
  }
}

void read_cores(CpuDescription& cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) {
    cpu.logical_cores = cpu.physical_cores =
        static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    return;
  }
  std::set<std::pair<std::string, std::string>> physical;
  int logical = 0;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (!CPU_ISSET(c, &set)) continue;
    ++logical;
    const std::string topology = "/sys/devices/system/cpu/cpu" + std::to_string(c) + "/topology/";
    std::string core = trim(read_small_file(topology + "core_id"));
    if (core.empty()) core = "cpu" + std::to_string(c);  // no topology: count logical cores
    physical.emplace(trim(read_small_file(topology + "physical_package_id")), core);
  }
  cpu.logical_cores = std::max(1, logical);
  cpu.physical_cores = std::max(1, static_cast<int>(physical.size()));
}

void read_numa(CpuDescription& cpu) {
  int nodes = 0;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/sys/devices/system/node", error)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with("node") && name.size() > 4 && std::isdigit(static_cast<unsigned char>(name[4]))) {
      ++nodes;
    }
  }
  cpu.numa_nodes = std::max(1, nodes);
}

CpuDescription describe_host() {
  CpuDescription cpu;
  parse_cpuinfo(read_small_file("/proc/cpuinfo"), cpu);
  read_caches(cpu);
  read_cores(cpu);
  read_numa(cpu);
  struct utsname name;
  if (uname(&name) == 0) cpu.os_release = name.release;
  return cpu;
}

void write_string_array(support::JsonWriter& w, const std::vector<std::string>& values) {
  w.begin_array();
  for (const std::string& value : values) w.value(value);
  w.end_array();
}

// The CPU's class fields, alphabetically; shared by the class and the exact JSON.
void write_cpu_class_fields(support::JsonWriter& w, const CpuDescription& cpu) {
  w.key("family").value(cpu.family);
  w.key("features");
  write_string_array(w, cpu.features);
  w.key("isa_level").value(cpu.isa_level);
  w.key("kind").value("cpu");
  w.key("l2_bytes").value(cpu.l2_bytes);
  w.key("l3_bytes").value(cpu.l3_bytes);
  w.key("logical_cores").value(cpu.logical_cores);
  w.key("model").value(cpu.model);
  w.key("numa_nodes").value(cpu.numa_nodes);
  w.key("physical_cores").value(cpu.physical_cores);
  w.key("stepping").value(cpu.stepping);
  w.key("vendor").value(cpu.vendor);
}

void write_gpu_class_fields(support::JsonWriter& w, const GpuDescription& gpu) {
  w.key("kind").value("cuda");
  w.key("l2_bytes").value(gpu.l2_bytes);
  w.key("memory_bus_bits").value(gpu.memory_bus_bits);
  w.key("memory_clock_khz").value(gpu.memory_clock_khz);
  w.key("mig_profile").value(gpu.mig_profile);
  w.key("sm").value(std::to_string(gpu.sm_major) + "." + std::to_string(gpu.sm_minor));
  w.key("sm_count").value(gpu.sm_count);
  w.key("vendor").value("nvidia");
}

}  // namespace

void parse_cpuinfo(const std::string& text, CpuDescription& cpu) {
  std::istringstream in(text);
  std::string line;
  std::vector<std::string> flags;
  bool seen_processor = false;
  while (std::getline(in, line)) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) {
      if (seen_processor && trim(line).empty()) break;  // the first processor's entry ends
      continue;
    }
    const std::string key = trim(line.substr(0, colon));
    const std::string value = trim(line.substr(colon + 1));
    if (key == "processor") seen_processor = true;
    if (key == "vendor_id") cpu.vendor = value;
    if (key == "model name") cpu.model_name = value;
    if (key == "cpu family") cpu.family = parse_int(value);
    if (key == "model") cpu.model = parse_int(value);
    if (key == "stepping") cpu.stepping = parse_int(value);
    if (key == "microcode") cpu.microcode = value;
    if (key == "flags") {
      std::istringstream words(value);
      std::string flag;
      while (words >> flag) flags.push_back(flag);
    }
  }
  std::sort(flags.begin(), flags.end());
  flags.erase(std::unique(flags.begin(), flags.end()), flags.end());
  cpu.isa_level = isa_level_of(flags);
  cpu.features.clear();
  for (const std::string& flag : flags) {
    if (code_relevant_flags().count(flag) != 0) cpu.features.push_back(flag);
  }
}

std::string isa_level_of(const std::vector<std::string>& flags) {
  auto has_all = [&](std::initializer_list<const char*> names) {
    for (const char* name : names) {
      if (std::find(flags.begin(), flags.end(), name) == flags.end()) return false;
    }
    return true;
  };
  // The levels of the x86-64 psABI, as /proc/cpuinfo spells the flags (lzcnt is "abm").
  if (!has_all({"cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"})) return "x86-64-v1";
  if (!has_all({"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"})) {
    return "x86-64-v2";
  }
  if (!has_all({"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"})) return "x86-64-v3";
  return "x86-64-v4";
}

const CpuDescription& host_cpu() {
  static const CpuDescription cpu = describe_host();
  return cpu;
}

DeviceFingerprint fingerprint_cpu(const CpuDescription& cpu) {
  DeviceFingerprint fp;
  fp.kind = "cpu";
  fp.name = cpu.model_name.empty() ? cpu.vendor : cpu.model_name;
  support::JsonWriter class_json;
  class_json.begin_object();
  write_cpu_class_fields(class_json, cpu);
  class_json.end_object();
  fp.class_json = class_json.str();

  support::JsonWriter exact_json;
  exact_json.begin_object();
  exact_json.key("class").value(fp.class_json);
  exact_json.key("l1d_bytes").value(cpu.l1d_bytes);
  exact_json.key("microcode").value(cpu.microcode);
  exact_json.key("model_name").value(cpu.model_name);
  exact_json.key("os_release").value(cpu.os_release);
  exact_json.end_object();
  fp.exact_json = exact_json.str();
  fp.klass = support::sha256(fp.class_json);
  fp.exact = support::sha256(fp.exact_json);
  return fp;
}

DeviceFingerprint fingerprint_gpu(const GpuDescription& gpu) {
  DeviceFingerprint fp;
  fp.kind = "cuda";
  fp.name = gpu.name;
  support::JsonWriter class_json;
  class_json.begin_object();
  write_gpu_class_fields(class_json, gpu);
  class_json.end_object();
  fp.class_json = class_json.str();

  support::JsonWriter exact_json;
  exact_json.begin_object();
  exact_json.key("class").value(fp.class_json);
  exact_json.key("driver_version").value(gpu.driver_version);
  exact_json.key("memory_bytes").value(gpu.memory_bytes);
  exact_json.key("name").value(gpu.name);
  exact_json.end_object();
  fp.exact_json = exact_json.str();
  fp.klass = support::sha256(fp.class_json);
  fp.exact = support::sha256(fp.exact_json);
  return fp;
}

ToolchainFingerprint cpu_toolchain(const std::string& halide_version) {
  support::JsonWriter w;
  w.begin_object();
  w.key("backend").value("cpu");
  w.key("codegen_digest").value(codegen_digest());
  w.key("fuseopt").value(fuseopt_version());
  w.key("halide").value(halide_version);
  w.key("kernel_abi").value(runtime::kKernelAbiVersion);
  w.key("options");
  write_string_array(w, {"strict_float"});
  w.end_object();
  ToolchainFingerprint fp;
  fp.json = w.str();
  fp.digest = support::sha256(fp.json);
  return fp;
}

ToolchainFingerprint cuda_toolchain(const std::string& nvrtc_version,
                                    const std::vector<std::string>& options) {
  support::JsonWriter w;
  w.begin_object();
  w.key("backend").value("cuda");
  w.key("codegen_digest").value(codegen_digest());
  w.key("fuseopt").value(fuseopt_version());
  w.key("kernel_abi").value(runtime::kKernelAbiVersion);
  w.key("nvrtc").value(nvrtc_version.empty() ? "probe_failed" : nvrtc_version);
  w.key("options");
  write_string_array(w, options);  // order matters to NVRTC: kept as given
  w.end_object();
  ToolchainFingerprint fp;
  fp.json = w.str();
  fp.digest = support::sha256(fp.json);
  return fp;
}

const char* fuseopt_version() { return FUSEOPT_VERSION; }

const char* codegen_digest() { return FUSEOPT_CODEGEN_DIGEST; }

}  // namespace fuseopt::autotune
