// Cutting a tensor group into work for the thread pool: every tensor into chunks of at most
// chunk_elements (the unit a PhaseKernel runs, and whose reduction partials are combined in
// order), and consecutive small chunks batched into one task, so a group of many small
// tensors costs as little per element as one large tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace fuseopt::runtime {

/// One contiguous piece of one tensor.
struct Chunk {
  size_t tensor = 0;
  int64_t offset = 0;  ///< first element
  int64_t count = 0;   ///< elements, at least 1
};

/// The chunks of a whole group, in tensor order then offset order, and their grouping
/// into tasks.
struct WorkList {
  std::vector<Chunk> chunks;
  /// Tensor i's chunks are chunks[tensor_begin[i], tensor_begin[i + 1]).
  std::vector<size_t> tensor_begin;
  /// Task k runs chunks[task_begin[k], task_begin[k + 1]).
  std::vector<size_t> task_begin;

  size_t task_count() const { return task_begin.empty() ? 0 : task_begin.size() - 1; }
};

/// Cuts tensors of `numels` elements into chunks of `chunk_elements` (the last chunk of a
/// tensor shorter; a tensor no larger than that is one chunk; empty tensors have none) and
/// batches consecutive chunks into tasks of at least `min_task_elements` elements (the
/// last task may be smaller). `min_task_elements` <= 0 means `chunk_elements`.
WorkList plan_work(std::span<const int64_t> numels, int64_t chunk_elements,
                   int64_t min_task_elements = 0);

}  // namespace fuseopt::runtime
