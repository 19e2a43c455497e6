#include "python/src/arrays.h"

#include <dlpack/dlpack.h>

#include <optional>

#include "support/error.h"

namespace fuseopt::python {
namespace {

std::string type_name(py::handle object) {
  return py::str(py::type::handle_of(object).attr("__name__")).cast<std::string>();
}

// The element type of a buffer-protocol format: numpy spells float32 "f" (native) or
// "<f" / "=f", float16 "e", uint16 "H"; anything else is another type or a byte order this
// machine does not have.
std::optional<ElementType> buffer_element_type(const char* format, Py_ssize_t itemsize) {
  if (format == nullptr) return std::nullopt;  // NULL means unsigned bytes
  std::string f = format;
  if (!f.empty() && (f[0] == '<' || f[0] == '=' || f[0] == '@')) f = f.substr(1);
  if (f == "f" && itemsize == 4) return ElementType::kFloat32;
  if (f == "e" && itemsize == 2) return ElementType::kFloat16;
  if (f == "H" && itemsize == 2) return ElementType::kUInt16;
  return std::nullopt;
}

int element_bytes(ElementType type) { return type == ElementType::kFloat32 ? 4 : 2; }

Borrowed borrow_buffer(py::handle array, bool writable, const std::string& what) {
  // A memoryview holds the exporter's buffer (and so its memory) until it is released.
  PyObject* view_object = PyMemoryView_FromObject(array.ptr());
  if (view_object == nullptr) throw py::error_already_set();
  py::object view = py::reinterpret_steal<py::object>(view_object);
  const Py_buffer* buffer = PyMemoryView_GET_BUFFER(view_object);
  const std::optional<ElementType> type = buffer_element_type(buffer->format, buffer->itemsize);
  if (!type) {
    throw UserError(what + " must hold float32, float16 or bfloat16 values (uint16 for "
                    "bfloat16 bits); this " + type_name(array) + " has format '" +
                    (buffer->format ? buffer->format : "B") + "'");
  }
  if (!PyBuffer_IsContiguous(buffer, 'C')) {
    throw UserError(what + " must be C-contiguous; this " + type_name(array) +
                    " is strided (make a contiguous copy, e.g. numpy.ascontiguousarray)");
  }
  if (writable && buffer->readonly) {
    throw UserError(what + " must be writable; this " + type_name(array) + " is read-only");
  }
  Borrowed result;
  result.data = buffer->buf;
  result.type = *type;
  result.numel = static_cast<int64_t>(buffer->len / element_bytes(*type));
  result.owner = view;
  result.array = py::reinterpret_borrow<py::object>(array);
  return result;
}

std::string device_name(const DLDevice& device) {
  switch (device.device_type) {
    case kDLCPU: return "cpu";
    case kDLCUDA: return "cuda:" + std::to_string(device.device_id);
    case kDLCUDAHost: return "cuda pinned host memory";
    case kDLCUDAManaged: return "cuda managed memory";
    case kDLROCM: return "rocm:" + std::to_string(device.device_id);
    default: return "device type " + std::to_string(static_cast<int>(device.device_type));
  }
}

std::string dtype_name(const DLDataType& type) {
  const char* code = type.code == kDLFloat    ? "float"
                     : type.code == kDLInt    ? "int"
                     : type.code == kDLUInt   ? "uint"
                     : type.code == kDLBfloat ? "bfloat"
                     : type.code == kDLComplex ? "complex"
                                               : "type";
  std::string name = code + std::to_string(type.bits);
  if (type.lanes != 1) name += "x" + std::to_string(type.lanes);
  return name;
}

Borrowed borrow_dlpack(py::handle array, const std::string& what) {
  py::object capsule = array.attr("__dlpack__")();
  if (!PyCapsule_IsValid(capsule.ptr(), "dltensor")) {
    throw UserError(what + ": " + type_name(array) +
                    ".__dlpack__() did not return an unused 'dltensor' capsule");
  }
  // The capsule keeps its name, so its destructor still calls the producer's deleter when
  // the last reference goes: holding the capsule holds the memory.
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule.ptr(), "dltensor"));
  if (managed == nullptr) throw py::error_already_set();
  const DLTensor& tensor = managed->dl_tensor;
  std::optional<ElementType> type;
  if (tensor.dtype.lanes == 1) {
    if (tensor.dtype.code == kDLFloat && tensor.dtype.bits == 32) type = ElementType::kFloat32;
    if (tensor.dtype.code == kDLFloat && tensor.dtype.bits == 16) type = ElementType::kFloat16;
    if (tensor.dtype.code == kDLBfloat && tensor.dtype.bits == 16) type = ElementType::kBFloat16;
    if (tensor.dtype.code == kDLUInt && tensor.dtype.bits == 16) type = ElementType::kUInt16;
  }
  if (!type) {
    throw UserError(what + " must hold float32, float16 or bfloat16 values; this " +
                    type_name(array) + " is " + dtype_name(tensor.dtype));
  }
  int64_t numel = 1;
  int64_t expected_stride = 1;
  bool contiguous = true;
  for (int d = tensor.ndim - 1; d >= 0; --d) {
    const int64_t size = tensor.shape[d];
    if (tensor.strides != nullptr && size != 1 && tensor.strides[d] != expected_stride) {
      contiguous = false;
    }
    expected_stride *= size;
    numel *= size;
  }
  if (!contiguous) {
    throw UserError(what + " must be contiguous; this " + type_name(array) +
                    " is strided (call .contiguous() first)");
  }
  Borrowed result;
  switch (tensor.device.device_type) {
    case kDLCPU:
    case kDLCUDAHost:  // pinned host memory is ordinary host memory to the CPU
      result.kind = MemoryKind::kHost;
      break;
    case kDLCUDA:
      result.kind = MemoryKind::kCuda;
      result.device = tensor.device.device_id;
      break;
    default:
      throw UserError(what + " is on " + device_name(tensor.device) +
                      "; fuseopt takes host memory or CUDA device memory");
  }
  result.data = static_cast<char*>(tensor.data) + tensor.byte_offset;
  result.type = *type;
  result.numel = numel;
  result.owner = capsule;
  result.array = py::reinterpret_borrow<py::object>(array);
  return result;
}

}  // namespace

const char* element_type_name(ElementType type) {
  switch (type) {
    case ElementType::kFloat32: return "float32";
    case ElementType::kFloat16: return "float16";
    case ElementType::kBFloat16: return "bfloat16";
    case ElementType::kUInt16: return "uint16";
  }
  return "float32";
}

void check_element_type(const Borrowed& memory, StorageType storage, const std::string& what) {
  bool ok = false;
  const char* wanted = "float32";
  switch (storage) {
    case StorageType::kF32: ok = memory.type == ElementType::kFloat32; break;
    case StorageType::kF16:
      ok = memory.type == ElementType::kFloat16;
      wanted = "float16";
      break;
    case StorageType::kBF16:
      ok = memory.type == ElementType::kBFloat16 || memory.type == ElementType::kUInt16;
      wanted = "bfloat16 (a torch.bfloat16 tensor, or a uint16 array of bfloat16 bits)";
      break;
  }
  if (!ok) {
    throw UserError(what + " holds " + element_type_name(memory.type) + " values, but the "
                    "kernel stores " + what + " as " + storage_type_name(storage) +
                    ": pass " + wanted + " memory (or compile with storage={'" + what + "': '" +
                    (memory.type == ElementType::kFloat32   ? "f32"
                     : memory.type == ElementType::kFloat16 ? "f16"
                                                            : "bf16") +
                    "'})");
  }
}

Borrowed borrow_array(py::handle array, bool writable, const std::string& what) {
  if (array.is_none()) throw UserError(what + " is None; expected an array");
  // The buffer protocol first: it says whether memory is read-only, which DLPack cannot.
  if (PyObject_CheckBuffer(array.ptr())) return borrow_buffer(array, writable, what);
  if (py::hasattr(array, "__dlpack__")) return borrow_dlpack(array, what);
  throw py::type_error(what + " must be an array that supports the buffer protocol or "
                       "DLPack (numpy.ndarray, torch.Tensor); got " + type_name(array));
}

}  // namespace fuseopt::python
