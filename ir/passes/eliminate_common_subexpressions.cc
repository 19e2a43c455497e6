// Pass: hash-consing over the whole kernel. After it, structurally equal expressions are one
// node, so later passes and backends can compare and share values by pointer.
#include "ir/passes/eliminate_common_subexpressions.h"

#include <bit>
#include <cstdint>
#include <functional>
#include <unordered_map>

#include "ir/rewrite.h"

namespace fuseopt::ir {
namespace {

// A node's structure with its operands already canonical, so comparing operand pointers
// compares whole subtrees. Constants compare by bits: 0 and -0 must stay apart.
struct Key {
  NodeKind kind;
  Type type;
  uint64_t value_bits;
  std::string name;
  UnaryOp unary_op;
  BinaryOp binary_op;
  std::vector<const ExprNode*> operands;

  bool operator==(const Key&) const = default;
};

struct KeyHash {
  size_t operator()(const Key& key) const {
    size_t h = std::hash<std::string>()(key.name);
    auto mix = [&h](uint64_t v) {
      h ^= std::hash<uint64_t>()(v) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    };
    mix(static_cast<uint64_t>(key.kind));
    mix(static_cast<uint64_t>(key.type));
    mix(key.value_bits);
    mix(static_cast<uint64_t>(key.unary_op));
    mix(static_cast<uint64_t>(key.binary_op));
    for (const ExprNode* operand : key.operands) mix(reinterpret_cast<uintptr_t>(operand));
    return h;
  }
};

Key key_of(const Expr& e) {
  Key key{e->kind,      e->type,      std::bit_cast<uint64_t>(e->value), e->name,
          e->unary_op,  e->binary_op, {}};
  for (const Expr& operand : e->operands) key.operands.push_back(operand.get());
  return key;
}

}  // namespace

Kernel eliminate_common_subexpressions(const Kernel& kernel) {
  std::unordered_map<Key, Expr, KeyHash> canonical;
  ExprRewriter rewriter([&canonical](const Expr& e) {
    return canonical.emplace(key_of(e), e).first->second;
  });
  return rewrite_exprs(kernel, std::ref(rewriter));
}

}  // namespace fuseopt::ir
