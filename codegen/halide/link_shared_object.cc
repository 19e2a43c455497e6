// Finding and running the system linker, and the private temporary directory it works in.
#include "codegen/halide/link_shared_object.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "support/error.h"

extern char** environ;

namespace fuseopt::codegen {

std::string find_program(const std::string& program, const std::string& search_path) {
  if (program.find('/') != std::string::npos) {
    return access(program.c_str(), X_OK) == 0 ? program : std::string();
  }
  size_t start = 0;
  while (start <= search_path.size()) {
    size_t end = search_path.find(':', start);
    if (end == std::string::npos) end = search_path.size();
    // An empty entry means the current directory, as for execvp.
    std::string directory = end > start ? search_path.substr(start, end - start) : ".";
    std::string candidate = directory + "/" + program;
    struct stat info {};
    if (stat(candidate.c_str(), &info) == 0 && S_ISREG(info.st_mode) &&
        access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    start = end + 1;
  }
  return {};
}

std::string find_linker() {
  const char* path = std::getenv("PATH");
  std::string found = find_program(kLinkerProgram, path != nullptr ? path : "");
  if (found.empty()) {
    throw EnvironmentError(std::string("no linker ('") + kLinkerProgram +
                           "') found on PATH; fuseopt needs one to compile CPU kernels");
  }
  return found;
}

TemporaryDirectory::TemporaryDirectory() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern =
      std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/fuseopt-halide-XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  // mkdtemp creates the directory with mode 0700.
  if (mkdtemp(buffer.data()) == nullptr) {
    throw EnvironmentError("cannot create a temporary directory like " + pattern + ": " +
                           std::strerror(errno));
  }
  path_ = buffer.data();
}

TemporaryDirectory::~TemporaryDirectory() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) throw EnvironmentError("cannot write " + path);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw EnvironmentError("cannot read " + path);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

void run_program(const std::string& program, const std::vector<std::string>& arguments,
                 const TemporaryDirectory& directory) {
  const std::string log = directory.file("command.log");
  std::vector<std::string> words = {program};
  words.insert(words.end(), arguments.begin(), arguments.end());
  std::vector<char*> argv;
  for (std::string& word : words) argv.push_back(word.data());
  argv.push_back(nullptr);
  std::string command;
  for (const std::string& word : words) command += (command.empty() ? "" : " ") + word;

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = 0;
  int status = posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (status != 0) {
    throw EnvironmentError("cannot run '" + command + "': " + std::strerror(status));
  }
  int wait_status = 0;
  while (waitpid(pid, &wait_status, 0) < 0) {
    if (errno != EINTR) {
      throw EnvironmentError("waiting for '" + command + "' failed: " + std::strerror(errno));
    }
  }
  if (!WIFEXITED(wait_status) || WEXITSTATUS(wait_status) != 0) {
    std::string output;
    try {
      output = read_file(log);
    } catch (const EnvironmentError&) {
    }
    std::string how = WIFEXITED(wait_status)
                          ? "exited with status " + std::to_string(WEXITSTATUS(wait_status))
                          : "was killed by signal " + std::to_string(WTERMSIG(wait_status));
    throw EnvironmentError("'" + command + "' " + how + (output.empty() ? "" : ":\n" + output));
  }
}

}  // namespace fuseopt::codegen
