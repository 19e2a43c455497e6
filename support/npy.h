// Reading and writing NumPy .npy files of float32: how tensors (parameters,
// gradients, optimizer state) enter and leave fuseopt. The reader checks
// everything it reads and turns any bad input into a UserError naming the file.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fuseopt::support {

/// A float32 array in C (row-major) order. A 0-d array has shape {} and one element.
struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

/// Parses the bytes of a whole .npy file (format versions 1.0, 2.0 and 3.0).
/// Accepts only little-endian float32 ('<f4') with fortran_order False and exactly
/// the data the header promises; anything else throws UserError whose message
/// starts with name_for_errors and says what was found and what is required.
/// Never reads past `bytes` and never allocates more than `bytes` can hold.
NpyArray parse_npy_f32(std::string_view bytes, const std::string& name_for_errors);

/// Reads a .npy file as parse_npy_f32 does, without holding the file twice in memory.
/// A missing, unreadable or malformed file throws UserError naming `path`;
/// an I/O failure in the middle of reading throws EnvironmentError.
NpyArray read_npy_f32(const std::string& path);

/// Writes `data` (C order) as a format 1.0 '<f4' .npy file that NumPy loads
/// (format 2.0 only if the header outgrows 1.0, as NumPy does).
/// A path that cannot be created (missing folder, a folder's name) throws UserError;
/// other failures (permissions, full disk) throw EnvironmentError and leave no file.
/// A shape with a negative dimension, or one that does not match data.size(), is a
/// bug in the caller and throws InternalError.
void write_npy_f32(const std::string& path, const std::vector<int64_t>& shape,
                   std::span<const float> data);

/// The number of elements of `shape`: the product of its dimensions, 1 for {}.
/// Throws UserError for a negative dimension or a product that overflows int64.
int64_t element_count(const std::vector<int64_t>& shape);

/// Formats a shape as NumPy prints it: "(3, 4)", "(5,)" for 1-D, "()" for 0-d.
std::string shape_to_string(const std::vector<int64_t>& shape);

}  // namespace fuseopt::support
