// The files a subcommand writes into one folder, made visible all at once: each is written
// under a temporary name in that folder and renamed into place by commit(), so a failure
// never leaves a half-written output file behind.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace fuseopt::tools {

class OutputDirectory {
 public:
  /// Creates the folder `path` and its parents when missing (like `mkdir -p`). A path that
  /// names a file is a UserError; a folder that cannot be created is an EnvironmentError.
  explicit OutputDirectory(std::string path);
  /// Removes the temporary files of an output that was never committed.
  ~OutputDirectory();
  OutputDirectory(const OutputDirectory&) = delete;
  OutputDirectory& operator=(const OutputDirectory&) = delete;

  const std::string& path() const { return path_; }

  /// Writes `file_name` (a name inside the folder) as a float32 .npy file, not yet visible.
  void add_npy(const std::string& file_name, const std::vector<int64_t>& shape,
               std::span<const float> data);
  /// Writes `file_name` with `text`, not yet visible.
  void add_text(const std::string& file_name, const std::string& text);
  /// Renames every added file into place.
  void commit();

 private:
  std::string stage(const std::string& file_name);
  std::string path_;
  std::vector<std::pair<std::string, std::string>> staged_;  // temporary path, final path
};

}  // namespace fuseopt::tools
