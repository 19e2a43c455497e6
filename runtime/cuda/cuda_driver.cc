// The driver's entry points are declared here (the toolkit's cuda.h is not needed to build).
// cuda.h #defines several names to versioned symbols (cuMemAlloc -> cuMemAlloc_v2); the
// exported, versioned names are the ones resolved.
#include "runtime/cuda/cuda_driver.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "support/error.h"

namespace fuseopt::runtime {
namespace {

using CUresult = int;
using CUdevice = int;
using CUcontext = void*;
using CUmodule = void*;
using CUfunction = void*;
using CUstream = void*;
using CUevent = void*;
using CUdeviceptr = unsigned long long;

// The CUresult names of CUDA 13's cuda.h, so errors have names even when the library is the
// toolkit's stub (whose cuGetErrorName fails too).
const std::map<int, const char*>& error_names() {
  static const std::map<int, const char*> names = {
      {0, "CUDA_SUCCESS"},
      {1, "CUDA_ERROR_INVALID_VALUE"},
      {2, "CUDA_ERROR_OUT_OF_MEMORY"},
      {3, "CUDA_ERROR_NOT_INITIALIZED"},
      {4, "CUDA_ERROR_DEINITIALIZED"},
      {5, "CUDA_ERROR_PROFILER_DISABLED"},
      {6, "CUDA_ERROR_PROFILER_NOT_INITIALIZED"},
      {7, "CUDA_ERROR_PROFILER_ALREADY_STARTED"},
      {8, "CUDA_ERROR_PROFILER_ALREADY_STOPPED"},
      {34, "CUDA_ERROR_STUB_LIBRARY"},
      {36, "CUDA_ERROR_CALL_REQUIRES_NEWER_DRIVER"},
      {46, "CUDA_ERROR_DEVICE_UNAVAILABLE"},
      {100, "CUDA_ERROR_NO_DEVICE"},
      {101, "CUDA_ERROR_INVALID_DEVICE"},
      {102, "CUDA_ERROR_DEVICE_NOT_LICENSED"},
      {200, "CUDA_ERROR_INVALID_IMAGE"},
      {201, "CUDA_ERROR_INVALID_CONTEXT"},
      {202, "CUDA_ERROR_CONTEXT_ALREADY_CURRENT"},
      {205, "CUDA_ERROR_MAP_FAILED"},
      {206, "CUDA_ERROR_UNMAP_FAILED"},
      {207, "CUDA_ERROR_ARRAY_IS_MAPPED"},
      {208, "CUDA_ERROR_ALREADY_MAPPED"},
      {209, "CUDA_ERROR_NO_BINARY_FOR_GPU"},
      {210, "CUDA_ERROR_ALREADY_ACQUIRED"},
      {211, "CUDA_ERROR_NOT_MAPPED"},
      {212, "CUDA_ERROR_NOT_MAPPED_AS_ARRAY"},
      {213, "CUDA_ERROR_NOT_MAPPED_AS_POINTER"},
      {214, "CUDA_ERROR_ECC_UNCORRECTABLE"},
      {215, "CUDA_ERROR_UNSUPPORTED_LIMIT"},
      {216, "CUDA_ERROR_CONTEXT_ALREADY_IN_USE"},
      {217, "CUDA_ERROR_PEER_ACCESS_UNSUPPORTED"},
      {218, "CUDA_ERROR_INVALID_PTX"},
      {219, "CUDA_ERROR_INVALID_GRAPHICS_CONTEXT"},
      {220, "CUDA_ERROR_NVLINK_UNCORRECTABLE"},
      {221, "CUDA_ERROR_JIT_COMPILER_NOT_FOUND"},
      {222, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION"},
      {223, "CUDA_ERROR_JIT_COMPILATION_DISABLED"},
      {224, "CUDA_ERROR_UNSUPPORTED_EXEC_AFFINITY"},
      {225, "CUDA_ERROR_UNSUPPORTED_DEVSIDE_SYNC"},
      {226, "CUDA_ERROR_CONTAINED"},
      {300, "CUDA_ERROR_INVALID_SOURCE"},
      {301, "CUDA_ERROR_FILE_NOT_FOUND"},
      {302, "CUDA_ERROR_SHARED_OBJECT_SYMBOL_NOT_FOUND"},
      {303, "CUDA_ERROR_SHARED_OBJECT_INIT_FAILED"},
      {304, "CUDA_ERROR_OPERATING_SYSTEM"},
      {400, "CUDA_ERROR_INVALID_HANDLE"},
      {401, "CUDA_ERROR_ILLEGAL_STATE"},
      {402, "CUDA_ERROR_LOSSY_QUERY"},
      {500, "CUDA_ERROR_NOT_FOUND"},
      {600, "CUDA_ERROR_NOT_READY"},
      {700, "CUDA_ERROR_ILLEGAL_ADDRESS"},
      {701, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES"},
      {702, "CUDA_ERROR_LAUNCH_TIMEOUT"},
      {703, "CUDA_ERROR_LAUNCH_INCOMPATIBLE_TEXTURING"},
      {704, "CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED"},
      {705, "CUDA_ERROR_PEER_ACCESS_NOT_ENABLED"},
      {708, "CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE"},
      {709, "CUDA_ERROR_CONTEXT_IS_DESTROYED"},
      {710, "CUDA_ERROR_ASSERT"},
      {711, "CUDA_ERROR_TOO_MANY_PEERS"},
      {712, "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED"},
      {713, "CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED"},
      {714, "CUDA_ERROR_HARDWARE_STACK_ERROR"},
      {715, "CUDA_ERROR_ILLEGAL_INSTRUCTION"},
      {716, "CUDA_ERROR_MISALIGNED_ADDRESS"},
      {717, "CUDA_ERROR_INVALID_ADDRESS_SPACE"},
      {718, "CUDA_ERROR_INVALID_PC"},
      {719, "CUDA_ERROR_LAUNCH_FAILED"},
      {720, "CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE"},
      {721, "CUDA_ERROR_TENSOR_MEMORY_LEAK"},
      {800, "CUDA_ERROR_NOT_PERMITTED"},
      {801, "CUDA_ERROR_NOT_SUPPORTED"},
      {802, "CUDA_ERROR_SYSTEM_NOT_READY"},
      {803, "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH"},
      {804, "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE"},
      {805, "CUDA_ERROR_MPS_CONNECTION_FAILED"},
      {806, "CUDA_ERROR_MPS_RPC_FAILURE"},
      {807, "CUDA_ERROR_MPS_SERVER_NOT_READY"},
      {808, "CUDA_ERROR_MPS_MAX_CLIENTS_REACHED"},
      {809, "CUDA_ERROR_MPS_MAX_CONNECTIONS_REACHED"},
      {810, "CUDA_ERROR_MPS_CLIENT_TERMINATED"},
      {811, "CUDA_ERROR_CDP_NOT_SUPPORTED"},
      {812, "CUDA_ERROR_CDP_VERSION_MISMATCH"},
      {900, "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED"},
      {901, "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED"},
      {902, "CUDA_ERROR_STREAM_CAPTURE_MERGE"},
      {903, "CUDA_ERROR_STREAM_CAPTURE_UNMATCHED"},
      {904, "CUDA_ERROR_STREAM_CAPTURE_UNJOINED"},
      {905, "CUDA_ERROR_STREAM_CAPTURE_ISOLATION"},
      {906, "CUDA_ERROR_STREAM_CAPTURE_IMPLICIT"},
      {907, "CUDA_ERROR_CAPTURED_EVENT"},
      {908, "CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD"},
      {909, "CUDA_ERROR_TIMEOUT"},
      {910, "CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE"},
      {911, "CUDA_ERROR_EXTERNAL_DEVICE"},
      {912, "CUDA_ERROR_INVALID_CLUSTER_SIZE"},
      {913, "CUDA_ERROR_FUNCTION_NOT_LOADED"},
      {914, "CUDA_ERROR_INVALID_RESOURCE_TYPE"},
      {915, "CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION"},
      {916, "CUDA_ERROR_KEY_ROTATION"},
      {999, "CUDA_ERROR_UNKNOWN"},
  };
  return names;
}

// Errors that say what the machine lacks, rather than a bug in fuseopt.
bool is_environment_error(int code) {
  switch (code) {
    case 2:    // OUT_OF_MEMORY
    case 3:    // NOT_INITIALIZED
    case 4:    // DEINITIALIZED
    case 34:   // STUB_LIBRARY
    case 35:   // INSUFFICIENT_DRIVER
    case 36:   // CALL_REQUIRES_NEWER_DRIVER
    case 46:   // DEVICE_UNAVAILABLE
    case 100:  // NO_DEVICE
    case 101:  // INVALID_DEVICE
    case 102:  // DEVICE_NOT_LICENSED
    case 209:  // NO_BINARY_FOR_GPU
    case 221:  // JIT_COMPILER_NOT_FOUND
    case 222:  // UNSUPPORTED_PTX_VERSION
    case 223:  // JIT_COMPILATION_DISABLED
    case 304:  // OPERATING_SYSTEM
    case 802:  // SYSTEM_NOT_READY
    case 803:  // SYSTEM_DRIVER_MISMATCH
    case 804:  // COMPAT_NOT_SUPPORTED_ON_DEVICE
      return true;
    default:
      return false;
  }
}

// What to do about an environment error, when there is something to say.
std::string advice(int code) {
  switch (code) {
    case 34:
      return "the library is the CUDA toolkit's stub, not a driver; install the NVIDIA driver "
             "(libcuda.so.1)";
    case 35:
      return "the NVIDIA driver is older than this CUDA version needs; update the driver";
    case 100:
      return "no CUDA GPU is visible (check CUDA_VISIBLE_DEVICES and nvidia-smi)";
    case 222:
      return "the driver is older than the NVRTC that produced the PTX; update the driver";
    default:
      return "";
  }
}

constexpr int kAttributeSmCount = 16;
constexpr int kAttributeMaxThreadsPerSm = 39;
constexpr int kAttributeComputeMajor = 75;
constexpr int kAttributeComputeMinor = 76;
constexpr int kFunctionLocalBytes = 3;
constexpr int kFunctionRegisters = 4;
constexpr int kJitErrorLogBuffer = 5;
constexpr int kJitErrorLogBufferSize = 6;

}  // namespace

std::string cuda_error_name(int code) {
  auto found = error_names().find(code);
  return found != error_names().end() ? found->second : "CUresult " + std::to_string(code);
}

std::string CudaDeviceInfo::arch() const {
  return "sm_" + std::to_string(sm_major) + std::to_string(sm_minor);
}

struct CudaDriver::Api {
  void* handle = nullptr;
  CUresult (*Init)(unsigned) = nullptr;
  CUresult (*DriverGetVersion)(int*) = nullptr;
  CUresult (*GetErrorName)(CUresult, const char**) = nullptr;
  CUresult (*DeviceGetCount)(int*) = nullptr;
  CUresult (*DeviceGet)(CUdevice*, int) = nullptr;
  CUresult (*DeviceGetName)(char*, int, CUdevice) = nullptr;
  CUresult (*DeviceGetAttribute)(int*, int, CUdevice) = nullptr;
  CUresult (*DeviceTotalMem)(size_t*, CUdevice) = nullptr;
  CUresult (*DevicePrimaryCtxRetain)(CUcontext*, CUdevice) = nullptr;
  CUresult (*CtxSetCurrent)(CUcontext) = nullptr;
  CUresult (*CtxSynchronize)() = nullptr;
  CUresult (*ModuleLoadDataEx)(CUmodule*, const void*, unsigned, int*, void**) = nullptr;
  CUresult (*ModuleGetFunction)(CUfunction*, CUmodule, const char*) = nullptr;
  CUresult (*FuncGetAttribute)(int*, int, CUfunction) = nullptr;
  CUresult (*OccupancyMaxActiveBlocksPerMultiprocessor)(int*, CUfunction, int, size_t) = nullptr;
  CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                           unsigned, CUstream, void**, void**) = nullptr;
  CUresult (*MemAlloc)(CUdeviceptr*, size_t) = nullptr;
  CUresult (*MemFree)(CUdeviceptr) = nullptr;
  CUresult (*MemcpyHtoD)(CUdeviceptr, const void*, size_t) = nullptr;
  CUresult (*MemcpyDtoH)(void*, CUdeviceptr, size_t) = nullptr;
  CUresult (*MemcpyDtoD)(CUdeviceptr, CUdeviceptr, size_t) = nullptr;
  CUresult (*MemsetD8)(CUdeviceptr, unsigned char, size_t) = nullptr;
  CUresult (*MemsetD16)(CUdeviceptr, unsigned short, size_t) = nullptr;
  CUresult (*MemsetD32)(CUdeviceptr, unsigned int, size_t) = nullptr;
  CUresult (*EventCreate)(CUevent*, unsigned) = nullptr;
  CUresult (*EventDestroy)(CUevent) = nullptr;
  CUresult (*EventRecord)(CUevent, CUstream) = nullptr;
  CUresult (*EventElapsedTime)(float*, CUevent, CUevent) = nullptr;
  CUresult (*EventSynchronize)(CUevent) = nullptr;
  CUresult (*MemAllocHost)(void**, size_t) = nullptr;
  CUresult (*MemFreeHost)(void*) = nullptr;
  CUresult (*MemcpyHtoDAsync)(CUdeviceptr, const void*, size_t, CUstream) = nullptr;
  CUresult (*MemcpyDtoHAsync)(void*, CUdeviceptr, size_t, CUstream) = nullptr;

  std::mutex modules_mutex;
  std::map<std::string, CUmodule> modules;  // by image, so equal binaries load once
};

namespace {

// Resolves the first of `names` the library exports.
template <typename F>
void resolve(void* handle, std::initializer_list<const char*> names, F& function,
             const std::string& library) {
  for (const char* name : names) {
    function = reinterpret_cast<F>(dlsym(handle, name));
    if (function != nullptr) return;
  }
  throw EnvironmentError("the CUDA driver " + library + " lacks " + *names.begin() +
                         " (too old? update the NVIDIA driver)");
}

}  // namespace

void CudaDriver::check(int code, const char* call) const {
  if (code == 0) return;
  std::string message =
      "CUDA driver call " + std::string(call) + " failed with " + cuda_error_name(code);
  if (std::string why = advice(code); !why.empty()) message += ": " + why;
  if (is_environment_error(code)) throw EnvironmentError(message);
  throw InternalError(message);
}

std::unique_ptr<CudaDriver> CudaDriver::open(const std::string& library, int device) {
  std::unique_ptr<CudaDriver> driver(new CudaDriver);
  driver->api_ = std::make_unique<Api>();
  driver->library_ = library;
  Api& a = *driver->api_;
  // The driver stays loaded for the process's life: unloading libcuda is not supported.
  a.handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (a.handle == nullptr) {
    const char* why = dlerror();
    throw EnvironmentError("no CUDA driver (" + library +
                           " not found): " + (why != nullptr ? why : "dlopen failed"));
  }
  resolve(a.handle, {"cuInit"}, a.Init, library);
  resolve(a.handle, {"cuDriverGetVersion"}, a.DriverGetVersion, library);
  resolve(a.handle, {"cuGetErrorName"}, a.GetErrorName, library);
  resolve(a.handle, {"cuDeviceGetCount"}, a.DeviceGetCount, library);
  resolve(a.handle, {"cuDeviceGet"}, a.DeviceGet, library);
  resolve(a.handle, {"cuDeviceGetName"}, a.DeviceGetName, library);
  resolve(a.handle, {"cuDeviceGetAttribute"}, a.DeviceGetAttribute, library);
  resolve(a.handle, {"cuDeviceTotalMem_v2"}, a.DeviceTotalMem, library);
  resolve(a.handle, {"cuDevicePrimaryCtxRetain"}, a.DevicePrimaryCtxRetain, library);
  resolve(a.handle, {"cuCtxSetCurrent"}, a.CtxSetCurrent, library);
  resolve(a.handle, {"cuCtxSynchronize"}, a.CtxSynchronize, library);
  resolve(a.handle, {"cuModuleLoadDataEx"}, a.ModuleLoadDataEx, library);
  resolve(a.handle, {"cuModuleGetFunction"}, a.ModuleGetFunction, library);
  resolve(a.handle, {"cuFuncGetAttribute"}, a.FuncGetAttribute, library);
  resolve(a.handle, {"cuOccupancyMaxActiveBlocksPerMultiprocessor"},
          a.OccupancyMaxActiveBlocksPerMultiprocessor, library);
  resolve(a.handle, {"cuLaunchKernel"}, a.LaunchKernel, library);
  resolve(a.handle, {"cuMemAlloc_v2"}, a.MemAlloc, library);
  resolve(a.handle, {"cuMemFree_v2"}, a.MemFree, library);
  resolve(a.handle, {"cuMemcpyHtoD_v2"}, a.MemcpyHtoD, library);
  resolve(a.handle, {"cuMemcpyDtoH_v2"}, a.MemcpyDtoH, library);
  resolve(a.handle, {"cuMemcpyDtoD_v2"}, a.MemcpyDtoD, library);
  resolve(a.handle, {"cuMemsetD8_v2"}, a.MemsetD8, library);
  resolve(a.handle, {"cuMemsetD16_v2"}, a.MemsetD16, library);
  resolve(a.handle, {"cuMemsetD32_v2"}, a.MemsetD32, library);
  resolve(a.handle, {"cuEventCreate"}, a.EventCreate, library);
  resolve(a.handle, {"cuEventDestroy_v2", "cuEventDestroy"}, a.EventDestroy, library);
  resolve(a.handle, {"cuEventRecord"}, a.EventRecord, library);
  resolve(a.handle, {"cuEventElapsedTime_v2", "cuEventElapsedTime"}, a.EventElapsedTime, library);
  resolve(a.handle, {"cuEventSynchronize"}, a.EventSynchronize, library);
  resolve(a.handle, {"cuMemAllocHost_v2"}, a.MemAllocHost, library);
  resolve(a.handle, {"cuMemFreeHost"}, a.MemFreeHost, library);
  resolve(a.handle, {"cuMemcpyHtoDAsync_v2"}, a.MemcpyHtoDAsync, library);
  resolve(a.handle, {"cuMemcpyDtoHAsync_v2"}, a.MemcpyDtoHAsync, library);

  if (CUresult init = a.Init(0); init != 0) {
    std::string message = "CUDA driver unusable: cuInit failed with " + cuda_error_name(init);
    if (std::string why = advice(init); !why.empty()) message += ": " + why;
    message += " (" + library + ")";
    if (is_environment_error(init) || init == 999) throw EnvironmentError(message);
    throw InternalError(message);
  }
  int count = 0;
  driver->check(a.DeviceGetCount(&count), "cuDeviceGetCount");
  if (count == 0) throw EnvironmentError("no CUDA device: " + advice(100));
  if (device < 0 || device >= count) {
    throw EnvironmentError("no CUDA device " + std::to_string(device) + " (the machine has " +
                           std::to_string(count) + ")");
  }
  CUdevice handle = 0;
  driver->check(a.DeviceGet(&handle, device), "cuDeviceGet");
  driver->device_handle_ = handle;
  CudaDeviceInfo& info = driver->device_;
  info.ordinal = device;
  char name[256] = {};
  driver->check(a.DeviceGetName(name, sizeof(name) - 1, handle), "cuDeviceGetName");
  info.name = name;
  driver->check(a.DeviceGetAttribute(&info.sm_major, kAttributeComputeMajor, handle),
                "cuDeviceGetAttribute");
  driver->check(a.DeviceGetAttribute(&info.sm_minor, kAttributeComputeMinor, handle),
                "cuDeviceGetAttribute");
  driver->check(a.DeviceGetAttribute(&info.sm_count, kAttributeSmCount, handle),
                "cuDeviceGetAttribute");
  driver->check(a.DeviceGetAttribute(&info.max_threads_per_sm, kAttributeMaxThreadsPerSm, handle),
                "cuDeviceGetAttribute");
  size_t memory = 0;
  driver->check(a.DeviceTotalMem(&memory, handle), "cuDeviceTotalMem");
  info.total_memory = memory;
  driver->check(a.DriverGetVersion(&info.driver_version), "cuDriverGetVersion");
  // The primary context is the one the CUDA runtime (and so PyTorch) uses: device pointers
  // from either are valid here. It is retained for the process's life.
  driver->check(a.DevicePrimaryCtxRetain(&driver->context_, handle), "cuDevicePrimaryCtxRetain");
  driver->make_current();
  return driver;
}

namespace {

struct SharedDriver {
  std::once_flag once;
  std::unique_ptr<CudaDriver> driver;
  std::string error;
};

SharedDriver& shared_driver() {
  static SharedDriver* shared = new SharedDriver;  // never destroyed: used until exit
  std::call_once(shared->once, [] {
    const char* library = std::getenv("FUSEOPT_CUDA_DRIVER");
    const char* device = std::getenv("FUSEOPT_CUDA_DEVICE");
    try {
      shared->driver =
          CudaDriver::open(library != nullptr && *library != '\0' ? library : "libcuda.so.1",
                           device != nullptr && *device != '\0' ? std::atoi(device) : 0);
    } catch (const EnvironmentError& error) {
      shared->error = error.what();
    } catch (const InternalError& error) {
      shared->error = error.what();
    }
  });
  return *shared;
}

}  // namespace

CudaDriver& CudaDriver::get() {
  SharedDriver& shared = shared_driver();
  if (shared.driver == nullptr) throw EnvironmentError(shared.error);
  return *shared.driver;
}

std::string CudaDriver::unavailable_reason() {
  SharedDriver& shared = shared_driver();
  return shared.driver == nullptr ? shared.error : "";
}

// The context and the library stay: other code in the process may share the primary
// context, and libcuda does not support being unloaded.
CudaDriver::~CudaDriver() = default;

void CudaDriver::make_current() const { check(api_->CtxSetCurrent(context_), "cuCtxSetCurrent"); }

CudaDevicePtr CudaDriver::allocate(size_t bytes) const {
  make_current();
  CUdeviceptr pointer = 0;
  CUresult result = api_->MemAlloc(&pointer, std::max<size_t>(bytes, 1));
  if (result == 2) {
    throw EnvironmentError("CUDA device out of memory allocating " + std::to_string(bytes) +
                           " bytes (cuMemAlloc: CUDA_ERROR_OUT_OF_MEMORY)");
  }
  check(result, "cuMemAlloc");
  return pointer;
}

void CudaDriver::free(CudaDevicePtr pointer) const noexcept {
  if (pointer == 0) return;
  api_->CtxSetCurrent(context_);
  api_->MemFree(pointer);
}

void CudaDriver::copy_to_device(CudaDevicePtr destination, const void* source, size_t bytes) const {
  if (bytes == 0) return;
  make_current();
  check(api_->MemcpyHtoD(destination, source, bytes), "cuMemcpyHtoD");
}

void CudaDriver::copy_to_host(void* destination, CudaDevicePtr source, size_t bytes) const {
  if (bytes == 0) return;
  make_current();
  check(api_->MemcpyDtoH(destination, source, bytes), "cuMemcpyDtoH");
}

void CudaDriver::copy_on_device(CudaDevicePtr destination, CudaDevicePtr source,
                                size_t bytes) const {
  if (bytes == 0) return;
  make_current();
  check(api_->MemcpyDtoD(destination, source, bytes), "cuMemcpyDtoD");
}

void CudaDriver::fill_bytes(CudaDevicePtr destination, uint8_t value, size_t bytes) const {
  if (bytes == 0) return;
  make_current();
  check(api_->MemsetD8(destination, value, bytes), "cuMemsetD8");
}

void CudaDriver::fill_halves(CudaDevicePtr destination, uint16_t value, size_t count) const {
  if (count == 0) return;
  make_current();
  check(api_->MemsetD16(destination, value, count), "cuMemsetD16");
}

void CudaDriver::fill_words(CudaDevicePtr destination, uint32_t value, size_t count) const {
  if (count == 0) return;
  make_current();
  check(api_->MemsetD32(destination, value, count), "cuMemsetD32");
}

CudaModule CudaDriver::load_module(std::string_view cubin, std::string_view ptx) const {
  make_current();
  Api& a = *api_;
  std::lock_guard<std::mutex> lock(a.modules_mutex);
  std::string jit_log;
  auto load = [&](std::string_view image, bool is_ptx, CUresult& result) -> CUmodule {
    std::string key = (is_ptx ? "ptx:" : "cubin:") + std::string(image);
    auto found = a.modules.find(key);
    if (found != a.modules.end()) {
      result = 0;
      return found->second;
    }
    // PTX must end in a NUL; the driver reads the image up to it.
    std::string text(image);
    std::vector<char> log(8192, '\0');
    int options[] = {kJitErrorLogBuffer, kJitErrorLogBufferSize};
    void* values[] = {log.data(), reinterpret_cast<void*>(log.size() - 1)};
    CUmodule module = nullptr;
    result = a.ModuleLoadDataEx(&module, text.c_str(), 2, options, values);
    if (result != 0) {
      if (is_ptx && log[0] != '\0') jit_log = log.data();
      return nullptr;
    }
    a.modules.emplace(std::move(key), module);
    return module;
  };
  CUresult result = 0;
  if (!cubin.empty()) {
    CUmodule module = load(cubin, false, result);
    if (module != nullptr) return reinterpret_cast<CudaModule>(module);
    // A cubin for another GPU: fall back to the PTX below.
    const bool other_gpu = result == 209 || result == 200 || result == 218;
    if (!other_gpu || ptx.empty()) check(result, "cuModuleLoadDataEx (cubin)");
  }
  if (ptx.empty()) {
    throw InternalError("load_module: neither a cubin nor PTX was given");
  }
  CUmodule module = load(ptx, true, result);
  if (module == nullptr) {
    std::string call = "cuModuleLoadDataEx (PTX)";
    if (!jit_log.empty()) call += "; JIT log: " + jit_log;
    check(result, call.c_str());
  }
  return reinterpret_cast<CudaModule>(module);
}

CudaFunction CudaDriver::function(CudaModule module, const std::string& name) const {
  make_current();
  CUfunction function = nullptr;
  CUresult result = api_->ModuleGetFunction(&function, module, name.c_str());
  if (result == 500) {  // NOT_FOUND
    throw InternalError("CUDA module has no function '" + name + "' (CUDA_ERROR_NOT_FOUND)");
  }
  check(result, "cuModuleGetFunction");
  return reinterpret_cast<CudaFunction>(function);
}

int CudaDriver::function_registers(CudaFunction function) const {
  int value = 0;
  check(api_->FuncGetAttribute(&value, kFunctionRegisters, function), "cuFuncGetAttribute");
  return value;
}

int CudaDriver::function_local_bytes(CudaFunction function) const {
  int value = 0;
  check(api_->FuncGetAttribute(&value, kFunctionLocalBytes, function), "cuFuncGetAttribute");
  return value;
}

int CudaDriver::resident_blocks_per_sm(CudaFunction function, int block_size) const {
  make_current();
  int blocks = 0;
  check(api_->OccupancyMaxActiveBlocksPerMultiprocessor(&blocks, function, block_size, 0),
        "cuOccupancyMaxActiveBlocksPerMultiprocessor");
  return blocks;
}

void CudaDriver::launch(CudaFunction function, unsigned grid, unsigned block, void** args) const {
  make_current();
  check(api_->LaunchKernel(function, grid, 1, 1, block, 1, 1, 0, nullptr, args, nullptr),
        "cuLaunchKernel");
}

void CudaDriver::synchronize() const {
  make_current();
  check(api_->CtxSynchronize(), "cuCtxSynchronize");
}

CudaEvent CudaDriver::create_event() const {
  make_current();
  CUevent event = nullptr;
  check(api_->EventCreate(&event, 0), "cuEventCreate");
  return reinterpret_cast<CudaEvent>(event);
}

void CudaDriver::destroy_event(CudaEvent event) const noexcept {
  if (event != nullptr) api_->EventDestroy(event);
}

void CudaDriver::record_event(CudaEvent event) const {
  make_current();
  check(api_->EventRecord(event, nullptr), "cuEventRecord");
}

float CudaDriver::elapsed_ms(CudaEvent start, CudaEvent end) const {
  make_current();
  // cuEventElapsedTime waits for nothing: synchronize on the end event first.
  check(api_->CtxSynchronize(), "cuCtxSynchronize");
  float ms = 0;
  check(api_->EventElapsedTime(&ms, start, end), "cuEventElapsedTime");
  return ms;
}

void* CudaDriver::allocate_host(size_t bytes) const {
  make_current();
  void* pointer = nullptr;
  const CUresult result = api_->MemAllocHost(&pointer, std::max<size_t>(bytes, 1));
  if (result == 2) {
    throw EnvironmentError("out of page-locked host memory allocating " + std::to_string(bytes) +
                           " bytes (cuMemAllocHost: CUDA_ERROR_OUT_OF_MEMORY)");
  }
  check(result, "cuMemAllocHost");
  return pointer;
}

void CudaDriver::free_host(void* pointer) const noexcept {
  if (pointer == nullptr) return;
  api_->CtxSetCurrent(context_);
  api_->MemFreeHost(pointer);
}

void CudaDriver::copy_to_device_async(CudaDevicePtr destination, const void* source,
                                      size_t bytes) const {
  if (bytes == 0) return;
  make_current();
  // Stream 0 is the legacy default stream, the one every launch here uses.
  check(api_->MemcpyHtoDAsync(destination, source, bytes, nullptr), "cuMemcpyHtoDAsync");
}

void CudaDriver::copy_to_host_async(void* destination, CudaDevicePtr source, size_t bytes) const {
  if (bytes == 0) return;
  make_current();
  check(api_->MemcpyDtoHAsync(destination, source, bytes, nullptr), "cuMemcpyDtoHAsync");
}

CudaFence CudaDriver::create_fence() const {
  make_current();
  CUevent event = nullptr;
  constexpr unsigned kDisableTiming = 0x2;  // CU_EVENT_DISABLE_TIMING: cheaper to record
  check(api_->EventCreate(&event, kDisableTiming), "cuEventCreate");
  return reinterpret_cast<CudaFence>(event);
}

void CudaDriver::destroy_fence(CudaFence fence) const noexcept {
  if (fence != nullptr) api_->EventDestroy(reinterpret_cast<CUevent>(fence));
}

void CudaDriver::record_fence(CudaFence fence) const {
  if (fence == nullptr) return;
  make_current();
  check(api_->EventRecord(reinterpret_cast<CUevent>(fence), nullptr), "cuEventRecord");
}

void CudaDriver::wait_fence(CudaFence fence) const {
  if (fence == nullptr) return;
  make_current();
  check(api_->EventSynchronize(reinterpret_cast<CUevent>(fence)), "cuEventSynchronize");
}

// The defaults: plain memory and synchronous copies, for devices whose memory is the host's.
void* CudaDevice::allocate_host(size_t bytes) const {
  void* pointer = std::malloc(std::max<size_t>(bytes, 1));
  if (pointer == nullptr) throw EnvironmentError("out of host memory");
  return pointer;
}

void CudaDevice::free_host(void* pointer) const noexcept { std::free(pointer); }

void CudaDevice::copy_to_device_async(CudaDevicePtr destination, const void* source,
                                      size_t bytes) const {
  copy_to_device(destination, source, bytes);
}

void CudaDevice::copy_to_host_async(void* destination, CudaDevicePtr source, size_t bytes) const {
  copy_to_host(destination, source, bytes);
}

CudaFence CudaDevice::create_fence() const { return nullptr; }
void CudaDevice::destroy_fence(CudaFence) const noexcept {}
void CudaDevice::record_fence(CudaFence) const {}
void CudaDevice::wait_fence(CudaFence) const {}

void CudaDevice::copy_on_device(CudaDevicePtr destination, CudaDevicePtr source,
                                size_t bytes) const {
  if (bytes == 0) return;
  std::vector<unsigned char> staged(bytes);
  copy_to_host(staged.data(), source, bytes);
  copy_to_device(destination, staged.data(), bytes);
}

void CudaDevice::fill_words(CudaDevicePtr destination, uint32_t value, size_t count) const {
  if (count == 0) return;
  const std::vector<uint32_t> words(count, value);
  copy_to_device(destination, words.data(), count * sizeof(uint32_t));
}

void CudaDevice::fill_halves(CudaDevicePtr destination, uint16_t value, size_t count) const {
  if (count == 0) return;
  const std::vector<uint16_t> halves(count, value);
  copy_to_device(destination, halves.data(), count * sizeof(uint16_t));
}

CudaBuffer::CudaBuffer(const CudaDevice& device, size_t bytes)
    : device_(&device), pointer_(device.allocate(bytes)), bytes_(bytes) {}

CudaBuffer::~CudaBuffer() {
  if (device_ != nullptr) device_->free(pointer_);
}

CudaBuffer::CudaBuffer(CudaBuffer&& other) noexcept
    : device_(std::exchange(other.device_, nullptr)),
      pointer_(std::exchange(other.pointer_, 0)),
      bytes_(std::exchange(other.bytes_, 0)) {}

CudaBuffer& CudaBuffer::operator=(CudaBuffer&& other) noexcept {
  if (this != &other) {
    if (device_ != nullptr) device_->free(pointer_);
    device_ = std::exchange(other.device_, nullptr);
    pointer_ = std::exchange(other.pointer_, 0);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

double measure_copy_bandwidth(const CudaDriver& driver, size_t bytes, int repeats) {
  CudaBuffer source(driver, bytes);
  CudaBuffer destination(driver, bytes);
  driver.fill_bytes(source.get(), 1, bytes);
  driver.copy_on_device(destination.get(), source.get(), bytes);  // warm up
  CudaEvent start = driver.create_event();
  CudaEvent end = driver.create_event();
  float best = 0;
  try {
    for (int i = 0; i < std::max(repeats, 1); ++i) {
      driver.record_event(start);
      driver.copy_on_device(destination.get(), source.get(), bytes);
      driver.record_event(end);
      float ms = driver.elapsed_ms(start, end);
      if (i == 0 || ms < best) best = ms;
    }
  } catch (...) {
    driver.destroy_event(start);
    driver.destroy_event(end);
    throw;
  }
  driver.destroy_event(start);
  driver.destroy_event(end);
  return best > 0 ? 2.0 * static_cast<double>(bytes) / (best * 1e-3) : 0.0;
}

}  // namespace fuseopt::runtime
