// The system linker behind a small interface: the CPU backend hands it object files and gets
// a shared object back. Everything happens in a private temporary directory.
#pragma once

#include <string>
#include <vector>

namespace fuseopt::codegen {

/// The program the CPU backend links with (a C compiler driver: it also compiles the small
/// C file that installs the error handler).
inline constexpr const char* kLinkerProgram = "cc";

/// The full path of `program` in the directories of `search_path` (a $PATH-style list), or
/// an empty string when none has an executable file of that name.
std::string find_program(const std::string& program, const std::string& search_path);

/// The linker found on this process's $PATH. Throws EnvironmentError when there is none.
std::string find_linker();

/// A directory only this user can read, removed with its contents on destruction.
class TemporaryDirectory {
 public:
  TemporaryDirectory();  ///< throws EnvironmentError when none can be made
  ~TemporaryDirectory();
  TemporaryDirectory(const TemporaryDirectory&) = delete;
  TemporaryDirectory& operator=(const TemporaryDirectory&) = delete;

  const std::string& path() const { return path_; }
  /// `path()/name`.
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void write_file(const std::string& path, const std::string& bytes);
std::string read_file(const std::string& path);

/// Runs `program` with `arguments` (argv[1...]; give files as absolute paths) and waits for
/// it; what it prints goes to a log in `directory`. Throws EnvironmentError, with that
/// output, when it cannot run or exits non-zero.
void run_program(const std::string& program, const std::vector<std::string>& arguments,
                 const TemporaryDirectory& directory);

}  // namespace fuseopt::codegen
