#include "frontend/lexer.h"

#include <gtest/gtest.h>

namespace fuseopt::frontend {
namespace {

std::vector<TokenKind> kinds(const std::string& text, int* errors = nullptr) {
  support::SourceFile file("t.opt", text);
  support::Diagnostics diags(file);
  std::vector<TokenKind> result;
  for (const Token& token : tokenize(file, diags)) result.push_back(token.kind);
  if (errors) *errors = diags.error_count();
  return result;
}

TEST(Lexer, KeywordsNamesAndPunctuation) {
  using K = TokenKind;
  EXPECT_EQ(kinds("rule adam \"x\"\n"),
            (std::vector<K>{K::kRule, K::kIdentifier, K::kString, K::kNewline, K::kEnd}));
  EXPECT_EQ(kinds("a <= b != c == d >= e ^ -f"),
            (std::vector<K>{K::kIdentifier, K::kLessEqual, K::kIdentifier, K::kNotEqual,
                            K::kIdentifier, K::kEqual, K::kIdentifier, K::kGreaterEqual,
                            K::kIdentifier, K::kCaret, K::kMinus, K::kIdentifier, K::kEnd}));
  EXPECT_EQ(kinds("not x and y or z"),
            (std::vector<K>{K::kNot, K::kIdentifier, K::kAnd, K::kIdentifier, K::kOr,
                            K::kIdentifier, K::kEnd}));
}

TEST(Lexer, NumbersInEveryForm) {
  support::SourceFile file("t.opt", "3 0.9 1e-8 .5 2E+3");
  support::Diagnostics diags(file);
  const auto tokens = tokenize(file, diags);
  ASSERT_EQ(tokens.size(), 6u);
  EXPECT_EQ(tokens[0].number, 3);
  EXPECT_TRUE(tokens[0].is_integer);
  EXPECT_EQ(tokens[1].number, 0.9);
  EXPECT_EQ(tokens[2].number, 1e-8);
  EXPECT_FALSE(tokens[2].is_integer);
  EXPECT_EQ(tokens[3].number, 0.5);
  EXPECT_EQ(tokens[4].number, 2000);
  EXPECT_FALSE(diags.has_errors());
}

TEST(Lexer, CommentsAreDroppedAndNewlinesKept) {
  using K = TokenKind;
  EXPECT_EQ(kinds("a # comment\nb"), (std::vector<K>{K::kIdentifier, K::kNewline, K::kIdentifier, K::kEnd}));
}

TEST(Lexer, ErrorsAreReportedAndLexingContinues) {
  int errors = 0;
  const auto result = kinds("a $ b 1e \"open\nc", &errors);
  EXPECT_EQ(errors, 3);
  EXPECT_EQ(result.back(), TokenKind::kEnd);
  EXPECT_EQ(result[result.size() - 2], TokenKind::kIdentifier);  // `c` after the errors
}

TEST(Lexer, RangesPointAtTheText) {
  support::SourceFile file("t.opt", "  lr = 0.5");
  support::Diagnostics diags(file);
  const auto tokens = tokenize(file, diags);
  EXPECT_EQ(tokens[0].range.begin, 2u);
  EXPECT_EQ(tokens[0].range.end, 4u);
  EXPECT_EQ(file.locate(tokens[2].range.begin).column, 8);
}

}  // namespace
}  // namespace fuseopt::frontend
