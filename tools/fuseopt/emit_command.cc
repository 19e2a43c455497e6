// `fuseopt emit RULE (--ir | --halide | --cuda | --cubin | --ptx)`: prints (or writes) what one
// rule compiles to with the given option values: the IR, or what a backend's code generator
// makes of it. The CUDA outputs need NVRTC but no GPU or driver.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <regex>
#include <string>
#include <vector>

#include "codegen/cuda/cuda_codegen.h"
#include "codegen/cuda/cuda_source.h"
#include "codegen/cuda/nvrtc_compiler.h"
#include "codegen/halide/cpu_codegen.h"
#include "frontend/rule.h"
#include "ir/passes/pipeline.h"
#include "ir/printer.h"
#include "support/error.h"
#include "tools/fuseopt/flag_values.h"
#include "tools/fuseopt/rule_setup.h"
#include "tools/fuseopt/subcommands.h"

namespace fuseopt::tools {
namespace {

constexpr const char* kDefaultCubinArch = "sm_90";
constexpr const char* kDefaultPtxArch = "compute_90";

// "sm_75, sm_80, ..." as this NVRTC supports them.
std::string supported_archs() {
  std::string list;
  for (int arch : codegen::NvrtcCompiler::get().supported_archs()) {
    list += (list.empty() ? "sm_" : ", sm_") + std::to_string(arch);
  }
  return list;
}

// Checks --arch before anything compiles: sm_XX (cubin and PTX) or, for --ptx only,
// compute_XX, with XX an architecture this NVRTC supports.
void check_arch(const std::string& arch, bool cubin) {
  static const std::regex pattern("(sm|compute)_([0-9]+)");
  std::smatch match;
  if (!std::regex_match(arch, match, pattern)) {
    throw UserError("--arch '" + arch + "' is not a CUDA architecture: give sm_XX" +
                    std::string(cubin ? "" : " or compute_XX") + "; NVRTC " +
                    codegen::NvrtcCompiler::get().version() + " supports " + supported_archs());
  }
  if (cubin && match[1] == "compute") {
    throw UserError("--cubin needs a real GPU architecture (sm_" + match[2].str() + "), not '" +
                    arch + "': compute_XX has PTX only (use --ptx); NVRTC " +
                    codegen::NvrtcCompiler::get().version() + " supports " + supported_archs());
  }
  const std::vector<int>& archs = codegen::NvrtcCompiler::get().supported_archs();
  const int number = std::stoi(match[2].str());
  if (!std::binary_search(archs.begin(), archs.end(), number)) {
    throw UserError("--arch '" + arch + "': NVRTC " + codegen::NvrtcCompiler::get().version() +
                    " cannot compile for it; it supports " + supported_archs() +
                    (cubin ? "" : " (or compute_XX of each)"));
  }
}

// Writes `bytes` to `path` through a temporary file beside it, so a failure leaves no
// half-written file.
void write_file(const std::string& path, const std::string& bytes) {
  const std::string temporary = path + ".tmp" + std::to_string(::getpid());
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) throw UserError("cannot write '" + path + "': cannot create the file");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
      std::remove(temporary.c_str());
      throw EnvironmentError("cannot write '" + path + "': the write failed (disk full?)");
    }
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    std::remove(temporary.c_str());
    throw UserError("cannot write '" + path + "': cannot rename the file into place");
  }
}

}  // namespace

CommandSpec emit_spec() {
  return {
      .name = "emit",
      .synopsis = "RULE (--ir | --halide | --cuda | --cubin -o FILE | --ptx [-o FILE])\n"
                  "           [--arch ARCH] [--option NAME=VALUE]... [--passes]",
      .description =
          "Compiles RULE with the given option values (the others at their defaults) and\n"
          "prints the optimised IR (--ir), the Halide pipeline (--halide) or the generated\n"
          "CUDA C (--cuda). --halide describes, per phase, the Halide definitions, the\n"
          "schedule (--target and the default schedule) and Halide's lowered statement.\n"
          "\n"
          "--cubin compiles the CUDA C with NVRTC for --arch sm_XX (default sm_90) and writes\n"
          "the cubin to FILE; --ptx writes the PTX to FILE, or prints it, for --arch sm_XX\n"
          "or compute_XX (default compute_90). Neither needs a GPU or driver; without NVRTC\n"
          "they exit with code 4. An architecture NVRTC cannot target is an error (exit 1)\n"
          "that lists the ones it can.\n",
      .positional_name = "RULE",
      .min_positionals = 1,
      .max_positionals = 1,
      .flags =
          {
              {"--ir", FlagKind::kSwitch, "", "print the IR after the optimisation passes"},
              {"--halide", FlagKind::kSwitch, "", "print the Halide pipelines"},
              {"--target", FlagKind::kValue, "T",
               "with --halide: host (default), x86-64-v2/v3/v4 or a Halide target"},
              {"--cuda", FlagKind::kSwitch, "", "print the generated CUDA C"},
              {"--cubin", FlagKind::kSwitch, "", "write the cubin compiled by NVRTC (needs -o)"},
              {"--ptx", FlagKind::kSwitch, "", "write or print the PTX compiled by NVRTC"},
              {"--arch", FlagKind::kValue, "ARCH",
               "sm_XX, or compute_XX for --ptx (default sm_90, --ptx compute_90)"},
              {"-o", FlagKind::kValue, "FILE", "with --cubin or --ptx: the file to write"},
              {"--option", FlagKind::kRepeated, "NAME=VALUE",
               "set an option: true, false or an integer (repeatable)"},
              {"--passes", FlagKind::kSwitch, "", "with --ir: print the IR after every pass"},
          },
  };
}

int run_emit(const Args& args) {
  const int targets = args.has("--ir") + args.has("--halide") + args.has("--cuda") +
                      args.has("--cubin") + args.has("--ptx");
  if (targets != 1) {
    throw UsageError(std::string(targets == 0 ? "'emit' needs one of" : "'emit' takes only one of") +
                     " --ir, --halide, --cuda, --cubin and --ptx; " + see_help("emit"));
  }
  if (args.has("--passes") && !args.has("--ir")) {
    throw UsageError("--passes goes with --ir; " + see_help("emit"));
  }
  const bool binary = args.has("--cubin") || args.has("--ptx");
  if (args.has("--arch") && !binary) {
    throw UsageError("--arch goes with --cubin or --ptx; " + see_help("emit"));
  }
  if (args.has("-o") && !binary) {
    throw UsageError("-o goes with --cubin or --ptx; " + see_help("emit"));
  }
  if (args.has("--cubin") && !args.has("-o")) {
    throw UsageError("--cubin writes a binary file: give -o FILE; " + see_help("emit"));
  }

  // The rule and its options are checked first, so their errors show whatever the target.
  const frontend::Rule rule = frontend::load_rule(args.positionals()[0]);
  const auto options = rule.resolve_options(parse_assignments(args.values("--option"), "--option"));
  if (args.has("--target") && !args.has("--halide")) {
    throw UsageError("--target goes with --halide; " + see_help("emit"));
  }
  std::string arch;
  if (binary) {
    const bool cubin = args.has("--cubin");
    arch = args.value_or("--arch", cubin ? kDefaultCubinArch : kDefaultPtxArch);
    check_arch(arch, cubin);
  }

  ir::PipelineOptions pipeline;
  if (args.has("--passes")) pipeline.print_after_each = &std::cout;
  const ir::Kernel kernel = compile_rule(rule, options, pipeline);
  if (args.has("--halide")) {
    std::cout << codegen::describe_halide_pipelines(kernel, codegen::default_cpu_schedule(),
                                                    args.value_or("--target", "host"));
    return 0;
  }
  if (args.has("--cuda")) {
    std::cout << codegen::generate_cuda_source(kernel, codegen::CudaLaunchShape{}).text;
    return 0;
  }
  if (binary) {
    const codegen::CudaBinary compiled =
        codegen::compile_cuda_kernel(kernel, codegen::CudaLaunchShape{}, arch);
    const bool cubin = args.has("--cubin");
    std::string bytes = cubin ? compiled.cubin : compiled.ptx;
    // PTX is text; NVRTC ends it with a NUL.
    while (!cubin && !bytes.empty() && bytes.back() == '\0') bytes.pop_back();
    FUSEOPT_CHECK(!bytes.empty(),
                  "NVRTC gave no " + std::string(cubin ? "cubin" : "PTX") + " for " + arch);
    if (auto file = args.value("-o")) {
      write_file(*file, bytes);
    } else {
      std::cout << bytes;
    }
    return 0;
  }
  // With --passes the last pass has printed the final IR already.
  if (!args.has("--passes")) std::cout << ir::print_kernel(kernel);
  return 0;
}

}  // namespace fuseopt::tools
