// The CUDA driver loader on machines without a GPU: no library at all, and the toolkit's stub
// library (which fails cuInit with CUDA_ERROR_STUB_LIBRARY) both give one clear
// EnvironmentError; error names need no driver.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "runtime/cuda/cuda_driver.h"
#include "support/error.h"

namespace fuseopt::runtime {
namespace {

std::string stub_library() {
  std::vector<std::string> homes;
  if (const char* home = std::getenv("CUDA_HOME"); home != nullptr && *home != '\0') {
    homes.push_back(home);
  }
  homes.push_back("/usr/local/cuda");
  for (const std::string& home : homes) {
    const std::string path = home + "/lib64/stubs/libcuda.so";
    if (std::filesystem::exists(path)) return path;
  }
  return "";
}

TEST(CudaDriver, NoLibraryIsAnEnvironmentError) {
  try {
    CudaDriver::open("/nonexistent/libcuda.so.1");
    FAIL() << "opened a missing driver";
  } catch (const EnvironmentError& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.rfind("no CUDA driver (/nonexistent/libcuda.so.1 not found): ", 0), 0u)
        << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << "one line: " << message;
  }
}

TEST(CudaDriver, StubLibraryIsAnEnvironmentErrorNamingTheStub) {
  const std::string stub = stub_library();
  if (stub.empty()) GTEST_SKIP() << "no CUDA toolkit stub library on this machine";
  try {
    CudaDriver::open(stub);
    FAIL() << "the stub initialised";
  } catch (const EnvironmentError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("cuInit failed with CUDA_ERROR_STUB_LIBRARY"), std::string::npos)
        << message;
    EXPECT_NE(message.find("stub"), std::string::npos) << message;
    EXPECT_NE(message.find(stub), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << "one line: " << message;
  }
}

// The process's driver: unavailable here (no GPU) with a reason that get() repeats; on a
// machine with a GPU, usable.
TEST(CudaDriver, ProcessDriverOrTheReasonWhyNot) {
  const std::string reason = CudaDriver::unavailable_reason();
  if (reason.empty()) {
    const CudaDriver& driver = CudaDriver::get();
    EXPECT_GE(driver.device().sm_major, 7);
    EXPECT_GT(driver.device().sm_count, 0);
    EXPECT_FALSE(driver.device().name.empty());
    return;
  }
  EXPECT_EQ(reason.find('\n'), std::string::npos) << reason;
  try {
    CudaDriver::get();
    FAIL() << "get() succeeded although unavailable_reason() said: " << reason;
  } catch (const EnvironmentError& e) {
    EXPECT_EQ(std::string(e.what()), reason);
  }
}

TEST(CudaDriver, ErrorNamesWithoutADriver) {
  EXPECT_EQ(cuda_error_name(0), "CUDA_SUCCESS");
  EXPECT_EQ(cuda_error_name(2), "CUDA_ERROR_OUT_OF_MEMORY");
  EXPECT_EQ(cuda_error_name(34), "CUDA_ERROR_STUB_LIBRARY");
  EXPECT_EQ(cuda_error_name(100), "CUDA_ERROR_NO_DEVICE");
  EXPECT_EQ(cuda_error_name(209), "CUDA_ERROR_NO_BINARY_FOR_GPU");
  EXPECT_EQ(cuda_error_name(700), "CUDA_ERROR_ILLEGAL_ADDRESS");
  EXPECT_EQ(cuda_error_name(999), "CUDA_ERROR_UNKNOWN");
  EXPECT_EQ(cuda_error_name(12345), "CUresult 12345");
}

TEST(CudaDeviceInfo, Arch) {
  CudaDeviceInfo info;
  info.sm_major = 9;
  info.sm_minor = 0;
  EXPECT_EQ(info.arch(), "sm_90");
  info.sm_major = 12;
  info.sm_minor = 1;
  EXPECT_EQ(info.arch(), "sm_121");
}

}  // namespace
}  // namespace fuseopt::runtime
