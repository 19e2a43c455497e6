#include "tests/pack/pack_fixture.h"

#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "pack/pack_reader.h"

namespace fuseopt::pack_testing {
namespace {

namespace fs = std::filesystem;

bool newer_than(const std::string& path, const std::string& other) {
  struct stat a, b;
  return stat(path.c_str(), &a) == 0 && stat(other.c_str(), &b) == 0 && a.st_mtime >= b.st_mtime;
}

}  // namespace

SharedPack shared_pack(const std::string& name, const std::vector<std::string>& build_args) {
  SharedPack pack;
  fs::create_directories(PACK_FIXTURE_DIR);
  pack.path = std::string(PACK_FIXTURE_DIR) + "/" + name;
  if (newer_than(pack.path, FUSEOPT_BINARY)) {
    pack.ok = true;
    return pack;
  }
  std::vector<std::string> args = {"pack", "build"};
  args.insert(args.end(), build_args.begin(), build_args.end());
  args.push_back("-o");
  args.push_back(pack.path);
  pack.build = fuseopt(args);
  pack.ok = pack.build.exit_code == 0;
  return pack;
}

const SharedPack& adadelta_pack() {
  static const SharedPack pack = shared_pack("adadelta.pack", {"adadelta"});
  return pack;
}

const SharedPack& mixed_pack() {
  static const SharedPack pack =
      shared_pack("mixed.pack",
                  {"adadelta", "--options", "maximize=false", "--targets", "host,sm_80,sm_90,ptx"});
  return pack;
}

std::string shared_key(const std::string& name) {
  fs::create_directories(PACK_FIXTURE_DIR);
  const std::string key = std::string(PACK_FIXTURE_DIR) + "/" + name;
  if (!fs::exists(key + ".pub")) {
    // Another test process may win the race; keygen then refuses and its key is used.
    fuseopt({"pack", "keygen", key});
    for (int i = 0; i < 50 && !fs::exists(key + ".pub"); ++i) usleep(20000);
  }
  return key;
}

const SharedPack& signed_pack() {
  static const SharedPack pack = [] {
    const std::string key = shared_key("signing.key");
    const std::string path = std::string(PACK_FIXTURE_DIR) + "/signed.pack";
    // Signed by the key present now: rebuilt when the key is newer than the pack.
    if (!newer_than(path, key + ".pub")) fs::remove(path);
    return shared_pack("signed.pack", {"adadelta", "--options", "maximize=false", "--sign", key});
  }();
  return pack;
}

const std::string& scratch_folder() {
  static const std::string* folder = [] {
    auto* path = new std::string(fs::temp_directory_path() /
                                 ("fuseopt_pack_test_" + std::to_string(getpid())));
    fs::create_directories(*path);
    std::atexit([] {
      std::error_code ignored;
      fs::remove_all(fs::temp_directory_path() / ("fuseopt_pack_test_" + std::to_string(getpid())),
                     ignored);
    });
    return path;
  }();
  return *folder;
}

std::string scratch(const std::string& name) { return scratch_folder() + "/" + name; }

std::string tampered(const std::string& pack, const std::string& name, const char* sql) {
  const std::string copy = scratch(name);
  fs::remove(copy);
  fs::copy_file(pack, copy);
  fs::permissions(copy, fs::perms::owner_read | fs::perms::owner_write);
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(copy.c_str(), &db), SQLITE_OK);
  char* error = nullptr;
  EXPECT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, &error), SQLITE_OK) << (error ? error : "");
  sqlite3_free(error);
  sqlite3_close(db);
  return copy;
}

ProcessResult pack_run(const std::vector<std::string>& args, const std::vector<std::string>& env) {
  std::vector<std::string> all = {"PATH="};
  all.insert(all.end(), env.begin(), env.end());
  all.push_back(PACK_RUN_BINARY);
  all.insert(all.end(), args.begin(), args.end());
  return fuseopt::testing::run_process("/usr/bin/env", all);
}

ProcessResult fuseopt(const std::vector<std::string>& args) {
  return fuseopt::testing::run_process(FUSEOPT_BINARY, args);
}

void expect_failure(const ProcessResult& r, int code, const std::string& text) {
  EXPECT_EQ(r.signal, 0) << r.err;
  EXPECT_EQ(r.exit_code, code) << r.out << r.err;
  EXPECT_NE(r.err.find(text), std::string::npos) << "stderr lacks '" << text << "':\n" << r.err;
}

std::string blob_of(const std::string& path, const std::string& target) {
  pack::PackReader reader(path);
  for (const pack::BinaryEntry& entry : reader.binaries()) {
    if (entry.target == target) return reader.read_blob(entry);
  }
  ADD_FAILURE() << path << " has no binary for " << target;
  return "";
}

}  // namespace fuseopt::pack_testing
