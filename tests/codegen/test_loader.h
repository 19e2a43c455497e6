// A test-only loader and step driver for CPU shared objects from codegen/halide: opens the
// object from memory, fills halide_buffer_t structs as the calling convention in
// codegen/halide/cpu_codegen.h says, and runs a step the way the runtime does (host
// prologue in f64, chunks in order, partials combined in chunk order). Independent of
// runtime/, so the backend is tested on its own.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "codegen/halide/cpu_codegen.h"
#include "ir/interpreter.h"
#include "ir/kernel.h"

namespace fuseopt::codegen::testing {

/// A shared object loaded from its bytes (through a memfd), unloaded on destruction.
class LoadedObject {
 public:
  using ArgvFunction = int (*)(void**);

  explicit LoadedObject(const HalideCpuBinary& binary);
  ~LoadedObject();
  LoadedObject(const LoadedObject&) = delete;
  LoadedObject& operator=(const LoadedObject&) = delete;

  ArgvFunction phase(size_t k) const { return phases_.at(k); }
  /// The calling thread's last Halide error message in this object.
  std::string last_error() const;
  void* symbol(const std::string& name) const;

 private:
  void* handle_ = nullptr;
  int fd_ = -1;
  std::vector<ArgvFunction> phases_;
};

/// Calls phase `k` on one chunk: `buffers` point at the chunk's first element (one per
/// Kernel::buffers entry), `scalars` follow ir::phase_scalar_inputs, `partials` receives
/// one value per reduction. `extents` overrides each buffer's extent (for error tests).
int call_phase(const LoadedObject& object, const ir::Kernel& kernel, size_t k, int64_t count,
               const std::vector<float*>& buffers, const std::vector<float>& scalars,
               std::vector<double>& partials, const std::vector<int64_t>& extents = {});

/// Runs step `t` over `tensor` with the compiled phases, chunk by chunk.
void step_compiled(const LoadedObject& object, const ir::Kernel& kernel, int64_t chunk,
                   ir::TensorArgs& tensor, std::span<const double> hypers, int64_t t);

/// A float buffer whose first element sits 4 bytes past a 64-byte boundary, so no vector
/// load or store can assume alignment.
class MisalignedBuffer {
 public:
  explicit MisalignedBuffer(int64_t count);
  float* data() { return data_; }
  const float* data() const { return data_; }
  int64_t size() const { return count_; }

 private:
  std::vector<float> storage_;
  float* data_ = nullptr;
  int64_t count_ = 0;
};

}  // namespace fuseopt::codegen::testing
