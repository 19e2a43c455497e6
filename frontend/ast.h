// The AST of one rule file: an owning tree with a source range on every node. The parser
// builds it from tokens (syntax only); sema gives it meaning; lowering turns it into IR.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "support/source_file.h"

namespace fuseopt::frontend::ast {

using support::SourceRange;

enum class ExprKind { kNumber, kBool, kName, kUnary, kBinary, kTernary, kCall };

/// Operators as written: "-" and "not" (unary); "+ - * / ^ < <= > >= == != and or" (binary).
struct Expr {
  ExprKind kind = ExprKind::kNumber;
  SourceRange range;
  double number = 0;           ///< kNumber
  bool boolean = false;        ///< kBool
  std::string name;            ///< kName: the name; kCall: the function; kUnary/kBinary: operator
  SourceRange name_range;      ///< kCall: the function name; kUnary/kBinary: the operator
  std::vector<std::unique_ptr<Expr>> operands;  ///< unary 1, binary 2, ternary 3, call: arguments
};
using ExprPtr = std::unique_ptr<Expr>;

enum class StmtKind { kLet, kAssign, kIf };

struct Stmt {
  StmtKind kind = StmtKind::kLet;
  SourceRange range;
  std::string name;         ///< kLet, kAssign: the name bound or assigned
  SourceRange name_range;
  ExprPtr value;            ///< kLet, kAssign
  ExprPtr condition;        ///< kIf
  std::vector<std::unique_ptr<Stmt>> then_body;  ///< kIf
  std::vector<std::unique_ptr<Stmt>> else_body;  ///< kIf; `else if` is one nested kIf
};
using StmtPtr = std::unique_ptr<Stmt>;

struct RuleDecl {
  SourceRange range;
  std::string name;
  SourceRange name_range;
  std::string summary;
};

struct HyperDecl {
  SourceRange range;
  std::string name;
  SourceRange name_range;
  double default_value = 0;
};

struct OptionDecl {
  SourceRange range;
  std::string name;
  SourceRange name_range;
  bool is_bool = true;
  int64_t default_value = 0;  ///< booleans: 0 or 1
};

struct StateDecl {
  enum class InitKind { kNumber, kName };
  SourceRange range;
  std::string name;
  SourceRange name_range;
  InitKind init_kind = InitKind::kNumber;
  double init_number = 0;
  std::string init_name;  ///< "param", "grad" or a hyper
  SourceRange init_range;
  std::string dtype = "f32";
  SourceRange dtype_range;
  bool stochastic = false;  ///< `stochastic` after the storage type
  SourceRange stochastic_range;
  std::string when;       ///< empty: always exists
  SourceRange when_range;
};

/// `param : DTYPE [stochastic]` or `grad : DTYPE`: how the parameter or gradient is stored.
struct StorageDecl {
  SourceRange range;
  std::string buffer;  ///< "param" or "grad"
  SourceRange buffer_range;
  std::string dtype;
  SourceRange dtype_range;
  bool stochastic = false;
  SourceRange stochastic_range;
};

struct ScalarDecl {
  SourceRange range;
  std::string name;
  SourceRange name_range;
  double init = 0;
};

/// One parsed file. Declarations keep their order; duplicates are kept for sema to report.
struct Module {
  std::vector<RuleDecl> rules;  ///< sema requires exactly one
  std::vector<HyperDecl> hypers;
  std::vector<OptionDecl> options;
  std::vector<StateDecl> states;
  std::vector<ScalarDecl> scalars;
  std::vector<StorageDecl> storages;  ///< param and grad storage declarations
  std::vector<SourceRange> step_ranges;  ///< the `step` keyword of each step block
  std::vector<StmtPtr> step;             ///< the first step block's statements
};

}  // namespace fuseopt::frontend::ast
