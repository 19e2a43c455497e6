#include "codegen/cuda/cuda_codegen.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <utility>

#include "codegen/cuda/cuda_source.h"
#include "codegen/cuda/nvrtc_compiler.h"
#include "support/error.h"

namespace fuseopt::codegen {
namespace {

// Compilations of this process, keyed by (arch, generated source): the source spells the
// kernel, its options and shape, so equal keys give equal binaries.
struct ProcessCache {
  std::mutex mutex;
  std::map<std::pair<std::string, std::string>, CudaBinary> binaries;
};

ProcessCache& process_cache() {
  static ProcessCache* cache = new ProcessCache;  // never destroyed: used until exit
  return *cache;
}

}  // namespace

CudaBinary compile_cuda_kernel(const ir::Kernel& kernel, const CudaLaunchShape& shape,
                               const std::string& arch, CudaCompileCache cache) {
  CudaSource source = generate_cuda_source(kernel, shape);
  auto key = std::make_pair(arch, source.text);
  if (cache == CudaCompileCache::kProcess) {
    ProcessCache& c = process_cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    auto found = c.binaries.find(key);
    if (found != c.binaries.end()) {
      CudaBinary binary = found->second;
      binary.compile_seconds = 0;
      binary.shape = shape;  // the grid limit is not part of the code
      return binary;
    }
  }
  const NvrtcCompiler& nvrtc = NvrtcCompiler::get();
  const bool cubin = arch.rfind("sm_", 0) == 0;
  std::vector<std::string> base = cuda_exact_math_options();
  if (cubin) base.push_back("--ptxas-options=-v");
  // Without a cap ptxas may stop at 64 registers and spill; a block can have this many.
  const std::string block_cap =
      "--maxrregcount=" + std::to_string(std::min(255, 65536 / shape.block_size));
  std::vector<std::string> options = base;
  options.push_back(block_cap);
  auto spills = [](const NvrtcOutput& out) {
    int bytes = 0;
    for (const PtxasFunctionInfo& info : out.functions) {
      bytes += info.spill_store_bytes + info.spill_load_bytes;
    }
    return bytes;
  };
  NvrtcOutput output = nvrtc.compile(source.text, source.file_name, arch, options);
  double seconds = output.seconds;
  if (cubin && spills(output) > 0) {
    // ptxas sometimes spills a few bytes to stay at 64 registers (an occupancy step), and
    // which register options avoid it varies by kernel: try others, keep the first without
    // spills (else the one that spills least).
    const std::vector<std::vector<std::string>> variants = {
        {block_cap, "--ptxas-options=--register-usage-level=0"},
        {"--maxrregcount=64", "--ptxas-options=--register-usage-level=0"},
        {"--maxrregcount=80"},
    };
    for (const std::vector<std::string>& variant : variants) {
      std::vector<std::string> retry = base;
      retry.insert(retry.end(), variant.begin(), variant.end());
      NvrtcOutput other = nvrtc.compile(source.text, source.file_name, arch, retry);
      seconds += other.seconds;
      if (spills(other) < spills(output)) {
        output = std::move(other);
        options = std::move(retry);
      }
      if (spills(output) == 0) break;
    }
  }

  CudaBinary binary;
  binary.name = kernel.config_name() + "_cuda_" + arch + "_" + shape.spelling();
  binary.arch = arch;
  binary.cubin = std::move(output.cubin);
  binary.ptx = std::move(output.ptx);
  binary.phase_functions = source.phase_functions;
  binary.shape = shape;
  binary.compile_seconds = seconds;
  binary.table_layout = source.table_layout;
  binary.nvrtc_options = options;
  binary.log = output.log;
  for (const std::string& function : source.phase_functions) {
    int registers = 0;
    for (const PtxasFunctionInfo& info : output.functions) {
      if (info.name == function) registers = info.registers;
    }
    FUSEOPT_CHECK(!cubin || registers > 0,
                  "ptxas reported no registers for " + function + "; log:\n" + output.log);
    binary.registers.push_back(registers);
  }
  binary.spill_bytes = spills(output);
  binary.source = std::move(source.text);

  if (cache == CudaCompileCache::kProcess) {
    ProcessCache& c = process_cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    c.binaries.emplace(std::move(key), binary);
  }
  return binary;
}

std::string cuda_arch_for_device(int major, int minor) {
  const std::vector<int>& archs = NvrtcCompiler::get().supported_archs();
  const int sm = major * 10 + minor;
  if (std::binary_search(archs.begin(), archs.end(), sm)) return "sm_" + std::to_string(sm);
  if (sm > archs.back()) {
    // A device newer than this NVRTC: its PTX for the newest arch it knows, JIT-compiled by
    // the driver, runs there.
    return "compute_" + std::to_string(archs.back());
  }
  // Between two supported archs (e.g. 8.7 on a toolkit without it): the nearest older one
  // as PTX, which the driver compiles for the exact device.
  int older = 0;
  for (int a : archs) {
    if (a < sm) older = a;
  }
  if (older > 0 && older / 10 == major) return "compute_" + std::to_string(older);
  throw EnvironmentError("NVRTC " + NvrtcCompiler::get().version() +
                         " cannot compile for this GPU (compute capability " +
                         std::to_string(major) + "." + std::to_string(minor) +
                         "); it supports sm_" + std::to_string(archs.front()) + " to sm_" +
                         std::to_string(archs.back()));
}

std::string nvrtc_version() { return "nvrtc " + NvrtcCompiler::get().version(); }

}  // namespace fuseopt::codegen
