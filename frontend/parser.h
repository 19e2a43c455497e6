// Parser: tokens -> AST, syntax only (meaning is sema's). On a syntax error it reports,
// skips to the next statement or declaration, and goes on, so one run finds every error.
#pragma once

#include "frontend/ast.h"
#include "support/diagnostics.h"

namespace fuseopt::frontend {

/// Parses a whole rule file. Always returns a module; check diags.has_errors().
ast::Module parse_rule(const support::SourceFile& file, support::Diagnostics& diags);

}  // namespace fuseopt::frontend
