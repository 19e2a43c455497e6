// `fuseopt tune` and `fuseopt cache` end to end: the cache location rules, tuning and then
// listing, showing, verifying and clearing, usage errors, a damaged cache file, and (label
// `slow`) four `fuseopt tune` processes sharing one database and one key.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "autotune/cache_location.h"
#include "autotune/sqlite.h"
#include "tests/autotune/test_util.h"

namespace fuseopt::autotune {
namespace {

struct Result {
  int code = -1;
  std::string out;
  std::string err;
};

std::string drain(int fd) {
  std::string text;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof buffer)) > 0) text.append(buffer, static_cast<size_t>(n));
  close(fd);
  return text;
}

// A started `fuseopt` with `env` added to this process's environment.
struct Child {
  pid_t pid;
  int out;
  int err;
};

Child start(const std::vector<std::string>& args, const std::vector<std::string>& env) {
  int out[2], err[2];
  if (pipe(out) != 0 || pipe(err) != 0) std::abort();
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(err[1], 2);
    close(out[0]);
    close(err[0]);
    const int null = open("/dev/null", O_RDONLY);
    dup2(null, 0);
    for (const std::string& e : env) putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> argv{const_cast<char*>(FUSEOPT_BINARY)};
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(FUSEOPT_BINARY, argv.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  return {pid, out[0], err[0]};
}

Result finish(const Child& child) {
  Result r;
  // Standard error first could block the child on a full stdout pipe; outputs are small.
  r.out = drain(child.out);
  r.err = drain(child.err);
  int status = 0;
  waitpid(child.pid, &status, 0);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

Result fuseopt(const std::vector<std::string>& args, const std::vector<std::string>& env) {
  return finish(start(args, env));
}

class TuneCliTest : public ::testing::Test {
 protected:
  test::TempDir dir;
  std::string cache() const { return "FUSEOPT_CACHE=" + dir.file("cache/"); }
  std::string db() const { return dir.file("cache/cache.sqlite"); }
};

TEST_F(TuneCliTest, CachePathFollowsTheEnvironment) {
  Result r = fuseopt({"cache", "path"}, {cache()});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, db() + "\n");
  r = fuseopt({"cache", "path"}, {"FUSEOPT_CACHE=" + dir.file("my.db")});
  EXPECT_EQ(r.out, dir.file("my.db") + "\n");
  r = fuseopt({"cache", "path"}, {"FUSEOPT_CACHE=off"});
  EXPECT_EQ(r.out, "off (FUSEOPT_CACHE=off)\n");
  EXPECT_EQ(fuseopt({"cache", "ls"}, {cache()}).out, "no cache yet at " + db() + "\n");
}

TEST(CacheLocationTest, TheRulesOfCliMd) {
  const char* saved_cache = std::getenv("FUSEOPT_CACHE");
  const std::string saved = saved_cache ? saved_cache : "";
  unsetenv("FUSEOPT_CACHE");
  setenv("XDG_CACHE_HOME", "/xdg", 1);
  EXPECT_EQ(cache_location().path, "/xdg/fuseopt/cache.sqlite");
  EXPECT_EQ(cache_location().source, "XDG_CACHE_HOME");
  setenv("XDG_CACHE_HOME", "relative/ignored", 1);
  setenv("HOME", "/home/someone", 1);
  EXPECT_EQ(cache_location().path, "/home/someone/.cache/fuseopt/cache.sqlite");
  unsetenv("XDG_CACHE_HOME");
  EXPECT_EQ(cache_location().path, "/home/someone/.cache/fuseopt/cache.sqlite");
  setenv("FUSEOPT_CACHE", "/somewhere/", 1);
  EXPECT_EQ(cache_location().path, "/somewhere/cache.sqlite");
  setenv("FUSEOPT_CACHE", "/somewhere/file.db", 1);
  EXPECT_EQ(cache_location().path, "/somewhere/file.db");
  for (const char* off : {"off", "none", "0", ""}) {
    setenv("FUSEOPT_CACHE", off, 1);
    EXPECT_TRUE(cache_location().path.empty()) << off;
    EXPECT_FALSE(cache_location().disabled_because.empty());
  }
  setenv("FUSEOPT_CACHE", saved.c_str(), 1);
}

TEST_F(TuneCliTest, TuneRecordsAndTheCacheCommandsShowIt) {
  Result r = fuseopt({"tune", "sgd", "--sizes", "4096", "--budget", "4"}, {cache()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("sgd"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("e12.0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("recorded in " + db()), std::string::npos) << r.out;
  // Not a terminal: plain lines, no bar redrawn with carriage returns.
  EXPECT_NE(r.err.find("tune: sgd n=4096 (1/1): "), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\r'), std::string::npos);

  r = fuseopt({"tune", "sgd", "--sizes", "4096"}, {cache()});
  EXPECT_NE(r.out.find("already tuned"), std::string::npos) << r.out;

  r = fuseopt({"cache", "ls"}, {cache()});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("1 decisions"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("sgd_nesterov0_maximize0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("n:e12.0|t:0"), std::string::npos) << r.out;

  r = fuseopt({"cache", "show", "sgd_nesterov0_maximize0"}, {cache()});
  EXPECT_EQ(r.code, 0) << r.err;
  for (const char* part : {"binaries (", "decisions (1)", "measurements (", "ir\n", "ok "}) {
    EXPECT_NE(r.out.find(part), std::string::npos) << part << "\n" << r.out;
  }
  const std::string key = r.out.substr(r.out.find("key      ") + 9, 8);
  EXPECT_EQ(fuseopt({"cache", "show", key}, {cache()}).code, 0);
  EXPECT_EQ(fuseopt({"cache", "show", "ffffffffff"}, {cache()}).code, 1);

  r = fuseopt({"cache", "verify"}, {cache()});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("integrity_check: ok"), std::string::npos);

  r = fuseopt({"cache", "clear"}, {cache()});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("cleared"), std::string::npos);
  EXPECT_NE(fuseopt({"cache", "ls"}, {cache()}).out.find("0 decisions"), std::string::npos);
}

TEST_F(TuneCliTest, UsageAndUserErrors) {
  EXPECT_EQ(fuseopt({"cache", "lss"}, {cache()}).code, 2);
  EXPECT_NE(fuseopt({"cache", "lss"}, {cache()}).err.find("did you mean 'ls'"), std::string::npos);
  EXPECT_EQ(fuseopt({"cache", "show"}, {cache()}).code, 2);
  EXPECT_EQ(fuseopt({"cache", "ls", "extra"}, {cache()}).code, 2);
  EXPECT_EQ(fuseopt({"tune"}, {cache()}).code, 2);
  EXPECT_EQ(fuseopt({"tune", "no_such_rule"}, {cache()}).code, 1);
  EXPECT_EQ(fuseopt({"tune", "sgd", "--sizes", "0"}, {cache()}).code, 1);
  EXPECT_EQ(fuseopt({"tune", "sgd", "--sizes", "1,,2"}, {cache()}).code, 1);
  EXPECT_EQ(fuseopt({"tune", "sgd", "--budget", "-1"}, {cache()}).code, 1);
  EXPECT_EQ(fuseopt({"tune", "sgd", "--backend", "gpu"}, {cache()}).code, 1);
  const Result cuda = fuseopt({"tune", "sgd", "--backend", "cuda"}, {cache()});
  EXPECT_EQ(cuda.code, 4);
  EXPECT_NE(cuda.err.find("fuseopt: error: "), std::string::npos);
  EXPECT_EQ(fuseopt({"tune", "--help"}, {cache()}).code, 0);
}

TEST_F(TuneCliTest, ADamagedCacheFileWarnsAndTheRunGoesOn) {
  mkdir(dir.file("cache").c_str(), 0700);
  test::write_contents(db(), std::string(5000, 'x'));
  const Result r = fuseopt({"tune", "sgd", "--sizes", "2048", "--budget", "2"}, {cache()});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("fuseopt: warning: cache " + db() + " is not an SQLite database"),
            std::string::npos) << r.err;
  EXPECT_EQ(test::files_containing(dir.file("cache"), ".corrupt-").size(), 1u);
  EXPECT_NE(r.out.find("recorded in"), std::string::npos);
}

TEST_F(TuneCliTest, WithCachingOffTuningStillWorks) {
  const Result r = fuseopt({"tune", "sgd", "--sizes", "2048", "--budget", "2"}, {"FUSEOPT_CACHE=off"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("not recorded: caching is off"), std::string::npos) << r.out;
}

// Four processes at once, all tuning one shared size (the lease lets one measure it, the
// others wait for its decision) and one size each of their own.
TEST_F(TuneCliTest, FourTuneProcessesShareOneDatabase) {
  std::vector<Child> children;
  for (int i = 0; i < 4; ++i) {
    const std::string own = std::to_string(8192 << i);
    children.push_back(start({"tune", "sgd", "--sizes", "4096," + own, "--budget", "6", "--json"},
                             {cache()}));
  }
  int64_t tuned_measurements = 0;
  int shared_tuned = 0;
  for (const Child& child : children) {
    const Result r = finish(child);
    ASSERT_EQ(r.code, 0) << r.err;
    // One JSON object per run: count what was measured here, and who measured the shared key.
    size_t at = 0;
    while ((at = r.out.find("\"problem_key\"", at)) != std::string::npos) {
      const size_t outcome = r.out.find("\"outcome\": \"", at) + 12;
      const bool tuned = r.out.compare(outcome, 8, "tuned in") == 0 ||
                         r.out.compare(outcome, 12, "default kept") == 0;
      const size_t m = r.out.find("\"measurements\": ", at) + 16;
      if (tuned) tuned_measurements += std::atoll(r.out.c_str() + m);
      if (tuned && r.out.compare(at + 16, 11, "n:e12.0|t:0") == 0) ++shared_tuned;
      ++at;
    }
  }
  EXPECT_EQ(shared_tuned, 1);
  sqlite::Connection raw(db(), true);
  EXPECT_EQ(raw.query_text("PRAGMA integrity_check"), "ok");
  EXPECT_EQ(raw.query_int("SELECT count(*) FROM decision"), 5);
  EXPECT_EQ(raw.query_int("SELECT count(*) FROM measurement"), tuned_measurements);
  EXPECT_EQ(raw.query_int("SELECT count(*) FROM tuning_lease"), 0);
}

}  // namespace
}  // namespace fuseopt::autotune
