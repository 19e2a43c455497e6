// Borrowing the memory of Python arrays without copying it: the buffer protocol (NumPy,
// array.array, memoryview) and DLPack (torch.Tensor on the CPU or a CUDA device, NumPy).
// A Borrowed keeps the objects that own the memory alive for as long as it exists.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

namespace fuseopt::python {

namespace py = pybind11;

/// Where borrowed memory lives.
enum class MemoryKind { kHost, kCuda };

struct Borrowed {
  float* data = nullptr;
  int64_t numel = 0;
  MemoryKind kind = MemoryKind::kHost;
  int device = 0;  ///< the CUDA device ordinal, for kCuda
  /// Whatever keeps `data` valid: the memoryview or DLPack capsule, and the array itself.
  py::object owner;
  py::object array;
};

/// Borrows the memory of `array`, which must be a C-contiguous float32 array. `what` names
/// the argument in messages ("param", "grad"). `writable`: the caller writes the memory (a
/// read-only buffer is then a UserError). Anything else - another dtype, strides, an object
/// that is no array - is a UserError saying what was wrong, never a silent copy.
Borrowed borrow_array(py::handle array, bool writable, const std::string& what);

}  // namespace fuseopt::python
