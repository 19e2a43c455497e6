// The NVRTC wrapper: a compile error shows NVRTC's log and the generated line, PTX-only
// targets, unsupported architectures, a missing library, the ptxas report parser, and the
// choice of architecture for a device. Needs the CUDA toolkit's NVRTC (no GPU); tests that
// need NVRTC skip when it is absent.
#include <gtest/gtest.h>

#include <string>

#include "codegen/cuda/cuda_codegen.h"
#include "codegen/cuda/nvrtc_compiler.h"
#include "support/error.h"

namespace fuseopt::codegen {
namespace {

#define REQUIRE_NVRTC()                                 \
  do {                                                  \
    try {                                               \
      NvrtcCompiler::get();                             \
    } catch (const EnvironmentError& e) {               \
      GTEST_SKIP() << "no NVRTC on this machine: " << e.what(); \
    }                                                   \
  } while (false)

bool contains(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

TEST(NvrtcCompiler, CompileErrorShowsTheLogAndTheGeneratedLine) {
  REQUIRE_NVRTC();
  const std::string source =
      "// line 1\n"
      "extern \"C\" __global__ void broken(float* x) {\n"
      "  x[0] = fuseopt_no_such_function(x[1]);\n"
      "}\n";
  try {
    NvrtcCompiler::get().compile(source, "broken.cu", "sm_90");
    FAIL() << "the broken source compiled";
  } catch (const InternalError& e) {
    const std::string message = e.what();
    EXPECT_TRUE(contains(message, "could not compile broken.cu for sm_90")) << message;
    EXPECT_TRUE(contains(message, "NVRTC_ERROR_COMPILATION")) << message;
    EXPECT_TRUE(contains(message, "broken.cu(3): error")) << message;  // the log
    EXPECT_TRUE(contains(message, "fuseopt_no_such_function")) << message;
    EXPECT_TRUE(contains(message,
                         "generated line broken.cu:3:   x[0] = fuseopt_no_such_function(x[1]);"))
        << message;
  }
}

TEST(NvrtcCompiler, CubinAndPtxForSmTargetsPtxOnlyForCompute) {
  REQUIRE_NVRTC();
  const std::string source =
      "extern \"C\" __global__ void __launch_bounds__(128) twice(float* x) {\n"
      "  x[threadIdx.x] *= 2.0f;\n"
      "}\n";
  NvrtcOutput sm = NvrtcCompiler::get().compile(source, "twice.cu", "sm_80", {"--ptxas-options=-v"});
  ASSERT_GE(sm.cubin.size(), 4u);
  EXPECT_EQ(sm.cubin.substr(0, 4), "\x7f" "ELF");
  EXPECT_TRUE(contains(sm.ptx, ".entry twice")) << sm.ptx;
  ASSERT_EQ(sm.functions.size(), 1u) << sm.log;
  EXPECT_EQ(sm.functions[0].name, "twice");
  EXPECT_TRUE(sm.functions[0].is_entry);
  EXPECT_GT(sm.functions[0].registers, 0);
  EXPECT_EQ(sm.functions[0].spill_store_bytes, 0);
  EXPECT_GT(sm.seconds, 0);

  NvrtcOutput compute = NvrtcCompiler::get().compile(source, "twice.cu", "compute_90");
  EXPECT_TRUE(compute.cubin.empty());
  EXPECT_TRUE(contains(compute.ptx, ".target sm_90")) << compute.ptx.substr(0, 300);
}

TEST(NvrtcCompiler, UnsupportedArchitectureIsAUserError) {
  REQUIRE_NVRTC();
  for (const char* arch : {"sm_20", "sm_9", "gfx90a", ""}) {
    try {
      NvrtcCompiler::get().compile("", "x.cu", arch);
      ADD_FAILURE() << arch;
    } catch (const UserError& e) {
      EXPECT_TRUE(contains(e.what(), "cannot compile for '" + std::string(arch) + "'")) << e.what();
      EXPECT_TRUE(contains(e.what(), "sm_90")) << e.what();
    }
  }
}

TEST(NvrtcCompiler, MissingLibraryIsAnEnvironmentError) {
  try {
    NvrtcCompiler compiler("/nonexistent/libnvrtc.so.13");
    FAIL() << "opened a missing library";
  } catch (const EnvironmentError& e) {
    EXPECT_TRUE(contains(e.what(), "no NVRTC")) << e.what();
    EXPECT_TRUE(contains(e.what(), "/nonexistent/libnvrtc.so.13")) << e.what();
    EXPECT_FALSE(contains(e.what(), "\n")) << "one line: " << e.what();
  }
}

TEST(NvrtcCompiler, ParsesThePtxasReport) {
  const std::string log =
      "ptxas info    : 0 bytes gmem\n"
      "ptxas info    : Compiling entry function 'k_p0' for 'sm_90'\n"
      "ptxas info    : Function properties for k_p0\n"
      "ptxas         .     16 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads\n"
      "ptxas info    : Used 96 registers, used 1 barriers, 16 bytes cumulative stack size\n"
      "ptxas info    : Function properties for helper\n"
      "ptxas         .     0 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads\n"
      "ptxas info    : Compiling entry function 'k_p1' for 'sm_90'\n"
      "ptxas info    : Function properties for k_p1\n"
      "ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
      "ptxas info    : Used 40 registers, used 0 barriers\n";
  const auto functions = parse_ptxas_report(log);
  ASSERT_EQ(functions.size(), 3u);
  EXPECT_EQ(functions[0].name, "k_p0");
  EXPECT_TRUE(functions[0].is_entry);
  EXPECT_EQ(functions[0].registers, 96);
  EXPECT_EQ(functions[0].stack_bytes, 16);
  EXPECT_EQ(functions[0].spill_store_bytes, 8);
  EXPECT_EQ(functions[0].spill_load_bytes, 12);
  EXPECT_EQ(functions[1].name, "helper");
  EXPECT_FALSE(functions[1].is_entry);
  EXPECT_EQ(functions[1].spill_store_bytes, 4);
  EXPECT_EQ(functions[2].name, "k_p1");
  EXPECT_EQ(functions[2].registers, 40);
}

TEST(NvrtcCompiler, FirstErrorLine) {
  EXPECT_EQ(first_error_line("a.cu(2): error: bad\n", "one\ntwo\nthree\n"), "a.cu:2: two");
  EXPECT_EQ(first_error_line("a.cu(2): warning: meh\n", "one\ntwo\n"), "");
  EXPECT_EQ(first_error_line("a.cu(9): error: bad\n", "one\n"),
            "a.cu:9: (beyond the end of the source)");
}

TEST(CudaCodegen, ArchForDevice) {
  REQUIRE_NVRTC();
  EXPECT_EQ(cuda_arch_for_device(8, 0), "sm_80");
  EXPECT_EQ(cuda_arch_for_device(9, 0), "sm_90");
  const int newest = NvrtcCompiler::get().supported_archs().back();
  EXPECT_EQ(cuda_arch_for_device(99, 0), "compute_" + std::to_string(newest));
  EXPECT_THROW(cuda_arch_for_device(3, 0), EnvironmentError);
  EXPECT_EQ(nvrtc_version().rfind("nvrtc ", 0), 0u);
}

TEST(CudaCodegen, ProcessCacheReturnsTheSameBinary) {
  REQUIRE_NVRTC();
  // Built by hand so the test does not depend on the frontend: param -= 0.5 * grad.
  ir::Kernel kernel;
  kernel.rule = "halfstep";
  kernel.buffers = {{"param", ir::BufferRole::kParam}, {"grad", ir::BufferRole::kGrad}};
  kernel.phases.resize(1);
  kernel.phases[0].stores = {
      {"param", ir::make_binary(ir::BinaryOp::kSub, ir::make_load("param"),
                                ir::make_binary(ir::BinaryOp::kMul,
                                                ir::make_cast(ir::Type::kF32, ir::make_const(0.5)),
                                                ir::make_load("grad")))}};
  kernel.is_split = true;
  CudaLaunchShape shape;
  shape.block_size = 128;
  shape.elements_per_thread = 4;
  const CudaBinary first = compile_cuda_kernel(kernel, shape, "sm_80");
  EXPECT_GT(first.compile_seconds, 0);
  EXPECT_EQ(first.name, "halfstep_cuda_sm_80_b128_e4_v4_c65536_g0");
  shape.grid_limit = 7;  // not part of the code
  const CudaBinary second = compile_cuda_kernel(kernel, shape, "sm_80");
  EXPECT_EQ(second.compile_seconds, 0);
  EXPECT_EQ(second.cubin, first.cubin);
  EXPECT_EQ(second.shape.grid_limit, 7);
  const CudaBinary fresh = compile_cuda_kernel(kernel, shape, "sm_80", CudaCompileCache::kNone);
  EXPECT_GT(fresh.compile_seconds, 0);
  EXPECT_EQ(fresh.registers.size(), 1u);
  EXPECT_GT(fresh.registers[0], 0);
}

}  // namespace
}  // namespace fuseopt::codegen
