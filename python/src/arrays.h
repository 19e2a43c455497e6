// Borrowing the memory of Python arrays without copying it: the buffer protocol (NumPy,
// array.array, memoryview) and DLPack (torch.Tensor on the CPU or a CUDA device, NumPy).
// A Borrowed keeps the objects that own the memory alive for as long as it exists.
// Element types: float32, float16 and bfloat16 (the storage types of docs/mixed-precision.md);
// NumPy has no bfloat16, so a uint16 array is taken as bfloat16 bits where a kernel stores
// bf16 (check_element_type()).
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "support/low_precision.h"

namespace fuseopt::python {

namespace py = pybind11;

/// Where borrowed memory lives.
enum class MemoryKind { kHost, kCuda };

/// The element type of borrowed memory, as the array declares it.
enum class ElementType {
  kFloat32,
  kFloat16,
  kBFloat16,
  kUInt16,  ///< raw 16-bit words: taken as bfloat16 bits (NumPy has no bfloat16)
};

/// "float32", "float16", "bfloat16", "uint16".
const char* element_type_name(ElementType type);

struct Borrowed {
  void* data = nullptr;
  ElementType type = ElementType::kFloat32;
  int64_t numel = 0;
  MemoryKind kind = MemoryKind::kHost;
  int device = 0;  ///< the CUDA device ordinal, for kCuda
  /// Whatever keeps `data` valid: the memoryview or DLPack capsule, and the array itself.
  py::object owner;
  py::object array;
};

/// Borrows the memory of `array`, which must be a C-contiguous array of float32, float16,
/// bfloat16 or uint16 elements. `what` names the argument in messages ("param", "grad").
/// `writable`: the caller writes the memory (a read-only buffer is then a UserError).
/// Anything else - another dtype, strides, an object that is no array - is a UserError saying
/// what was wrong, never a silent copy.
Borrowed borrow_array(py::handle array, bool writable, const std::string& what);

/// Checks that borrowed memory holds elements of `storage`: float32 for f32, float16 for
/// f16, bfloat16 or uint16 (its bits) for bf16. A UserError naming both types otherwise.
void check_element_type(const Borrowed& memory, StorageType storage, const std::string& what);

}  // namespace fuseopt::python
