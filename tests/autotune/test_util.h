// Helpers for the cache tests: temporary folders, captured warnings, sample rows, raw SQL on
// the database behind the cache's back, and running a function in a child process (to drop
// privileges or limit file sizes without touching the test process).
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "autotune/cache_db.h"
#include "autotune/sqlite.h"
#include "autotune/warnings.h"
#include "support/sha256.h"

namespace fuseopt::autotune::test {

/// A fresh folder under the system's temporary folder, removed with its contents.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "fuseopt-autotune-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) std::abort();
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::add, ignored);
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

/// Collects warnings while alive (instead of printing them).
class WarningCapture {
 public:
  WarningCapture() {
    previous_ = set_warning_handler([this](const std::string& m) { messages.push_back(m); });
  }
  ~WarningCapture() { set_warning_handler(previous_); }
  bool contains(const std::string& text) const {
    for (const std::string& m : messages) {
      if (m.find(text) != std::string::npos) return true;
    }
    return false;
  }
  std::string all() const {
    std::string text;
    for (const std::string& m : messages) text += m + "\n";
    return text;
  }
  std::vector<std::string> messages;

 private:
  std::function<void(const std::string&)> previous_;
};

inline std::string digest(const std::string& text) {
  return support::digest_bytes(support::sha256(text));
}

inline ToolchainRow sample_toolchain() { return {digest("toolchain"), R"({"test":1})"}; }

inline KernelRow sample_kernel(const std::string& name = "k") {
  return {digest("ir " + name), name, "0.1.0+test", digest("space"), "kernel " + name + "\n"};
}

inline BinaryRow sample_binary(const std::string& bytes, const std::string& name = "k") {
  BinaryRow row;
  row.ir_hash = digest("ir " + name);
  row.config_hash = digest("config");
  row.config_json = R"({"unroll":1,"vector":8})";
  row.isa_target = "x86-64-linux-avx2-sse41";
  row.toolchain_fp = digest("toolchain");
  row.format = "so";
  row.entry_names = "f_phase0_argv";
  row.launch_json = "{}";
  row.bytes = bytes;
  return row;
}

inline std::string file_contents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_contents(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

/// Files in `folder` whose name contains `text`.
inline std::vector<std::string> files_containing(const std::string& folder, const std::string& text) {
  std::vector<std::string> found;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    if (entry.path().filename().string().find(text) != std::string::npos) {
      found.push_back(entry.path().string());
    }
  }
  return found;
}

/// Runs `body` in a forked child and returns its exit status (body's return value, or 99
/// for a crash or an exception).
inline int run_in_child(const std::function<int()>& body) {
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    int code = 98;
    try {
      code = body();
    } catch (...) {
      code = 97;
    }
    _exit(code);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 99;
}

}  // namespace fuseopt::autotune::test
