// The NVRTC functions are declared here rather than taken from the toolkit's nvrtc.h, so the
// library builds on machines without CUDA; the signatures are NVRTC's stable C API.
#include "codegen/cuda/nvrtc_compiler.h"

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <regex>
#include <sstream>

#include "support/error.h"

namespace fuseopt::codegen {

namespace {
using NvrtcResult = int;  // nvrtcResult: NVRTC_SUCCESS is 0
using NvrtcProgram = struct NvrtcProgramOpaque*;
}  // namespace

struct NvrtcCompiler::Api {
  void* handle = nullptr;
  const char* (*GetErrorString)(NvrtcResult) = nullptr;
  NvrtcResult (*Version)(int*, int*) = nullptr;
  NvrtcResult (*GetNumSupportedArchs)(int*) = nullptr;
  NvrtcResult (*GetSupportedArchs)(int*) = nullptr;
  NvrtcResult (*CreateProgram)(NvrtcProgram*, const char*, const char*, int, const char* const*,
                               const char* const*) = nullptr;
  NvrtcResult (*DestroyProgram)(NvrtcProgram*) = nullptr;
  NvrtcResult (*CompileProgram)(NvrtcProgram, int, const char* const*) = nullptr;
  NvrtcResult (*GetPTXSize)(NvrtcProgram, size_t*) = nullptr;
  NvrtcResult (*GetPTX)(NvrtcProgram, char*) = nullptr;
  NvrtcResult (*GetCUBINSize)(NvrtcProgram, size_t*) = nullptr;
  NvrtcResult (*GetCUBIN)(NvrtcProgram, char*) = nullptr;
  NvrtcResult (*GetProgramLogSize)(NvrtcProgram, size_t*) = nullptr;
  NvrtcResult (*GetProgramLog)(NvrtcProgram, char*) = nullptr;

  std::string error_name(NvrtcResult result) const {
    const char* text = GetErrorString != nullptr ? GetErrorString(result) : nullptr;
    return text != nullptr ? text : "NVRTC error " + std::to_string(result);
  }
};

namespace {

template <typename F>
void resolve(void* handle, const char* name, F& function, const std::string& library) {
  function = reinterpret_cast<F>(dlsym(handle, name));
  if (function == nullptr) {
    throw EnvironmentError("NVRTC at " + library + " lacks " + name +
                           " (too old? fuseopt needs NVRTC 12 or later)");
  }
}

std::vector<std::string> candidate_libraries() {
  std::vector<std::string> names = {"libnvrtc.so.13", "libnvrtc.so"};
  std::vector<std::string> dirs;
  if (const char* home = std::getenv("CUDA_HOME"); home != nullptr && *home != '\0') {
    dirs.push_back(std::string(home) + "/lib64");
  }
  dirs.push_back("/usr/local/cuda/lib64");
  std::vector<std::string> out = names;
  for (const std::string& dir : dirs) {
    for (const std::string& name : names) out.push_back(dir + "/" + name);
  }
  return out;
}

// The process's compiler, or the error that opening it gave.
struct Shared {
  std::once_flag once;
  std::unique_ptr<NvrtcCompiler> compiler;
  std::string error;
};

Shared& shared() {
  static Shared* s = new Shared;  // never destroyed: NVRTC may be used during exit
  return *s;
}

int parse_int(const std::string& text) { return text.empty() ? 0 : std::stoi(text); }

}  // namespace

NvrtcCompiler::NvrtcCompiler(const std::string& library) : api_(std::make_unique<Api>()) {
  std::vector<std::string> candidates =
      library.empty() ? candidate_libraries() : std::vector<std::string>{library};
  std::string errors;
  for (const std::string& candidate : candidates) {
    api_->handle = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (api_->handle != nullptr) {
      library_ = candidate;
      break;
    }
    const char* why = dlerror();
    errors += (errors.empty() ? "" : "; ") + (why != nullptr ? std::string(why) : candidate);
  }
  if (api_->handle == nullptr) {
    // One line: `fuseopt ... --backend cuda` prints it as its reason.
    throw EnvironmentError("no NVRTC (the CUDA runtime compiler, libnvrtc.so.13, not found); "
                           "install the CUDA toolkit or set CUDA_HOME (tried: " + errors + ")");
  }
  Api& a = *api_;
  resolve(a.handle, "nvrtcGetErrorString", a.GetErrorString, library_);
  resolve(a.handle, "nvrtcVersion", a.Version, library_);
  resolve(a.handle, "nvrtcGetNumSupportedArchs", a.GetNumSupportedArchs, library_);
  resolve(a.handle, "nvrtcGetSupportedArchs", a.GetSupportedArchs, library_);
  resolve(a.handle, "nvrtcCreateProgram", a.CreateProgram, library_);
  resolve(a.handle, "nvrtcDestroyProgram", a.DestroyProgram, library_);
  resolve(a.handle, "nvrtcCompileProgram", a.CompileProgram, library_);
  resolve(a.handle, "nvrtcGetPTXSize", a.GetPTXSize, library_);
  resolve(a.handle, "nvrtcGetPTX", a.GetPTX, library_);
  resolve(a.handle, "nvrtcGetCUBINSize", a.GetCUBINSize, library_);
  resolve(a.handle, "nvrtcGetCUBIN", a.GetCUBIN, library_);
  resolve(a.handle, "nvrtcGetProgramLogSize", a.GetProgramLogSize, library_);
  resolve(a.handle, "nvrtcGetProgramLog", a.GetProgramLog, library_);
  if (a.Version(&major_, &minor_) != 0) {
    throw EnvironmentError("NVRTC at " + library_ + " does not report its version");
  }
  int count = 0;
  if (a.GetNumSupportedArchs(&count) != 0 || count <= 0) {
    throw EnvironmentError("NVRTC at " + library_ + " does not list its architectures");
  }
  archs_.resize(static_cast<size_t>(count));
  if (a.GetSupportedArchs(archs_.data()) != 0) {
    throw EnvironmentError("NVRTC at " + library_ + " does not list its architectures");
  }
  std::sort(archs_.begin(), archs_.end());
}

// NVRTC stays loaded: unloading it while another thread compiles would crash, and a
// process opens it at most a few times.
NvrtcCompiler::~NvrtcCompiler() = default;

const NvrtcCompiler& NvrtcCompiler::get() {
  Shared& s = shared();
  std::call_once(s.once, [&s] {
    try {
      s.compiler = std::make_unique<NvrtcCompiler>();
    } catch (const EnvironmentError& error) {
      s.error = error.what();
    }
  });
  if (s.compiler == nullptr) throw EnvironmentError(s.error);
  return *s.compiler;
}

std::string NvrtcCompiler::version() const {
  return std::to_string(major_) + "." + std::to_string(minor_);
}

const std::vector<int>& NvrtcCompiler::supported_archs() const { return archs_; }

const std::string& NvrtcCompiler::library() const { return library_; }

NvrtcOutput NvrtcCompiler::compile(const std::string& source, const std::string& file_name,
                                   const std::string& arch,
                                   const std::vector<std::string>& options) const {
  static const std::regex arch_pattern("(sm|compute)_([0-9]+)([af]?)");
  std::smatch match;
  const bool cubin = std::regex_match(arch, match, arch_pattern) && match[1] == "sm";
  if (match.empty() ||
      !std::binary_search(archs_.begin(), archs_.end(), parse_int(match[2].str()))) {
    std::string list;
    for (int a : archs_) list += (list.empty() ? "sm_" : ", sm_") + std::to_string(a);
    throw UserError("NVRTC " + version() + " cannot compile for '" + arch +
                    "'; it supports " + list + " (or compute_XX for PTX only)");
  }
  const Api& a = *api_;
  const auto start = std::chrono::steady_clock::now();
  NvrtcProgram program = nullptr;
  NvrtcResult result =
      a.CreateProgram(&program, source.c_str(), file_name.c_str(), 0, nullptr, nullptr);
  if (result != 0) {
    throw InternalError("nvrtcCreateProgram failed for " + file_name + ": " +
                        a.error_name(result));
  }
  // Destroys the program on every way out.
  struct Destroy {
    const Api& api;
    NvrtcProgram& program;
    ~Destroy() { api.DestroyProgram(&program); }
  } destroy{a, program};

  std::vector<std::string> all = {"-arch=" + arch, "-std=c++17"};
  all.insert(all.end(), options.begin(), options.end());
  std::vector<const char*> argv;
  for (const std::string& option : all) argv.push_back(option.c_str());
  result = a.CompileProgram(program, static_cast<int>(argv.size()), argv.data());

  NvrtcOutput out;
  size_t size = 0;
  if (a.GetProgramLogSize(program, &size) == 0 && size > 1) {
    out.log.resize(size);
    if (a.GetProgramLog(program, out.log.data()) != 0) out.log.clear();
    while (!out.log.empty() && out.log.back() == '\0') out.log.pop_back();
  }
  if (result != 0) {
    std::string flags;
    for (const std::string& option : all) flags += " " + option;
    std::string message = "NVRTC " + version() + " could not compile " + file_name + " for " +
                          arch + " (" + a.error_name(result) + "), options:" + flags + "\n" +
                          out.log;
    if (!message.empty() && message.back() != '\n') message += "\n";
    const std::string line = first_error_line(out.log, source);
    if (!line.empty()) message += "generated line " + line + "\n";
    throw InternalError(message);
  }
  if (a.GetPTXSize(program, &size) == 0 && size > 0) {
    out.ptx.resize(size);
    if (a.GetPTX(program, out.ptx.data()) != 0) {
      throw InternalError("nvrtcGetPTX failed for " + file_name);
    }
    while (!out.ptx.empty() && out.ptx.back() == '\0') out.ptx.pop_back();
  }
  if (cubin) {
    if (a.GetCUBINSize(program, &size) != 0 || size == 0) {
      throw InternalError("NVRTC produced no cubin for " + file_name + " (" + arch + ")");
    }
    out.cubin.resize(size);
    if (a.GetCUBIN(program, out.cubin.data()) != 0) {
      throw InternalError("nvrtcGetCUBIN failed for " + file_name);
    }
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  out.functions = parse_ptxas_report(out.log);
  return out;
}

std::vector<PtxasFunctionInfo> parse_ptxas_report(const std::string& log) {
  static const std::regex entry("Compiling entry function '([^']+)'");
  static const std::regex properties("Function properties for ([^\\s]+)");
  static const std::regex spills(
      "([0-9]+) bytes stack frame, ([0-9]+) bytes spill stores, ([0-9]+) bytes spill loads");
  static const std::regex registers("Used ([0-9]+) registers");
  std::vector<PtxasFunctionInfo> out;
  auto find = [&out](const std::string& name) -> PtxasFunctionInfo& {
    for (PtxasFunctionInfo& f : out) {
      if (f.name == name) return f;
    }
    out.push_back(PtxasFunctionInfo{name});
    return out.back();
  };
  std::string current_entry;
  std::string current;
  std::istringstream lines(log);
  std::string line;
  std::smatch m;
  while (std::getline(lines, line)) {
    if (std::regex_search(line, m, entry)) {
      current_entry = current = m[1].str();
      find(current).is_entry = true;
    } else if (std::regex_search(line, m, properties)) {
      current = m[1].str();
      find(current);
    } else if (std::regex_search(line, m, spills) && !current.empty()) {
      PtxasFunctionInfo& f = find(current);
      f.stack_bytes = std::stoi(m[1].str());
      f.spill_store_bytes = std::stoi(m[2].str());
      f.spill_load_bytes = std::stoi(m[3].str());
    } else if (std::regex_search(line, m, registers) && !current_entry.empty()) {
      find(current_entry).registers = std::stoi(m[1].str());
    }
  }
  return out;
}

std::string first_error_line(const std::string& log, const std::string& source) {
  static const std::regex error_pattern("^(.*)\\(([0-9]+)\\): (catastrophic )?error");
  std::istringstream lines(log);
  std::string line;
  std::smatch m;
  while (std::getline(lines, line)) {
    if (!std::regex_search(line, m, error_pattern)) continue;
    const int number = std::stoi(m[2].str());
    std::istringstream text(source);
    std::string source_line;
    int i = 0;
    while (i < number && std::getline(text, source_line)) ++i;
    if (i < number) source_line = "(beyond the end of the source)";
    return m[1].str() + ":" + std::to_string(number) + ": " + source_line;
  }
  return "";
}

}  // namespace fuseopt::codegen
