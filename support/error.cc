#include "support/error.h"

#include <sstream>

namespace fuseopt {

void fail_internal_check(const char* condition, const std::string& message,
                         const char* file, int line) {
  std::ostringstream text;
  text << "internal error at " << file << ":" << line << ": check '" << condition
       << "' failed: " << message;
  throw InternalError(text.str());
}

}  // namespace fuseopt
