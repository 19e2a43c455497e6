// Tasks are closed greedily: a task takes chunks until it holds min_task_elements, so a full
// chunk is one task and runs of small tensors share one.
#include "runtime/chunking.h"

#include <algorithm>
#include <string>

#include "support/error.h"

namespace fuseopt::runtime {

WorkList plan_work(std::span<const int64_t> numels, int64_t chunk_elements,
                   int64_t min_task_elements) {
  FUSEOPT_CHECK(chunk_elements > 0, "plan_work: chunk_elements must be positive, not " +
                                        std::to_string(chunk_elements));
  if (min_task_elements <= 0) min_task_elements = chunk_elements;
  WorkList work;
  work.tensor_begin.reserve(numels.size() + 1);
  size_t total_chunks = 0;
  for (int64_t numel : numels) {
    FUSEOPT_CHECK(numel >= 0, "plan_work: negative tensor size");
    total_chunks += static_cast<size_t>((numel + chunk_elements - 1) / chunk_elements);
  }
  work.chunks.reserve(total_chunks);
  for (size_t tensor = 0; tensor < numels.size(); ++tensor) {
    work.tensor_begin.push_back(work.chunks.size());
    for (int64_t offset = 0; offset < numels[tensor]; offset += chunk_elements) {
      work.chunks.push_back({tensor, offset, std::min(chunk_elements, numels[tensor] - offset)});
    }
  }
  work.tensor_begin.push_back(work.chunks.size());

  work.task_begin.push_back(0);
  int64_t in_task = 0;
  for (size_t i = 0; i < work.chunks.size(); ++i) {
    in_task += work.chunks[i].count;
    if (in_task >= min_task_elements) {
      work.task_begin.push_back(i + 1);
      in_task = 0;
    }
  }
  if (work.task_begin.back() != work.chunks.size()) work.task_begin.push_back(work.chunks.size());
  if (work.chunks.empty()) work.task_begin.clear();
  return work;
}

}  // namespace fuseopt::runtime
