// Spellings of the IR's value types, as the printer and messages show them.
#include "ir/types.h"

namespace fuseopt::ir {

const char* spelling(Type t) {
  switch (t) {
    case Type::kF64:
      return "f64";
    case Type::kF32:
      return "f32";
    case Type::kBool:
      return "bool";
    case Type::kMask:
      return "mask";
  }
  return "?";
}

}  // namespace fuseopt::ir
