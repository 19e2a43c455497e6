#include "codegen/cuda/launch_shape.h"

#include "support/error.h"

namespace fuseopt::codegen {

std::string CudaLaunchShape::spelling() const {
  return "b" + std::to_string(block_size) + "_e" + std::to_string(elements_per_thread) + "_v" +
         std::to_string(vector_width) + "_c" + std::to_string(chunk_elements) + "_g" +
         std::to_string(grid_limit);
}

void CudaLaunchShape::validate() const {
  auto fail = [&](const std::string& what) {
    throw UserError("invalid CUDA launch shape " + spelling() + ": " + what);
  };
  if (block_size < 32 || block_size > 1024 || block_size % 32 != 0) {
    fail("block size must be a multiple of 32 between 32 and 1024");
  }
  if (vector_width != 1 && vector_width != 2 && vector_width != 4) {
    fail("vector width must be 1, 2 or 4");
  }
  if (elements_per_thread < 1 || elements_per_thread > 64 ||
      elements_per_thread % vector_width != 0) {
    fail("elements per thread must be a multiple of the vector width between 1 and 64");
  }
  if (grid_limit < 0) fail("grid limit must be 0 (fill the device) or positive");
  if (chunk_elements < 1 || chunk_elements > (int64_t{1} << 30) ||
      chunk_elements % vector_width != 0) {
    fail("chunk elements must be a multiple of the vector width between 1 and 2^30");
  }
}

}  // namespace fuseopt::codegen
