#include "runtime/cuda/tensor_table.h"

#include <cstddef>
#include <cstring>
#include <limits>

#include "support/error.h"

namespace fuseopt::runtime {
namespace {

struct Field {
  const char* name;
  const char* type;
  size_t offset;
  size_t count;  // 0: not an array
};

std::string describe(const char* name, const std::vector<Field>& fields, size_t size) {
  std::string out = std::string(name) + "{";
  for (size_t i = 0; i < fields.size(); ++i) {
    const Field& f = fields[i];
    out += (i ? "," : "") + std::string(f.name) + ":" + f.type;
    if (f.count > 0) out += "[" + std::to_string(f.count) + "]";
    out += "@" + std::to_string(f.offset);
  }
  return out + "}=" + std::to_string(size);
}

}  // namespace

size_t cuda_tensor_entry_bytes(size_t buffer_count) {
  return sizeof(int64_t) + buffer_count * sizeof(uint64_t);
}

size_t cuda_chunk_entry_bytes(size_t buffer_count) {
  return sizeof(CudaChunk) + buffer_count * sizeof(uint64_t);
}

// Spelled from the host structures' real offsets, so a change to them shows up as a
// mismatch with the generated code's layout.
std::string cuda_tensor_table_layout(size_t buffer_count) {
  std::string out = "v1 ";
  out += describe("table",
                  {{"tensors_offset", "i64", offsetof(CudaTableHeader, tensors_offset), 0},
                   {"chunks_offset", "i64", offsetof(CudaTableHeader, chunks_offset), 0},
                   {"tensor_count", "i64", offsetof(CudaTableHeader, tensor_count), 0},
                   {"chunk_count", "i64", offsetof(CudaTableHeader, chunk_count), 0}},
                  sizeof(CudaTableHeader));
  out += " " + describe("tensor",
                        {{"numel", "i64", 0, 0}, {"buffers", "ptr", sizeof(int64_t), buffer_count}},
                        cuda_tensor_entry_bytes(buffer_count));
  out += " " + describe("chunk",
                        {{"tensor", "u32", offsetof(CudaChunk, tensor), 0},
                         {"count", "u32", offsetof(CudaChunk, count), 0},
                         {"start", "i64", offsetof(CudaChunk, start), 0},
                         {"buffers", "ptr", sizeof(CudaChunk), buffer_count}},
                        cuda_chunk_entry_bytes(buffer_count));
  out +=
      " scalars:f32[tensor*stride+i] partials:f64[chunk*reductions+r] keys:u32[tensor*buffers+b] "
      "gate:f64[4]";
  return out;
}

std::vector<CudaChunk> make_chunk_map(std::span<const int64_t> numels, int64_t chunk_elements) {
  FUSEOPT_CHECK(chunk_elements > 0 && chunk_elements <= std::numeric_limits<uint32_t>::max(),
                "chunk size out of range: " + std::to_string(chunk_elements));
  FUSEOPT_CHECK(numels.size() <= std::numeric_limits<uint32_t>::max(), "too many tensors");
  std::vector<CudaChunk> chunks;
  for (size_t t = 0; t < numels.size(); ++t) {
    if (numels[t] < 0) {
      throw UserError("tensor " + std::to_string(t) + " has a negative size (" +
                      std::to_string(numels[t]) + ")");
    }
    for (int64_t start = 0; start < numels[t]; start += chunk_elements) {
      const int64_t count = std::min(chunk_elements, numels[t] - start);
      chunks.push_back({static_cast<uint32_t>(t), static_cast<uint32_t>(count), start});
    }
  }
  if (chunks.size() > std::numeric_limits<uint32_t>::max()) {
    throw UserError("the group needs " + std::to_string(chunks.size()) +
                    " chunks; the CUDA backend takes at most 2^32 - 1 (use larger chunks)");
  }
  return chunks;
}

CudaTensorTable build_tensor_table(size_t tensor_count, const int64_t* numels, void* const* buffers,
                                   std::span<const int> element_bytes, int64_t chunk_elements) {
  FUSEOPT_CHECK(tensor_count == 0 || (numels != nullptr && buffers != nullptr),
                "build_tensor_table: null arrays");
  const size_t buffer_count = element_bytes.size();
  for (int bytes : element_bytes) {
    FUSEOPT_CHECK(bytes == 4 || bytes == 2,
                  "build_tensor_table: elements of " + std::to_string(bytes) + " bytes");
  }
  CudaTensorTable table;
  table.tensor_count = tensor_count;
  table.buffer_count = buffer_count;
  std::span<const int64_t> sizes(numels, tensor_count);
  table.chunks = make_chunk_map(sizes, chunk_elements);
  table.first_chunk.assign(tensor_count + 1, table.chunks.size());
  for (size_t c = table.chunks.size(); c-- > 0;) table.first_chunk[table.chunks[c].tensor] = c;
  // Empty tensors start where the next tensor does, so [first, next first) is empty.
  for (size_t t = tensor_count; t-- > 0;) {
    if (sizes[t] == 0) table.first_chunk[t] = table.first_chunk[t + 1];
  }

  const size_t entry = cuda_tensor_entry_bytes(buffer_count);
  CudaTableHeader header;
  header.tensors_offset = static_cast<int64_t>(sizeof(CudaTableHeader));
  header.chunks_offset = header.tensors_offset + static_cast<int64_t>(entry * tensor_count);
  header.tensor_count = static_cast<int64_t>(tensor_count);
  header.chunk_count = static_cast<int64_t>(table.chunks.size());
  const size_t chunk_entry = cuda_chunk_entry_bytes(buffer_count);
  const size_t total =
      static_cast<size_t>(header.chunks_offset) + table.chunks.size() * chunk_entry;
  table.words.assign((total + sizeof(uint64_t) - 1) / sizeof(uint64_t), 0);
  auto* bytes = reinterpret_cast<unsigned char*>(table.words.data());
  std::memcpy(bytes, &header, sizeof(header));
  for (size_t t = 0; t < tensor_count; ++t) {
    unsigned char* at = bytes + header.tensors_offset + t * entry;
    std::memcpy(at, &numels[t], sizeof(int64_t));
    for (size_t b = 0; b < buffer_count; ++b) {
      const void* pointer = buffers[t * buffer_count + b];
      const auto address = reinterpret_cast<uint64_t>(pointer);
      if (numels[t] > 0 && pointer == nullptr) {
        throw UserError("tensor " + std::to_string(t) + ": buffer " + std::to_string(b) +
                        " is null");
      }
      const auto size = static_cast<uint64_t>(element_bytes[b]);
      if (address % size != 0) {
        throw UserError("tensor " + std::to_string(t) + ": buffer " + std::to_string(b) +
                        " is not " + std::to_string(size) + "-byte aligned");
      }
      std::memcpy(at + sizeof(int64_t) + b * sizeof(uint64_t), &address, sizeof(address));
    }
  }
  for (size_t c = 0; c < table.chunks.size(); ++c) {
    const CudaChunk& chunk = table.chunks[c];
    unsigned char* at = bytes + header.chunks_offset + c * chunk_entry;
    std::memcpy(at, &chunk, sizeof(chunk));
    for (size_t b = 0; b < buffer_count; ++b) {
      const uint64_t address =
          reinterpret_cast<uint64_t>(buffers[chunk.tensor * buffer_count + b]) +
          static_cast<uint64_t>(chunk.start) * static_cast<uint64_t>(element_bytes[b]);
      std::memcpy(at + sizeof(CudaChunk) + b * sizeof(uint64_t), &address, sizeof(address));
    }
  }
  return table;
}

}  // namespace fuseopt::runtime
