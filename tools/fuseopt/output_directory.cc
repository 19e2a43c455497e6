#include "tools/fuseopt/output_directory.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "support/error.h"
#include "support/npy.h"

namespace fuseopt::tools {
namespace fs = std::filesystem;

OutputDirectory::OutputDirectory(std::string path) : path_(std::move(path)) {
  if (path_.empty()) throw UserError("the output folder's name is empty");
  std::error_code error;
  fs::create_directories(path_, error);
  if (fs::is_directory(path_)) return;
  if (fs::exists(path_) || error == std::errc::not_a_directory ||
      error == std::errc::file_exists) {
    throw UserError("cannot use '" + path_ + "' as the output folder: it, or a folder above it, "
                    "is a file");
  }
  throw EnvironmentError("cannot create the output folder '" + path_ + "': " +
                         (error ? error.message() : "unknown error"));
}

OutputDirectory::~OutputDirectory() {
  for (const auto& [temporary, final_path] : staged_) std::remove(temporary.c_str());
}

std::string OutputDirectory::stage(const std::string& file_name) {
  const std::string final_path = (fs::path(path_) / file_name).string();
  const std::string temporary = (fs::path(path_) / ("." + file_name + ".tmp." +
                                                    std::to_string(::getpid()))).string();
  staged_.emplace_back(temporary, final_path);
  return temporary;
}

void OutputDirectory::add_npy(const std::string& file_name, const std::vector<int64_t>& shape,
                              std::span<const float> data) {
  support::write_npy_f32(stage(file_name), shape, data);
}

void OutputDirectory::add_text(const std::string& file_name, const std::string& text) {
  const std::string temporary = stage(file_name);
  std::FILE* file = std::fopen(temporary.c_str(), "wb");
  if (!file) {
    throw EnvironmentError("cannot write '" + temporary + "': " + std::strerror(errno));
  }
  const bool written = std::fwrite(text.data(), 1, text.size(), file) == text.size();
  const int saved_errno = errno;
  if (std::fclose(file) != 0 || !written) {
    throw EnvironmentError("cannot write '" + temporary + "': " +
                           std::strerror(written ? errno : saved_errno));
  }
}

void OutputDirectory::commit() {
  for (const auto& [temporary, final_path] : staged_) {
    if (std::rename(temporary.c_str(), final_path.c_str()) != 0) {
      throw EnvironmentError("cannot rename '" + temporary + "' to '" + final_path + "': " +
                             std::strerror(errno));
    }
  }
  staged_.clear();
}

}  // namespace fuseopt::tools
