// The device tensor table of a CUDA group: a header, one entry per tensor (element count and
// buffer pointers) and the chunk map that one launch strides over. Built on the host and
// uploaded when the group changes, not every step. The generated kernels declare the same
// layout (codegen/cuda/cuda_source.h); cuda_tensor_table_layout() spells it so the two can
// be compared.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace fuseopt::runtime {

/// The table's first bytes. Offsets are from the table's start.
struct CudaTableHeader {
  int64_t tensors_offset = 0;
  int64_t chunks_offset = 0;
  int64_t tensor_count = 0;
  int64_t chunk_count = 0;
};

/// `count` elements of tensor `tensor`, from element `start`. In the device table each
/// chunk is followed by its buffers' addresses (the tensor's, plus `start` elements), so a
/// kernel reads one entry per chunk.
struct CudaChunk {
  uint32_t tensor = 0;
  uint32_t count = 0;
  int64_t start = 0;
};

/// The layout, as codegen::cuda_table_layout() spells it for `buffer_count` buffers.
std::string cuda_tensor_table_layout(size_t buffer_count);

/// Bytes of one tensor entry: its element count, then one pointer per buffer.
size_t cuda_tensor_entry_bytes(size_t buffer_count);
/// Bytes of one chunk entry in the device table: a CudaChunk, then one pointer per buffer.
size_t cuda_chunk_entry_bytes(size_t buffer_count);

/// Cuts each tensor into chunks of `chunk_elements` elements (its last one shorter), tensor
/// after tensor; empty tensors get none. Chunks of one tensor are consecutive and in order,
/// which is the order their reduction partials are combined in.
std::vector<CudaChunk> make_chunk_map(std::span<const int64_t> numels, int64_t chunk_elements);

/// A table ready to upload.
struct CudaTensorTable {
  std::vector<uint64_t> words;      ///< the table's bytes, 8-byte aligned
  std::vector<CudaChunk> chunks;    ///< the chunk map (the table adds the addresses)
  std::vector<size_t> first_chunk;  ///< per tensor, its first chunk; tensor_count + 1 entries
  size_t tensor_count = 0;
  size_t buffer_count = 0;

  size_t bytes() const { return words.size() * sizeof(uint64_t); }
};

/// Builds the table of `tensor_count` tensors with `element_bytes.size()` buffers each, buffer
/// b holding elements of element_bytes[b] bytes (4 for f32, 2 for bf16 and f16; see
/// runtime::buffer_element_bytes()); `buffers` is tensor-major (tensor_count x buffer count
/// device addresses). A chunk's addresses are its tensor's plus `start` elements of each
/// buffer's size. Throws UserError for a negative size, a null buffer of a non-empty tensor,
/// a buffer not aligned to its element size, or a group too large for 32-bit chunk and tensor
/// indices. (Vector alignment is the kernel's test, per chunk: see codegen/cuda.)
CudaTensorTable build_tensor_table(size_t tensor_count, const int64_t* numels, void* const* buffers,
                                   std::span<const int> element_bytes, int64_t chunk_elements);

}  // namespace fuseopt::runtime
