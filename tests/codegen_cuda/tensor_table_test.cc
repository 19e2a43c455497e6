// The device tensor table, built and read back on the host: chunk map, header, tensor
// entries, chunk addresses for four- and two-byte buffers, the per-tensor chunk ranges that
// partials are combined over, and input errors.
#include "runtime/cuda/tensor_table.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "support/error.h"

namespace fuseopt::runtime {
namespace {

TEST(ChunkMap, SizesAroundTheChunkSize) {
  const int64_t c = 1024;
  const std::vector<int64_t> numels = {0, 1, c - 1, c, c + 1, 2 * c + 3, 0};
  const std::vector<CudaChunk> chunks = make_chunk_map(numels, c);
  struct Expected {
    uint32_t tensor;
    uint32_t count;
    int64_t start;
  };
  const std::vector<Expected> expected = {
      {1, 1, 0},    {2, 1023, 0}, {3, 1024, 0},    {4, 1024, 0},
      {4, 1, 1024}, {5, 1024, 0}, {5, 1024, 1024}, {5, 3, 2048},
  };
  ASSERT_EQ(chunks.size(), expected.size());
  for (size_t i = 0; i < chunks.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(chunks[i].tensor, expected[i].tensor);
    EXPECT_EQ(chunks[i].count, expected[i].count);
    EXPECT_EQ(chunks[i].start, expected[i].start);
  }
  EXPECT_TRUE(make_chunk_map(std::vector<int64_t>{}, c).empty());
  EXPECT_THROW(make_chunk_map(std::vector<int64_t>{5, -1}, c), UserError);
}

TEST(ChunkMap, LargeTensorsKeep64BitStarts) {
  const int64_t n = (int64_t{1} << 33) + 5;
  const std::vector<CudaChunk> chunks = make_chunk_map(std::vector<int64_t>{n}, int64_t{1} << 30);
  ASSERT_EQ(chunks.size(), 9u);
  EXPECT_EQ(chunks.back().start, int64_t{1} << 33);
  EXPECT_EQ(chunks.back().count, 5u);
}

// The table takes untyped addresses (buffers of any storage type).
std::vector<void*> untyped(const std::vector<float*>& pointers) {
  return {pointers.begin(), pointers.end()};
}

const std::vector<int> kF32x2 = {4, 4};
const std::vector<int> kF32x4 = {4, 4, 4, 4};

// Reads the table's bytes back as the kernel does.
TEST(TensorTable, LayoutReadsBack) {
  const size_t buffer_count = 3;
  const std::vector<int> element_bytes = {4, 4, 4};
  const std::vector<int64_t> numels = {10, 0, 4097};
  std::vector<float> storage(64);
  std::vector<float*> buffers;
  for (size_t t = 0; t < numels.size(); ++t) {
    for (size_t b = 0; b < buffer_count; ++b)
      buffers.push_back(storage.data() + 4 * (t * buffer_count + b));
  }
  const CudaTensorTable table = build_tensor_table(numels.size(), numels.data(),
                                                   untyped(buffers).data(), element_bytes, 4096);
  EXPECT_EQ(table.tensor_count, 3u);
  EXPECT_EQ(table.chunks.size(), 3u);
  EXPECT_EQ(table.first_chunk, (std::vector<size_t>{0, 1, 1, 3}));

  const auto* bytes = reinterpret_cast<const unsigned char*>(table.words.data());
  CudaTableHeader header;
  std::memcpy(&header, bytes, sizeof(header));
  EXPECT_EQ(header.tensors_offset, 32);
  EXPECT_EQ(header.tensor_count, 3);
  EXPECT_EQ(header.chunk_count, 3);
  const size_t entry = cuda_tensor_entry_bytes(buffer_count);
  EXPECT_EQ(entry, 32u);
  EXPECT_EQ(header.chunks_offset, 32 + 3 * 32);
  const size_t chunk_entry = cuda_chunk_entry_bytes(buffer_count);
  EXPECT_EQ(chunk_entry, 40u);
  EXPECT_EQ(table.bytes(), static_cast<size_t>(header.chunks_offset) + 3 * chunk_entry);
  for (size_t t = 0; t < numels.size(); ++t) {
    int64_t numel = 0;
    std::memcpy(&numel, bytes + header.tensors_offset + t * entry, sizeof(numel));
    EXPECT_EQ(numel, numels[t]);
    for (size_t b = 0; b < buffer_count; ++b) {
      uint64_t address = 0;
      std::memcpy(&address, bytes + header.tensors_offset + t * entry + 8 + 8 * b, 8);
      EXPECT_EQ(address, reinterpret_cast<uint64_t>(buffers[t * buffer_count + b]));
    }
  }
  std::vector<CudaChunk> chunks(3);
  for (size_t c = 0; c < 3; ++c) {
    const unsigned char* at = bytes + header.chunks_offset + c * chunk_entry;
    std::memcpy(&chunks[c], at, sizeof(CudaChunk));
    // Each chunk's addresses: its tensor's buffers, `start` elements on.
    for (size_t b = 0; b < buffer_count; ++b) {
      uint64_t address = 0;
      std::memcpy(&address, at + sizeof(CudaChunk) + 8 * b, 8);
      EXPECT_EQ(address, reinterpret_cast<uint64_t>(buffers[chunks[c].tensor * buffer_count + b] +
                                                    chunks[c].start));
    }
  }
  EXPECT_EQ(chunks[0].tensor, 0u);
  EXPECT_EQ(chunks[0].count, 10u);
  EXPECT_EQ(chunks[1].tensor, 2u);
  EXPECT_EQ(chunks[1].count, 4096u);
  EXPECT_EQ(chunks[2].tensor, 2u);
  EXPECT_EQ(chunks[2].count, 1u);
  EXPECT_EQ(chunks[2].start, 4096);
}

TEST(TensorTable, HostStructuresHaveTheGeneratedLayout) {
  EXPECT_EQ(sizeof(CudaTableHeader), 32u);
  EXPECT_EQ(sizeof(CudaChunk), 16u);
  EXPECT_EQ(cuda_tensor_table_layout(2),
            "v1 table{tensors_offset:i64@0,chunks_offset:i64@8,tensor_count:i64@16,"
            "chunk_count:i64@24}=32 tensor{numel:i64@0,buffers:ptr[2]@8}=24 "
            "chunk{tensor:u32@0,count:u32@4,start:i64@8,buffers:ptr[2]@16}=32 "
            "scalars:f32[tensor*stride+i] partials:f64[chunk*reductions+r] "
            "keys:u32[tensor*buffers+b] gate:f64[4]");
}

// bf16/f16 buffers: a chunk's address is its tensor's plus `start` two-byte elements, beside
// f32 buffers that advance four bytes per element.
TEST(TensorTable, TwoByteBuffersAdvanceByTheirElementSize) {
  const std::vector<int> element_bytes = {2, 2, 4, 2};
  const std::vector<int64_t> numels = {2500, 7};
  std::vector<uint16_t> halves(16);
  std::vector<float> floats(4);
  // Two-byte aligned only (odd element offsets), as adjacent bf16 tensors of odd sizes are.
  std::vector<void*> buffers = {&halves[1], &halves[3], &floats[1], &halves[5],
                                &halves[7], &halves[9], &floats[2], &halves[11]};
  const int64_t chunk = 1000;
  const CudaTensorTable table =
      build_tensor_table(numels.size(), numels.data(), buffers.data(), element_bytes, chunk);
  ASSERT_EQ(table.chunks.size(), 4u);
  const auto* bytes = reinterpret_cast<const unsigned char*>(table.words.data());
  CudaTableHeader header;
  std::memcpy(&header, bytes, sizeof(header));
  const size_t chunk_entry = cuda_chunk_entry_bytes(element_bytes.size());
  for (size_t c = 0; c < table.chunks.size(); ++c) {
    SCOPED_TRACE(c);
    const unsigned char* at = bytes + header.chunks_offset + c * chunk_entry;
    CudaChunk entry;
    std::memcpy(&entry, at, sizeof(entry));
    for (size_t b = 0; b < element_bytes.size(); ++b) {
      uint64_t address = 0;
      std::memcpy(&address, at + sizeof(CudaChunk) + 8 * b, 8);
      EXPECT_EQ(address,
                reinterpret_cast<uint64_t>(buffers[entry.tensor * element_bytes.size() + b]) +
                    static_cast<uint64_t>(entry.start) * static_cast<uint64_t>(element_bytes[b]));
    }
  }
  EXPECT_EQ(table.chunks[2].start, 2000);
  // A two-byte buffer one byte off its element size is rejected.
  std::vector<void*> odd = buffers;
  odd[1] = reinterpret_cast<char*>(&halves[3]) + 1;
  EXPECT_THROW(build_tensor_table(numels.size(), numels.data(), odd.data(), element_bytes, chunk),
               UserError);
  // A two-byte aligned pointer given for an f32 buffer is rejected too.
  odd = buffers;
  odd[2] = &halves[1];
  EXPECT_THROW(build_tensor_table(numels.size(), numels.data(), odd.data(), element_bytes, chunk),
               UserError);
}

TEST(TensorTable, BadBuffersAreUserErrors) {
  std::vector<float> storage(8);
  const std::vector<int64_t> numels = {4};
  // Misaligned by one byte: not even a float.
  float* odd = reinterpret_cast<float*>(reinterpret_cast<char*>(storage.data()) + 1);
  std::vector<float*> buffers = {storage.data(), odd};
  EXPECT_THROW(build_tensor_table(1, numels.data(), untyped(buffers).data(), kF32x2, 1024),
               UserError);
  buffers = {storage.data(), nullptr};
  EXPECT_THROW(build_tensor_table(1, numels.data(), untyped(buffers).data(), kF32x2, 1024),
               UserError);
  // An empty tensor may have null buffers; a one-float offset is fine (scalar path).
  const std::vector<int64_t> empty = {0};
  EXPECT_NO_THROW(build_tensor_table(1, empty.data(), untyped(buffers).data(), kF32x2, 1024));
  buffers = {storage.data() + 1, storage.data()};
  EXPECT_NO_THROW(build_tensor_table(1, numels.data(), untyped(buffers).data(), kF32x2, 1024));
}

TEST(TensorTable, EmptyGroup) {
  const CudaTensorTable table = build_tensor_table(0, nullptr, nullptr, kF32x4, 1024);
  EXPECT_TRUE(table.chunks.empty());
  EXPECT_EQ(table.first_chunk, std::vector<size_t>{0});
  EXPECT_EQ(table.bytes(), 32u);
}

}  // namespace
}  // namespace fuseopt::runtime
