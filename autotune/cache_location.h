// Where the cache database lives (CLI.md, "Files"): $FUSEOPT_CACHE when set, else
// $XDG_CACHE_HOME/fuseopt/, else ~/.cache/fuseopt/. Resolving never creates anything.
#pragma once

#include <string>

namespace fuseopt::autotune {

/// The database's file name inside a cache folder.
inline constexpr const char* kCacheFileName = "cache.sqlite";

struct CacheLocation {
  /// The database file; empty when caching is off.
  std::string path;
  /// Why caching is off ("FUSEOPT_CACHE=off", "no home folder"), or empty.
  std::string disabled_because;
  /// Which rule chose the path, for `fuseopt cache path`: "FUSEOPT_CACHE",
  /// "XDG_CACHE_HOME" or "HOME".
  std::string source;
};

/// Resolves the location from the environment:
///   FUSEOPT_CACHE=off (or "none", "0", "")  no cache;
///   FUSEOPT_CACHE=DIR/ or an existing folder  DIR/cache.sqlite;
///   FUSEOPT_CACHE=FILE                        that file;
///   XDG_CACHE_HOME=DIR (absolute)             DIR/fuseopt/cache.sqlite;
///   otherwise                                 $HOME/.cache/fuseopt/cache.sqlite.
CacheLocation cache_location();

}  // namespace fuseopt::autotune
