// Tokens of the rule language (docs/language.md, "Lexical").
#pragma once

#include <string>

#include "support/source_file.h"

namespace fuseopt::frontend {

enum class TokenKind {
  kEnd,
  kNewline,    ///< ends a statement, like ';'
  kIdentifier,
  kNumber,
  kString,
  // Keywords.
  kRule, kHyper, kOption, kState, kScalar, kStep, kLet, kIf, kElse, kWhen, kTrue, kFalse,
  kAnd, kOr, kNot,
  // Punctuation.
  kAssign, kComma, kColon, kSemicolon, kQuestion, kLeftBrace, kRightBrace, kLeftParen,
  kRightParen, kPlus, kMinus, kStar, kSlash, kCaret, kLess, kLessEqual, kGreater,
  kGreaterEqual, kEqual, kNotEqual,
  kError,  ///< a lexical error already reported; the parser skips it
};

/// How a token kind reads in messages, e.g. "'{'" or "a number".
std::string describe(TokenKind kind);

struct Token {
  TokenKind kind = TokenKind::kEnd;
  support::SourceRange range;
  std::string text;   ///< identifier or keyword spelling; string contents without quotes
  double number = 0;  ///< kNumber
  bool is_integer = false;  ///< kNumber written without '.', exponent
};

}  // namespace fuseopt::frontend
