// codegen/cuda's storage device functions, compiled as host C++ (cuda_shim.h) and compared
// with support/low_precision.h bit for bit; and compiled by NVRTC for sm_80 and sm_90, called
// from a kernel so that every function is type-checked and assembled.
#include <gtest/gtest.h>

#include <bit>
#include <random>
#include <vector>

#include "codegen/cuda/nvrtc_compiler.h"
#include "codegen/cuda/storage_functions.h"
#include "support/error.h"
#include "support/low_precision.h"
#include "tests/codegen_cuda/cuda_shim.h"
// The generated text (storage_functions_gen), defining fuseopt_* functions at global scope.
#include "storage_functions_host.h"

namespace fuseopt::codegen {
namespace {

std::vector<uint32_t> float_bits_to_check() {
  std::vector<uint32_t> bits = {0u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u,
                                0x7f800001u, 0x477fe000u, 0x477ff000u, 0x47800000u, 0x33000000u,
                                0x33000001u, 0x38800000u, 0x00000001u, 0x7f7fffffu};
  for (uint32_t h = 0; h < 0x10000u; h += 3) {
    for (uint32_t base : {h << 16, std::bit_cast<uint32_t>(f16_to_float(static_cast<uint16_t>(h)))}) {
      for (uint32_t delta : {0u, 1u, 0x7fffu, 0x8000u, 0x8001u, 0xfffu, 0x1000u, 0x1001u}) {
        bits.push_back(base + delta);
        bits.push_back(base - delta);
      }
    }
  }
  std::mt19937 rng(77);
  for (int i = 0; i < 200000; ++i) bits.push_back(static_cast<uint32_t>(rng()));
  return bits;
}

TEST(CudaStorageFunctions, WideningMatchesTheDefinition) {
  for (uint32_t i = 0; i < 0x10000u; ++i) {
    const auto h = static_cast<uint16_t>(i);
    ASSERT_EQ(std::bit_cast<uint32_t>(fuseopt_bf16_to_float(h)),
              std::bit_cast<uint32_t>(bf16_to_float(h))) << i;
    ASSERT_EQ(std::bit_cast<uint32_t>(fuseopt_f16_to_float(h)),
              std::bit_cast<uint32_t>(f16_to_float(h))) << i;
  }
}

TEST(CudaStorageFunctions, RoundingMatchesTheDefinition) {
  const uint32_t key = rounding_stream_key(5, 9, 130);
  uint32_t index = 0;
  for (uint32_t b : float_bits_to_check()) {
    const float v = std::bit_cast<float>(b);
    const uint32_t r = rounding_random(key, index);
    ASSERT_EQ(fuseopt_rounding_random(key, index), r) << index;
    ASSERT_EQ(fuseopt_float_to_bf16(v), float_to_bf16(v)) << std::hex << b;
    ASSERT_EQ(fuseopt_float_to_f16(v), float_to_f16(v)) << std::hex << b;
    ASSERT_EQ(fuseopt_float_to_bf16_sr(v, r), float_to_bf16_stochastic(v, r)) << std::hex << b;
    ASSERT_EQ(fuseopt_float_to_f16_sr(v, r), float_to_f16_stochastic(v, r)) << std::hex << b;
    ++index;
  }
}

// Indices past 2^32: the split form with the upper half's mix is rounding_random exactly.
TEST(CudaStorageFunctions, SplitRandomMatchesTheDefinitionForLargeIndices) {
  const uint32_t key = rounding_stream_key(11, 3, 65);
  for (uint64_t upper : {uint64_t{0}, uint64_t{1}, uint64_t{2}, uint64_t{0x7fffffff}}) {
    ASSERT_EQ(fuseopt_rounding_index_high(static_cast<unsigned int>(upper)),
              rounding_index_high(upper << 32)) << upper;
    for (uint64_t low : {uint64_t{0}, uint64_t{1}, uint64_t{12345}, uint64_t{0xffffffff}}) {
      const uint64_t index = (upper << 32) | low;
      ASSERT_EQ(fuseopt_rounding_random_split(key, static_cast<unsigned int>(low),
                                              fuseopt_rounding_index_high(
                                                  static_cast<unsigned int>(upper))),
                rounding_random(key, index)) << index;
    }
  }
}

TEST(CudaStorageFunctions, ExpressionsNameTheFunctions) {
  EXPECT_EQ(cuda_widen_expression(StorageType::kF32, "x"), "x");
  EXPECT_EQ(cuda_widen_expression(StorageType::kBF16, "x"), "fuseopt_bf16_to_float(x)");
  EXPECT_EQ(cuda_round_expression(StorageType::kF16, "v", false), "fuseopt_float_to_f16(v)");
  EXPECT_EQ(cuda_round_expression(StorageType::kBF16, "v", true, "r"),
            "fuseopt_float_to_bf16_sr(v, r)");
  EXPECT_STREQ(cuda_storage_c_type(StorageType::kF16), "unsigned short");
}

TEST(CudaStorageFunctions, NvrtcCompilesThem) {
  const NvrtcCompiler* compiler = nullptr;
  try {
    compiler = &NvrtcCompiler::get();
  } catch (const EnvironmentError& e) {
    GTEST_SKIP() << e.what();
  }
  const std::string source = cuda_storage_functions() + R"CUDA(
extern "C" __global__ void roundtrip(const float* in, unsigned short* out, float* back,
                                     unsigned int key, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const unsigned int r = fuseopt_rounding_random(key, static_cast<unsigned int>(i));
  out[4 * i + 0] = fuseopt_float_to_bf16(in[i]);
  out[4 * i + 1] = fuseopt_float_to_f16(in[i]);
  out[4 * i + 2] = fuseopt_float_to_bf16_sr(in[i], r);
  out[4 * i + 3] = fuseopt_float_to_f16_sr(in[i], r);
  back[i] = fuseopt_bf16_to_float(out[4 * i]) + fuseopt_f16_to_float(out[4 * i + 1]);
}
)CUDA";
  for (const char* arch : {"sm_80", "sm_90"}) {
    const NvrtcOutput output = compiler->compile(source, "storage_functions.cu", arch);
    EXPECT_FALSE(output.cubin.empty()) << arch;
    EXPECT_NE(output.ptx.find("roundtrip"), std::string::npos) << arch;
  }
}

}  // namespace
}  // namespace fuseopt::codegen
