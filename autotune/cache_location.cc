// The cache location rules of CLI.md, plus the FUSEOPT_CACHE forms docs/autotuning.md adds.
#include "autotune/cache_location.h"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

namespace fuseopt::autotune {
namespace {

std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

bool is_folder(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

std::string home_folder() {
  std::string home = environment("HOME");
  if (!home.empty()) return home;
  if (const struct passwd* entry = getpwuid(getuid()); entry != nullptr && entry->pw_dir) {
    return entry->pw_dir;
  }
  return "";
}

}  // namespace

CacheLocation cache_location() {
  CacheLocation location;
  if (const char* set = std::getenv("FUSEOPT_CACHE"); set != nullptr) {
    const std::string value = set;
    location.source = "FUSEOPT_CACHE";
    if (value.empty() || value == "off" || value == "none" || value == "0") {
      location.disabled_because = "FUSEOPT_CACHE=" + value;
      return location;
    }
    if (value.back() == '/' || is_folder(value)) {
      location.path = value + (value.back() == '/' ? "" : "/") + kCacheFileName;
    } else {
      location.path = value;
    }
    return location;
  }
  const std::string xdg = environment("XDG_CACHE_HOME");
  if (!xdg.empty() && xdg.front() == '/') {  // the XDG spec ignores relative paths
    location.source = "XDG_CACHE_HOME";
    location.path = xdg + "/fuseopt/" + kCacheFileName;
    return location;
  }
  const std::string home = home_folder();
  location.source = "HOME";
  if (home.empty()) {
    location.disabled_because = "no home folder to keep a cache in";
    return location;
  }
  location.path = home + "/.cache/fuseopt/" + kCacheFileName;
  return location;
}

}  // namespace fuseopt::autotune
