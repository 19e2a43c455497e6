// Loading CPU kernels. The shared object goes into a sealed memfd and is opened through
// /proc/self/fd, so its bytes are never in a file another process could change; each phase
// is called through Halide's argv entry point with halide_buffer_t descriptors (kept per
// thread between calls, only their addresses and extent change per chunk). HalideRuntime.h
// is included for the structure layouts only: nothing of Halide is linked. Also here: the chunked
// interpreter, the same interface over ir::Interpreter.
#include "runtime/cpu_binary.h"

#include <HalideRuntime.h>
#include <cpuid.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string_view>
#include <utility>

#include "ir/interpreter.h"
#include "support/error.h"
#include "support/low_precision.h"

namespace fuseopt::runtime {
namespace {

// ---- The chunked interpreter ------------------------------------------------------------

class InterpreterPhase final : public PhaseKernel {
 public:
  InterpreterPhase(std::shared_ptr<const ir::Interpreter> interpreter, size_t phase, size_t inputs)
      : interpreter_(std::move(interpreter)), phase_(phase), inputs_(inputs) {
    const ir::Kernel& kernel = interpreter_->kernel();
    std::vector<bool> stored(kernel.buffers.size(), false);
    for (const ir::Store& store : kernel.phases[phase].stores) {
      const int buffer = kernel.buffer_index(store.target);
      if (buffer >= 0) stored[static_cast<size_t>(buffer)] = true;
    }
    for (size_t b = 0; b < kernel.buffers.size(); ++b) {
      if (kernel.buffers[b].storage == StorageType::kF32) continue;
      narrow_.push_back({b, kernel.buffers[b].storage, stored[b]});
    }
  }

  void run(const ChunkArgs& args) const override {
    // f32 -> f64 is exact, so the interpreter sees the very values a compiled kernel gets.
    double small[32];
    std::vector<double> large;
    double* values = small;
    if (inputs_ > std::size(small)) {
      large.resize(inputs_);
      values = large.data();
    }
    for (size_t i = 0; i < inputs_; ++i) values[i] = static_cast<double>(args.scalars[i]);
    const std::span<const double> scalars(values, inputs_);
    const size_t buffer_count = interpreter_->kernel().buffers.size();
    // The interpreter computes on float memory: two-byte buffers are widened (exactly) into
    // per-thread scratch, and the ones the phase stores are narrowed back. The interpreter
    // has already rounded every stored value to the buffer's type, so narrowing is exact.
    thread_local std::vector<float*> pointers;
    thread_local std::vector<std::vector<float>> scratch;
    pointers.resize(buffer_count);
    for (size_t b = 0; b < buffer_count; ++b) pointers[b] = static_cast<float*>(args.buffers[b]);
    if (scratch.size() < narrow_.size()) scratch.resize(narrow_.size());
    const size_t count = static_cast<size_t>(args.count);
    for (size_t k = 0; k < narrow_.size(); ++k) {
      std::vector<float>& wide = scratch[k];
      wide.resize(count);
      const auto* bits = static_cast<const uint16_t*>(args.buffers[narrow_[k].buffer]);
      for (size_t i = 0; i < count; ++i) wide[i] = load_bits(bits[i], narrow_[k].storage);
      pointers[narrow_[k].buffer] = wide.data();
    }
    if (args.rounding_keys != nullptr) {
      interpreter_->run_phase_chunk(phase_, args.count, pointers.data(), scalars, args.partials,
                                    args.first_index,
                                    std::span<const uint32_t>(args.rounding_keys, buffer_count));
    } else {
      interpreter_->run_phase_chunk(phase_, args.count, pointers.data(), scalars, args.partials);
    }
    for (size_t k = 0; k < narrow_.size(); ++k) {
      if (!narrow_[k].stored) continue;
      auto* bits = static_cast<uint16_t*>(args.buffers[narrow_[k].buffer]);
      const std::vector<float>& wide = scratch[k];
      for (size_t i = 0; i < count; ++i) {
        bits[i] = static_cast<uint16_t>(store_bits(wide[i], narrow_[k].storage));
      }
    }
  }

 private:
  struct NarrowBuffer {
    size_t buffer;
    StorageType storage;
    bool stored;  ///< the phase writes it
  };
  std::shared_ptr<const ir::Interpreter> interpreter_;
  size_t phase_;
  size_t inputs_;
  std::vector<NarrowBuffer> narrow_;  ///< the buffers stored in two bytes
};

// ---- Target features --------------------------------------------------------------------

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    const size_t end = text.find(separator, start);
    parts.push_back(text.substr(start, end - start));
    if (end == std::string::npos) return parts;
    start = end + 1;
  }
}

// The CPU features (as __builtin_cpu_supports spells them) each Halide x86 feature needs.
struct FeatureNeed {
  const char* halide;
  std::vector<const char*> cpu;
};

const std::vector<FeatureNeed>& feature_needs() {
  static const std::vector<FeatureNeed> needs = {
      {"sse41", {"sse4.1"}},
      {"avx", {"avx"}},
      {"avx2", {"avx2"}},
      {"fma", {"fma"}},
      {"fma4", {"fma4"}},
      {"f16c", {"f16c"}},
      {"avx512", {"avx512f", "avx512cd"}},
      {"avx512_knl", {"avx512f", "avx512cd", "avx512pf", "avx512er"}},
      {"avx512_skylake", {"avx512f", "avx512cd", "avx512vl", "avx512bw", "avx512dq"}},
      {"avx512_cannonlake",
       {"avx512f", "avx512cd", "avx512vl", "avx512bw", "avx512dq", "avx512ifma", "avx512vbmi"}},
      {"avx512_sapphirerapids",
       {"avx512f", "avx512cd", "avx512vl", "avx512bw", "avx512dq", "avx512ifma", "avx512vbmi",
        "avx512vnni", "avx512bf16"}},
  };
  return needs;
}

// __builtin_cpu_supports takes only string literals, hence the table. clang 14 does not
// know "f16c": that one comes from CPUID (leaf 1, ECX bit 29), valid only with AVX.
bool cpu_supports(std::string_view feature) {
  __builtin_cpu_init();
  if (feature == "f16c") {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __builtin_cpu_supports("avx") && __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 &&
           (ecx & bit_F16C) != 0;
  }
#define FUSEOPT_CPU(name) \
  if (feature == name) return __builtin_cpu_supports(name);
  FUSEOPT_CPU("sse4.1")
  FUSEOPT_CPU("avx")
  FUSEOPT_CPU("avx2")
  FUSEOPT_CPU("fma")
  FUSEOPT_CPU("fma4")
  FUSEOPT_CPU("avx512f")
  FUSEOPT_CPU("avx512cd")
  FUSEOPT_CPU("avx512pf")
  FUSEOPT_CPU("avx512er")
  FUSEOPT_CPU("avx512vl")
  FUSEOPT_CPU("avx512bw")
  FUSEOPT_CPU("avx512dq")
  FUSEOPT_CPU("avx512ifma")
  FUSEOPT_CPU("avx512vbmi")
  FUSEOPT_CPU("avx512vnni")
  FUSEOPT_CPU("avx512bf16")
#undef FUSEOPT_CPU
  FUSEOPT_UNREACHABLE("cpu_supports: no check for '" + std::string(feature) + "'");
}

}  // namespace

void check_cpu_target(const std::string& target) {
  if (target == "host") return;
  const std::vector<std::string> parts = split(target, '-');
  if (parts.size() < 3 || parts[0] != "x86" || parts[1] != "64") {
    throw EnvironmentError("the CPU kernel was compiled for target '" + target +
                           "', which this x86-64 machine cannot run; recompile it for this "
                           "machine (target \"host\")");
  }
  if (parts[2] != "linux") {
    throw EnvironmentError("the CPU kernel was compiled for target '" + target +
                           "' (operating system '" + parts[2] + "'); this machine runs Linux");
  }
  for (size_t i = 3; i < parts.size(); ++i) {
    for (const FeatureNeed& need : feature_needs()) {
      if (parts[i] != need.halide) continue;
      for (const char* cpu : need.cpu) {
        if (!cpu_supports(cpu)) {
          throw EnvironmentError("the CPU kernel was compiled for target '" + target +
                                 "', which needs the CPU feature " + cpu + " (for '" + need.halide +
                                 "'); this machine lacks it. Recompile for this "
                                 "machine (target \"host\") or use a pack's binary for a lower "
                                 "x86-64 level");
        }
      }
    }
  }
}

namespace {

// ---- Loading shared objects -------------------------------------------------------------

// The dynamic loader finds an already loaded object by the path it was opened with, before
// looking at the file, so two kernels must never be opened under one path while the first
// is loaded: a memfd stays open (its /proc/self/fd/N name reserved) until its object is
// unloaded, and a path some other object still holds is never used.
bool is_path_taken(const std::string& path) {
  void* existing = dlopen(path.c_str(), RTLD_LAZY | RTLD_NOLOAD);
  if (existing == nullptr) return false;
  dlclose(existing);
  return true;
}

// One dlopen'ed object; closed when the last phase using it is gone.
class SharedObject {
 public:
  SharedObject(void* handle, std::string path, int fd)
      : handle_(handle), path_(std::move(path)), fd_(fd) {}
  ~SharedObject() {
    dlclose(handle_);
    // An object the loader keeps (it may pin itself) keeps its memfd, and so its name.
    if (fd_ >= 0 && !is_path_taken(path_)) close(fd_);
  }
  SharedObject(const SharedObject&) = delete;
  SharedObject& operator=(const SharedObject&) = delete;
  void* symbol(const std::string& name) const { return dlsym(handle_, name.c_str()); }

 private:
  void* handle_;
  std::string path_;
  int fd_;  ///< the memfd, or -1
};

bool write_all(int fd, const std::string& bytes) {
  size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    written += static_cast<size_t>(n);
  }
  return true;
}

std::string last_dl_error() {
  const char* error = dlerror();
  return error != nullptr ? error : "unknown error";
}

// dlopen from a sealed memfd; null (with `error` set, and `unavailable` when memfds or /proc
// are missing here) when that fails.
std::shared_ptr<SharedObject> open_from_memfd(const std::string& bytes, std::string& error,
                                              bool& unavailable) {
  int fd = memfd_create("fuseopt-cpu-kernel", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    unavailable = true;
    error = std::string("memfd_create: ") + std::strerror(errno);
    return nullptr;
  }
  if (!write_all(fd, bytes)) {
    error = std::string("writing the memfd: ") + std::strerror(errno);
    unavailable = true;
    close(fd);
    return nullptr;
  }
  // Nothing can change the bytes from now on, not even through this descriptor.
  fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
  std::string path = "/proc/self/fd/" + std::to_string(fd);
  while (is_path_taken(path)) {
    const int other = fcntl(fd, F_DUPFD_CLOEXEC, fd + 1);
    close(fd);
    if (other < 0) {
      error = std::string("duplicating the memfd: ") + std::strerror(errno);
      return nullptr;
    }
    fd = other;
    path = "/proc/self/fd/" + std::to_string(fd);
  }
  if (access(path.c_str(), R_OK) != 0) {
    unavailable = true;  // no /proc
    error = path + ": " + std::strerror(errno);
    close(fd);
    return nullptr;
  }
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    error = last_dl_error();
    close(fd);
    return nullptr;
  }
  return std::make_shared<SharedObject>(handle, path, fd);
}

// dlopen from a file in a fresh private (0700) directory, removed straight after.
std::shared_ptr<SharedObject> open_from_private_file(const std::string& bytes, std::string& error) {
  const char* tmp = std::getenv("TMPDIR");
  const std::string pattern =
      std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/fuseopt-kernel-XXXXXX";
  std::string dir;
  std::string path;
  do {
    if (!dir.empty()) rmdir(dir.c_str());
    dir = pattern;
    if (mkdtemp(dir.data()) == nullptr) {
      throw EnvironmentError(
          "cannot load a CPU kernel: memfd_create is unavailable and no "
          "private directory could be made from '" +
          pattern + "': " + std::strerror(errno));
    }
    path = dir + "/kernel.so";
  } while (is_path_taken(path));
  void* handle = nullptr;
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
  if (fd >= 0) {
    const bool written = write_all(fd, bytes);
    close(fd);
    if (written) {
      handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (handle == nullptr) error = last_dl_error();
    } else {
      error = std::string("writing '") + path + "': " + std::strerror(errno);
    }
  } else {
    error = std::string("creating '") + path + "': " + std::strerror(errno);
  }
  unlink(path.c_str());
  rmdir(dir.c_str());
  if (handle == nullptr) return nullptr;
  return std::make_shared<SharedObject>(handle, path, -1);
}

std::shared_ptr<SharedObject> open_shared_object(const CpuBinary& binary) {
  const std::string& bytes = binary.shared_object;
  if (bytes.size() < 4 || bytes.compare(0, 4,
                                        "\x7f"
                                        "ELF") != 0) {
    throw UserError("CPU kernel '" + binary.name +
                    "' is damaged: its shared object is not an "
                    "ELF file");
  }
  std::string error;
  bool unavailable = false;
  std::shared_ptr<SharedObject> object = open_from_memfd(bytes, error, unavailable);
  if (object == nullptr && unavailable) object = open_from_private_file(bytes, error);
  if (object == nullptr) {
    throw UserError("CPU kernel '" + binary.name +
                    "' cannot be loaded (damaged or built for "
                    "another system): " +
                    error);
  }
  return object;
}

// ---- Calling Halide phases --------------------------------------------------------------

using LastErrorFunction = const char* (*)();

using ArgvFunction = int (*)(void**);

class HalidePhase final : public PhaseKernel {
 public:
  // `storage`: each buffer's storage type; `stochastic`: the buffers the phase stores with
  // stochastic rounding, in buffer order (each takes its rounding key, after the first
  // index; codegen/halide/cpu_codegen.h).
  HalidePhase(std::shared_ptr<SharedObject> object, ArgvFunction entry,
              LastErrorFunction last_error, std::string function, std::vector<StorageType> storage,
              size_t inputs, std::vector<size_t> stores, std::vector<size_t> stochastic,
              size_t reductions)
      : object_(std::move(object)),
        entry_(entry),
        last_error_(last_error),
        function_(std::move(function)),
        storage_(std::move(storage)),
        buffers_(storage_.size()),
        inputs_(inputs),
        stores_(std::move(stores)),
        stochastic_(std::move(stochastic)),
        reductions_(reductions) {}

  size_t argument_count() const {
    const size_t rounding = stochastic_.empty() ? 0 : 1 + stochastic_.size();
    return buffers_ + inputs_ + rounding + stores_.size() + reductions_;
  }

  void run(const ChunkArgs& args) const override {
    FUSEOPT_CHECK(args.count > 0 && args.count <= std::numeric_limits<int32_t>::max(),
                  "CPU kernel: bad chunk size " + std::to_string(args.count));
    // The descriptors of a thread's last phase are kept: a run of calls to one phase (every
    // chunk of a step) only changes the addresses, the extent and the scalar pointers, not
    // the whole argument list (a cost paid per call, that is per small tensor).
    thread_local Arguments a;
    if (a.owner != id_) prepare(a);
    a.dim.extent = static_cast<int32_t>(args.count);
    size_t arg = 0;
    size_t d = 0;
    auto point = [&](void* data) {
      halide_buffer_t& b = a.descriptors[d++];
      b.host = reinterpret_cast<uint8_t*>(data);
      b.flags = 0;  // the pipeline may mark outputs dirty; nothing here reads that
      a.argv[arg++] = &b;
    };
    for (size_t i = 0; i < buffers_; ++i) point(args.buffers[i]);
    for (size_t i = 0; i < inputs_; ++i) a.argv[arg++] = const_cast<float*>(&args.scalars[i]);
    if (!stochastic_.empty()) {
      FUSEOPT_CHECK(args.rounding_keys != nullptr, "CPU kernel function '" + function_ +
                                                       "' rounds stochastically but got no "
                                                       "rounding keys");
      a.argv[arg++] = const_cast<int64_t*>(&args.first_index);
      for (size_t b : stochastic_) a.argv[arg++] = const_cast<uint32_t*>(&args.rounding_keys[b]);
    }
    for (size_t store : stores_) point(args.buffers[store]);
    for (size_t r = 0; r < reductions_; ++r) {
      halide_buffer_t& b = a.descriptors[d++];
      b.host = reinterpret_cast<uint8_t*>(&args.partials[r]);
      b.flags = 0;
      a.argv[arg++] = &b;
    }
    const int result = entry_(a.argv.data());
    if (result != 0) {
      const char* text = last_error_ != nullptr ? last_error_() : nullptr;
      std::string message = text != nullptr ? text : "";
      while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) {
        message.pop_back();
      }
      throw InternalError("CPU kernel function '" + function_ + "' failed with Halide error " +
                          std::to_string(result) +
                          (message.empty() ? std::string() : ": " + message));
    }
  }

 private:
  // One thread's argument list for one phase: Halide descriptors for the buffers (vectors of
  // one dimension sharing `dim`, typed float32 or uint16 by storage) and reduction outputs
  // (0-dimensional f64), and argv.
  struct Arguments {
    uint64_t owner = 0;  ///< the id_ of the phase these were prepared for; 0: none
    halide_dimension_t dim{0, 0, 1};
    std::vector<halide_buffer_t> descriptors;
    std::vector<void*> argv;
  };

  void prepare(Arguments& a) const {
    const halide_type_t f32(halide_type_float, 32);
    const halide_type_t bits16(halide_type_uint, 16);
    const halide_type_t f64(halide_type_float, 64);
    // A pipeline checks each buffer's type, so a kernel run with the wrong storage fails
    // with Halide's error rather than misreading memory.
    auto buffer_type = [&](size_t buffer) {
      return storage_[buffer] == StorageType::kF32 ? f32 : bits16;
    };
    a.dim = halide_dimension_t(0, 0, 1);
    a.descriptors.assign(buffers_ + stores_.size() + reductions_, halide_buffer_t{});
    a.argv.assign(argument_count(), nullptr);
    for (size_t d = 0; d < a.descriptors.size(); ++d) {
      halide_buffer_t& b = a.descriptors[d];
      if (d < buffers_ + stores_.size()) {
        b.type = buffer_type(d < buffers_ ? d : stores_[d - buffers_]);
        b.dimensions = 1;
        b.dim = &a.dim;
      } else {
        b.type = f64;
        b.dimensions = 0;
        b.dim = nullptr;
      }
    }
    a.owner = id_;
  }

  static uint64_t next_id() {
    static std::atomic<uint64_t> next{1};
    return next.fetch_add(1);
  }

  uint64_t id_ = next_id();  ///< unique in the process, unlike an address
  std::shared_ptr<SharedObject> object_;
  ArgvFunction entry_;
  LastErrorFunction last_error_;  ///< null when the object does not export it
  std::string function_;
  std::vector<StorageType> storage_;  ///< per buffer
  size_t buffers_;
  size_t inputs_;
  std::vector<size_t> stores_;      ///< the buffer each store writes, in store order
  std::vector<size_t> stochastic_;  ///< buffers stored stochastically, in buffer order
  size_t reductions_;
};

}  // namespace

std::shared_ptr<const CompiledKernel> load_cpu_kernel(ir::Kernel kernel, const CpuBinary& binary) {
  if (binary.phase_functions.size() != kernel.phases.size()) {
    throw UserError("CPU kernel '" + binary.name + "' has " +
                    std::to_string(binary.phase_functions.size()) +
                    " phase functions, but its "
                    "kernel has " +
                    std::to_string(kernel.phases.size()) + " phases");
  }
  if (binary.chunk_elements <= 0 || binary.chunk_elements > std::numeric_limits<int32_t>::max()) {
    throw UserError("CPU kernel '" + binary.name + "' has a bad chunk size (" +
                    std::to_string(binary.chunk_elements) + ")");
  }
  check_cpu_target(binary.target);
  std::shared_ptr<SharedObject> object = open_shared_object(binary);

  auto last_error = reinterpret_cast<LastErrorFunction>(object->symbol(kCpuLastErrorSymbol));

  auto compiled = std::make_shared<CompiledKernel>();
  for (size_t p = 0; p < kernel.phases.size(); ++p) {
    const ir::Phase& phase = kernel.phases[p];
    const std::string& function = binary.phase_functions[p];
    auto entry = reinterpret_cast<ArgvFunction>(object->symbol(function));
    if (entry == nullptr) {
      throw UserError("CPU kernel '" + binary.name + "' is damaged: it has no function '" +
                      function + "'");
    }
    std::vector<size_t> stores;
    std::vector<bool> stored_stochastically(kernel.buffers.size(), false);
    for (const ir::Store& store : phase.stores) {
      const int buffer = kernel.buffer_index(store.target);
      FUSEOPT_CHECK(buffer >= 0, "store to unknown buffer '" + store.target + "'");
      stores.push_back(static_cast<size_t>(buffer));
      const ir::BufferDecl& decl = kernel.buffers[static_cast<size_t>(buffer)];
      if (decl.stochastic && decl.storage != StorageType::kF32) {
        stored_stochastically[static_cast<size_t>(buffer)] = true;
      }
    }
    // The same list as codegen::stochastic_store_buffers() (the runtime does not include
    // codegen's headers): the phase's stochastic stores, in buffer order.
    std::vector<size_t> stochastic;
    std::vector<StorageType> storage;
    for (size_t b = 0; b < kernel.buffers.size(); ++b) {
      if (stored_stochastically[b]) stochastic.push_back(b);
      storage.push_back(kernel.buffers[b].storage);
    }
    auto code =
        std::make_shared<HalidePhase>(object, entry, last_error, function, std::move(storage),
                                      ir::phase_scalar_inputs(phase).size(), std::move(stores),
                                      std::move(stochastic), phase.reductions.size());
    // Halide's metadata (when exported) says how many arguments the function takes: a
    // mismatch means the object was built for another calling convention.
    const std::string base =
        function.size() > 5 && function.compare(function.size() - 5, 5, "_argv") == 0
            ? function.substr(0, function.size() - 5)
            : function;
    using MetadataFunction = const halide_filter_metadata_t* (*)();
    if (auto metadata = reinterpret_cast<MetadataFunction>(object->symbol(base + "_metadata"))) {
      const halide_filter_metadata_t* m = metadata();
      if (m != nullptr && static_cast<size_t>(m->num_arguments) != code->argument_count()) {
        throw UserError("CPU kernel '" + binary.name + "' does not match its IR: function '" +
                        function + "' takes " + std::to_string(m->num_arguments) +
                        " arguments, the calling convention gives " +
                        std::to_string(code->argument_count()));
      }
    }
    compiled->phases.push_back(std::move(code));
  }
  compiled->ir = std::move(kernel);
  compiled->backend = "cpu";
  compiled->name = binary.name;
  compiled->chunk_elements = binary.chunk_elements;
  return compiled;
}

std::shared_ptr<const CompiledKernel> make_interpreter_kernel(ir::Kernel kernel,
                                                              int64_t chunk_elements) {
  if (chunk_elements <= 0 || chunk_elements > std::numeric_limits<int32_t>::max()) {
    throw UserError("the chunk size must be between 1 and 2^31-1 elements, not " +
                    std::to_string(chunk_elements));
  }
  auto interpreter = std::make_shared<const ir::Interpreter>(kernel);
  auto compiled = std::make_shared<CompiledKernel>();
  for (size_t p = 0; p < kernel.phases.size(); ++p) {
    compiled->phases.push_back(std::make_shared<InterpreterPhase>(
        interpreter, p, ir::phase_scalar_inputs(kernel.phases[p]).size()));
  }
  compiled->name = kernel.config_name() + "_interp_c" + std::to_string(chunk_elements);
  compiled->ir = std::move(kernel);
  compiled->backend = "interp";
  compiled->chunk_elements = chunk_elements;
  return compiled;
}

}  // namespace fuseopt::runtime
