// Lexer: rule text -> tokens. Lexical errors (unexpected characters, unterminated strings,
// malformed numbers) are reported and lexing goes on, so the parser sees the rest.
#pragma once

#include <vector>

#include "frontend/token.h"
#include "support/diagnostics.h"

namespace fuseopt::frontend {

/// Splits the whole file into tokens, ending with kEnd. Comments are dropped; newlines are
/// kept as statement separators (the parser ignores them inside parentheses).
std::vector<Token> tokenize(const support::SourceFile& file, support::Diagnostics& diags);

}  // namespace fuseopt::frontend
