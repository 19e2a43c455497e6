// NVRTC, opened with dlopen so that nothing links it: CUDA C -> cubin (and PTX) for one
// architecture, with NVRTC's log, ptxas's resource report (registers, spills) and the time
// taken. Machines without the CUDA toolkit get an EnvironmentError when they compile.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace fuseopt::codegen {

/// What ptxas reported for one function (`--ptxas-options=-v`).
struct PtxasFunctionInfo {
  std::string name;
  bool is_entry = false;  ///< a __global__ function (registers are reported for these)
  int registers = 0;
  int stack_bytes = 0;
  int spill_store_bytes = 0;
  int spill_load_bytes = 0;
};

/// The result of one compilation.
struct NvrtcOutput {
  std::string cubin;  ///< empty for a compute_XX (PTX only) target
  std::string ptx;
  std::string log;    ///< NVRTC's log, including ptxas's report
  std::vector<PtxasFunctionInfo> functions;
  double seconds = 0;  ///< nvrtcCreateProgram to the last byte of output
};

class NvrtcCompiler {
 public:
  /// Opens NVRTC: `library` when given; otherwise libnvrtc.so.13, then libnvrtc.so, through
  /// the loader's search path, then in $CUDA_HOME/lib64 and /usr/local/cuda/lib64. Throws
  /// EnvironmentError listing what was tried when none loads or a function is missing.
  explicit NvrtcCompiler(const std::string& library = "");
  ~NvrtcCompiler();
  NvrtcCompiler(const NvrtcCompiler&) = delete;
  NvrtcCompiler& operator=(const NvrtcCompiler&) = delete;

  /// The process's compiler, opened on first use (each later call rethrows the same error
  /// when NVRTC is missing).
  static const NvrtcCompiler& get();

  /// "13.0".
  std::string version() const;
  /// The SM numbers NVRTC can target, ascending (e.g. 75, 80, 86, ..., 120).
  const std::vector<int>& supported_archs() const;
  /// The file that was loaded.
  const std::string& library() const;

  /// Compiles `source` (called `file_name` in messages) for `arch`: "sm_90" gives a cubin
  /// and its PTX, "compute_90" PTX only. `options` follow -arch and -std=c++17. An arch
  /// NVRTC does not support is a UserError; a compile error is an InternalError (generated
  /// code that does not compile is a bug) with NVRTC's log and the offending source line.
  NvrtcOutput compile(const std::string& source, const std::string& file_name,
                      const std::string& arch, const std::vector<std::string>& options = {}) const;

 private:
  struct Api;
  std::unique_ptr<Api> api_;
  std::string library_;
  std::vector<int> archs_;
  int major_ = 0;
  int minor_ = 0;
};

/// Reads ptxas's -v report out of an NVRTC log: one entry per function it describes.
std::vector<PtxasFunctionInfo> parse_ptxas_report(const std::string& log);

/// The source line of the first "FILE(LINE): error" in an NVRTC log, as "FILE:LINE: text",
/// or "" when the log names none.
std::string first_error_line(const std::string& log, const std::string& source);

}  // namespace fuseopt::codegen
