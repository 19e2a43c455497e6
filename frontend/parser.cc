#include "frontend/parser.h"

#include <cmath>
#include <limits>

#include "frontend/lexer.h"

namespace fuseopt::frontend {
namespace {

using ast::ExprKind;
using ast::ExprPtr;
using ast::StmtKind;
using ast::StmtPtr;
using support::SourceRange;

class Parser {
 public:
  Parser(const support::SourceFile& file, support::Diagnostics& diags)
      : tokens_(tokenize(file, diags)), diags_(diags) {}

  // file := { declaration | step_block | separator } end
  ast::Module parse_file() {
    while (!at(TokenKind::kEnd)) {
      if (at(TokenKind::kNewline) || at(TokenKind::kSemicolon)) {
        advance();
        continue;
      }
      const size_t start = pos_;
      if (!parse_top_level()) skip_line(/*inside_block=*/false);
      if (pos_ == start) advance();  // always make progress, whatever the input
    }
    return std::move(module_);
  }

 private:
  // ---- Token access ----------------------------------------------------------------------

  // Newlines inside parentheses do not end a statement, so long expressions can wrap.
  const Token& peek() {
    while (paren_depth_ > 0 && tokens_[pos_].kind == TokenKind::kNewline) ++pos_;
    return tokens_[pos_];
  }
  bool at(TokenKind kind) { return peek().kind == kind; }
  const Token& advance() {
    const Token& token = peek();
    if (token.kind != TokenKind::kEnd) ++pos_;
    return token;
  }
  bool accept(TokenKind kind) {
    if (!at(kind)) return false;
    advance();
    return true;
  }
  SourceRange previous_range() const { return tokens_[pos_ > 0 ? pos_ - 1 : 0].range; }

  // Reports "expected X, found Y" at the current token, unless the lexer already reported it.
  bool fail(const std::string& expected) {
    const Token& token = peek();
    if (token.kind != TokenKind::kError) {
      std::string found = describe(token.kind);
      if (token.kind == TokenKind::kIdentifier) found = "'" + token.text + "'";
      if (token.kind == TokenKind::kNumber) found = "'" + token.text + "'";
      diags_.error(token.range, "expected " + expected + ", found " + found);
    }
    return false;
  }
  bool expect(TokenKind kind, const std::string& what) {
    if (accept(kind)) return true;
    return fail(what.empty() ? describe(kind) : what);
  }

  // Error recovery: drop the rest of the current line (or statement), keeping braces
  // balanced. Inside a block, a '}' ends the skip and is left for the block to close.
  void skip_line(bool inside_block = true) {
    paren_depth_ = 0;
    int braces = 0;
    while (!at(TokenKind::kEnd)) {
      const TokenKind kind = peek().kind;
      if (braces == 0 && (kind == TokenKind::kNewline || kind == TokenKind::kSemicolon)) {
        advance();
        return;
      }
      if (braces == 0 && kind == TokenKind::kRightBrace && inside_block) return;
      if (kind == TokenKind::kLeftBrace) ++braces;
      if (kind == TokenKind::kRightBrace && braces > 0) --braces;
      advance();
    }
  }

  bool at_statement_end() {
    return at(TokenKind::kNewline) || at(TokenKind::kSemicolon) || at(TokenKind::kRightBrace) ||
           at(TokenKind::kEnd);
  }
  bool expect_statement_end() {
    if (at_statement_end()) {
      if (at(TokenKind::kNewline) || at(TokenKind::kSemicolon)) advance();
      return true;
    }
    return fail("end of line or ';'");
  }

  // ---- Declarations ------------------------------------------------------------------------

  bool parse_top_level() {
    switch (peek().kind) {
      case TokenKind::kRule: return parse_rule_decl();
      case TokenKind::kHyper: return parse_hyper_decl();
      case TokenKind::kOption: return parse_option_decl();
      case TokenKind::kState: return parse_state_decl();
      case TokenKind::kScalar: return parse_scalar_decl();
      case TokenKind::kStep: return parse_step_block();
      case TokenKind::kIdentifier:
        if ((peek().text == "param" || peek().text == "grad") && tokens_[pos_ + 1].kind == TokenKind::kColon) {
          return parse_storage_decl();
        }
        [[fallthrough]];
      default:
        return fail("a declaration ('rule', 'hyper', 'option', 'state', 'scalar', "
                    "'param :', 'grad :') or 'step'");
    }
  }

  bool expect_name(std::string& name, SourceRange& range, const std::string& what) {
    if (!at(TokenKind::kIdentifier)) return fail(what);
    const Token& token = advance();
    name = token.text;
    range = token.range;
    return true;
  }

  // signed_number := ['-'] NUMBER
  bool parse_signed_number(double& value, bool* is_integer = nullptr) {
    const bool negative = accept(TokenKind::kMinus);
    if (!at(TokenKind::kNumber)) return fail("a number");
    const Token& token = advance();
    value = negative ? -token.number : token.number;
    if (is_integer) *is_integer = token.is_integer;
    return true;
  }

  // rule_decl := 'rule' NAME STRING
  bool parse_rule_decl() {
    ast::RuleDecl decl;
    const SourceRange start = advance().range;
    if (!expect_name(decl.name, decl.name_range, "the rule's name")) return false;
    // With its name read the rule line counts, even if its summary is broken: no second
    // error about a missing rule line.
    const bool has_summary = at(TokenKind::kString);
    if (has_summary) decl.summary = advance().text;
    decl.range = SourceRange::cover(start, previous_range());
    module_.rules.push_back(std::move(decl));
    if (!has_summary) return fail("a one-line summary in quotes");
    return expect_statement_end();
  }

  // hyper_decl := 'hyper' NAME '=' signed_number { ',' NAME '=' signed_number }
  bool parse_hyper_decl() {
    advance();
    do {
      ast::HyperDecl decl;
      if (!expect_name(decl.name, decl.name_range, "the hyper's name")) return false;
      if (!expect(TokenKind::kAssign, "'=' and a default value")) return false;
      if (!parse_signed_number(decl.default_value)) return false;
      decl.range = SourceRange::cover(decl.name_range, previous_range());
      module_.hypers.push_back(std::move(decl));
    } while (accept(TokenKind::kComma));
    return expect_statement_end();
  }

  // option_decl := 'option' NAME '=' ('true' | 'false' | signed_integer)
  bool parse_option_decl() {
    const SourceRange start = advance().range;
    ast::OptionDecl decl;
    if (!expect_name(decl.name, decl.name_range, "the option's name")) return false;
    if (!expect(TokenKind::kAssign, "'=' and a default value")) return false;
    if (accept(TokenKind::kTrue) || accept(TokenKind::kFalse)) {
      decl.is_bool = true;
      decl.default_value = tokens_[pos_ - 1].kind == TokenKind::kTrue ? 1 : 0;
    } else {
      double value = 0;
      bool is_integer = false;
      const size_t number_pos = pos_;
      if (!parse_signed_number(value, &is_integer)) return false;
      if (!is_integer || std::fabs(value) > 1e15) {
        diags_.error(SourceRange::cover(tokens_[number_pos].range, previous_range()),
                     "an option's value is true, false or an integer");
        return false;
      }
      decl.is_bool = false;
      decl.default_value = static_cast<int64_t>(value);
    }
    decl.range = SourceRange::cover(start, previous_range());
    module_.options.push_back(std::move(decl));
    return expect_statement_end();
  }

  // state_decl := 'state' NAME ['=' (signed_number | NAME)] [':' NAME] ['when' NAME]
  bool parse_state_decl() {
    const SourceRange start = advance().range;
    ast::StateDecl decl;
    if (!expect_name(decl.name, decl.name_range, "the state's name")) return false;
    if (accept(TokenKind::kAssign)) {
      if (at(TokenKind::kIdentifier)) {
        const Token& token = advance();
        decl.init_kind = ast::StateDecl::InitKind::kName;
        decl.init_name = token.text;
        decl.init_range = token.range;
      } else {
        const size_t number_pos = pos_;
        if (!parse_signed_number(decl.init_number)) return false;
        decl.init_range = SourceRange::cover(tokens_[number_pos].range, previous_range());
      }
    }
    if (accept(TokenKind::kColon)) {
      if (!expect_name(decl.dtype, decl.dtype_range, "a storage type (f32, bf16, f16)")) {
        return false;
      }
      decl.stochastic = accept_word("stochastic", decl.stochastic_range);
    }
    if (accept(TokenKind::kWhen)) {
      if (!expect_name(decl.when, decl.when_range, "a boolean option after 'when'")) return false;
    }
    decl.range = SourceRange::cover(start, previous_range());
    module_.states.push_back(std::move(decl));
    return expect_statement_end();
  }

  // storage_decl := ('param' | 'grad') ':' NAME ['stochastic']
  bool parse_storage_decl() {
    ast::StorageDecl decl;
    const Token& buffer = advance();
    decl.buffer = buffer.text;
    decl.buffer_range = buffer.range;
    advance();  // ':'
    if (!expect_name(decl.dtype, decl.dtype_range, "a storage type (f32, bf16, f16)")) {
      return false;
    }
    decl.stochastic = accept_word("stochastic", decl.stochastic_range);
    decl.range = SourceRange::cover(decl.buffer_range, previous_range());
    module_.storages.push_back(std::move(decl));
    return expect_statement_end();
  }

  // A contextual word (an identifier that is not a keyword, such as `stochastic`).
  bool accept_word(const char* word, SourceRange& range) {
    if (!at(TokenKind::kIdentifier) || peek().text != word) return false;
    range = advance().range;
    return true;
  }

  // scalar_decl := 'scalar' NAME '=' signed_number
  bool parse_scalar_decl() {
    const SourceRange start = advance().range;
    ast::ScalarDecl decl;
    if (!expect_name(decl.name, decl.name_range, "the scalar's name")) return false;
    if (!expect(TokenKind::kAssign, "'=' and an initial value")) return false;
    if (!parse_signed_number(decl.init)) return false;
    decl.range = SourceRange::cover(start, previous_range());
    module_.scalars.push_back(std::move(decl));
    return expect_statement_end();
  }

  // step_block := 'step' block
  bool parse_step_block() {
    const SourceRange keyword = advance().range;
    module_.step_ranges.push_back(keyword);
    std::vector<StmtPtr> body;
    if (!parse_block(body)) return false;
    if (module_.step_ranges.size() == 1) module_.step = std::move(body);
    return true;
  }

  // ---- Statements --------------------------------------------------------------------------

  // block := '{' { statement | separator } '}'
  bool parse_block(std::vector<StmtPtr>& body) {
    if (!expect(TokenKind::kLeftBrace, "'{'")) return false;
    while (!at(TokenKind::kRightBrace)) {
      if (at(TokenKind::kEnd)) return fail("'}' to close the block");
      if (accept(TokenKind::kNewline) || accept(TokenKind::kSemicolon)) continue;
      StmtPtr stmt = parse_statement();
      if (stmt) {
        body.push_back(std::move(stmt));
      } else {
        skip_line();
      }
    }
    advance();
    return true;
  }

  // statement := 'let' NAME '=' expr | NAME '=' expr | if_statement
  StmtPtr parse_statement() {
    if (at(TokenKind::kIf)) return parse_if();
    auto stmt = std::make_unique<ast::Stmt>();
    const SourceRange start = peek().range;
    stmt->kind = accept(TokenKind::kLet) ? StmtKind::kLet : StmtKind::kAssign;
    if (!at(TokenKind::kIdentifier)) {
      fail(stmt->kind == StmtKind::kLet ? "a name after 'let'" : "a statement ('let', an assignment or 'if')");
      return nullptr;
    }
    const Token& name = advance();
    stmt->name = name.text;
    stmt->name_range = name.range;
    if (!expect(TokenKind::kAssign, "'='")) return nullptr;
    stmt->value = parse_expr();
    if (!stmt->value) return nullptr;
    stmt->range = SourceRange::cover(start, previous_range());
    if (!expect_statement_end()) return nullptr;
    return stmt;
  }

  // if_statement := 'if' expr block ['else' (block | if_statement)]
  StmtPtr parse_if() {
    auto stmt = std::make_unique<ast::Stmt>();
    stmt->kind = StmtKind::kIf;
    const SourceRange start = advance().range;
    stmt->condition = parse_expr();
    if (!stmt->condition) return nullptr;
    if (!parse_block(stmt->then_body)) return nullptr;
    if (accept(TokenKind::kElse)) {
      if (at(TokenKind::kIf)) {
        StmtPtr nested = parse_if();
        if (!nested) return nullptr;
        stmt->else_body.push_back(std::move(nested));
      } else if (!parse_block(stmt->else_body)) {
        return nullptr;
      }
    }
    stmt->range = SourceRange::cover(start, previous_range());
    return stmt;
  }

  // ---- Expressions, lowest precedence first -------------------------------------------------

  ExprPtr make_binary(std::string op, SourceRange op_range, ExprPtr a, ExprPtr b) {
    auto e = std::make_unique<ast::Expr>();
    e->kind = ExprKind::kBinary;
    e->name = std::move(op);
    e->name_range = op_range;
    e->range = SourceRange::cover(a->range, b->range);
    e->operands.push_back(std::move(a));
    e->operands.push_back(std::move(b));
    return e;
  }

  ExprPtr make_unary(std::string op, SourceRange op_range, ExprPtr a) {
    auto e = std::make_unique<ast::Expr>();
    e->kind = ExprKind::kUnary;
    e->name = std::move(op);
    e->name_range = op_range;
    e->range = SourceRange::cover(op_range, a->range);
    e->operands.push_back(std::move(a));
    return e;
  }

  // Deep nesting is a hostile input, not a rule: refuse it before the stack runs out.
  struct DepthGuard {
    explicit DepthGuard(int& depth) : depth_(depth) { ++depth_; }
    ~DepthGuard() { --depth_; }
    int& depth_;
  };
  static constexpr int kMaxDepth = 200;

  // expr := or_expr ['?' expr ':' expr]
  ExprPtr parse_expr() {
    DepthGuard guard(depth_);
    if (depth_ > kMaxDepth) {
      diags_.error(peek().range, "expression nested too deeply");
      return nullptr;
    }
    ExprPtr cond = parse_or();
    if (!cond || !at(TokenKind::kQuestion)) return cond;
    advance();
    ExprPtr a = parse_expr();
    if (!a) return nullptr;
    if (!expect(TokenKind::kColon, "':' in 'c ? a : b'")) return nullptr;
    ExprPtr b = parse_expr();
    if (!b) return nullptr;
    auto e = std::make_unique<ast::Expr>();
    e->kind = ExprKind::kTernary;
    e->range = SourceRange::cover(cond->range, b->range);
    e->operands.push_back(std::move(cond));
    e->operands.push_back(std::move(a));
    e->operands.push_back(std::move(b));
    return e;
  }

  // or_expr := and_expr {'or' and_expr}
  ExprPtr parse_or() {
    ExprPtr a = parse_and();
    while (a && at(TokenKind::kOr)) {
      const SourceRange op = advance().range;
      ExprPtr b = parse_and();
      if (!b) return nullptr;
      a = make_binary("or", op, std::move(a), std::move(b));
    }
    return a;
  }

  // and_expr := not_expr {'and' not_expr}
  ExprPtr parse_and() {
    ExprPtr a = parse_not();
    while (a && at(TokenKind::kAnd)) {
      const SourceRange op = advance().range;
      ExprPtr b = parse_not();
      if (!b) return nullptr;
      a = make_binary("and", op, std::move(a), std::move(b));
    }
    return a;
  }

  // not_expr := 'not' not_expr | comparison
  ExprPtr parse_not() {
    if (!at(TokenKind::kNot)) return parse_comparison();
    DepthGuard guard(depth_);
    if (depth_ > kMaxDepth) {
      diags_.error(peek().range, "expression nested too deeply");
      return nullptr;
    }
    const SourceRange op = advance().range;
    ExprPtr a = parse_not();
    if (!a) return nullptr;
    return make_unary("not", op, std::move(a));
  }

  static const char* comparison_spelling(TokenKind kind) {
    switch (kind) {
      case TokenKind::kLess: return "<";
      case TokenKind::kLessEqual: return "<=";
      case TokenKind::kGreater: return ">";
      case TokenKind::kGreaterEqual: return ">=";
      case TokenKind::kEqual: return "==";
      case TokenKind::kNotEqual: return "!=";
      default: return nullptr;
    }
  }

  // comparison := additive [compare_op additive]   (comparisons do not chain)
  ExprPtr parse_comparison() {
    ExprPtr a = parse_additive();
    if (!a) return nullptr;
    const char* op = comparison_spelling(peek().kind);
    if (!op) return a;
    const SourceRange op_range = advance().range;
    ExprPtr b = parse_additive();
    if (!b) return nullptr;
    if (comparison_spelling(peek().kind)) {
      diags_.error(peek().range, "comparisons do not chain; write 'a < b and b < c'");
      return nullptr;
    }
    return make_binary(op, op_range, std::move(a), std::move(b));
  }

  // additive := multiplicative {('+' | '-') multiplicative}
  ExprPtr parse_additive() {
    ExprPtr a = parse_multiplicative();
    while (a && (at(TokenKind::kPlus) || at(TokenKind::kMinus))) {
      const Token& op = advance();
      ExprPtr b = parse_multiplicative();
      if (!b) return nullptr;
      a = make_binary(op.kind == TokenKind::kPlus ? "+" : "-", op.range, std::move(a), std::move(b));
    }
    return a;
  }

  // multiplicative := unary {('*' | '/') unary}
  ExprPtr parse_multiplicative() {
    ExprPtr a = parse_unary();
    while (a && (at(TokenKind::kStar) || at(TokenKind::kSlash))) {
      const Token& op = advance();
      ExprPtr b = parse_unary();
      if (!b) return nullptr;
      a = make_binary(op.kind == TokenKind::kStar ? "*" : "/", op.range, std::move(a), std::move(b));
    }
    return a;
  }

  // unary := '-' unary | power
  ExprPtr parse_unary() {
    if (!at(TokenKind::kMinus)) return parse_power();
    DepthGuard guard(depth_);
    if (depth_ > kMaxDepth) {
      diags_.error(peek().range, "expression nested too deeply");
      return nullptr;
    }
    const SourceRange op = advance().range;
    ExprPtr a = parse_unary();
    if (!a) return nullptr;
    return make_unary("-", op, std::move(a));
  }

  // power := primary ['^' unary]   (right-associative: 2 ^ 3 ^ 2 = 2 ^ 9; -x ^ 2 = -(x ^ 2))
  ExprPtr parse_power() {
    ExprPtr base = parse_primary();
    if (!base || !at(TokenKind::kCaret)) return base;
    const SourceRange op = advance().range;
    ExprPtr exponent = parse_unary();
    if (!exponent) return nullptr;
    return make_binary("^", op, std::move(base), std::move(exponent));
  }

  // primary := NUMBER | 'true' | 'false' | NAME ['(' [expr {',' expr}] ')'] | '(' expr ')'
  ExprPtr parse_primary() {
    auto e = std::make_unique<ast::Expr>();
    const Token& token = peek();
    e->range = token.range;
    switch (token.kind) {
      case TokenKind::kNumber:
        e->kind = ExprKind::kNumber;
        e->number = token.number;
        advance();
        return e;
      case TokenKind::kTrue:
      case TokenKind::kFalse:
        e->kind = ExprKind::kBool;
        e->boolean = token.kind == TokenKind::kTrue;
        advance();
        return e;
      case TokenKind::kIdentifier: {
        e->name = token.text;
        e->name_range = token.range;
        advance();
        if (!at(TokenKind::kLeftParen)) {
          e->kind = ExprKind::kName;
          return e;
        }
        e->kind = ExprKind::kCall;
        advance();
        ++paren_depth_;
        if (!at(TokenKind::kRightParen)) {
          do {
            ExprPtr argument = parse_expr();
            if (!argument) return nullptr;
            e->operands.push_back(std::move(argument));
          } while (accept(TokenKind::kComma));
        }
        if (!expect(TokenKind::kRightParen, "')' or ','")) return nullptr;
        --paren_depth_;
        e->range = SourceRange::cover(e->range, previous_range());
        return e;
      }
      case TokenKind::kLeftParen: {
        advance();
        ++paren_depth_;
        ExprPtr inner = parse_expr();
        if (!inner) return nullptr;
        if (!expect(TokenKind::kRightParen, "')'")) return nullptr;
        --paren_depth_;
        inner->range = SourceRange::cover(e->range, previous_range());
        return inner;
      }
      default:
        fail("an expression");
        return nullptr;
    }
  }

  std::vector<Token> tokens_;
  support::Diagnostics& diags_;
  size_t pos_ = 0;
  int paren_depth_ = 0;
  int depth_ = 0;
  ast::Module module_;
};

}  // namespace

ast::Module parse_rule(const support::SourceFile& file, support::Diagnostics& diags) {
  return Parser(file, diags).parse_file();
}

}  // namespace fuseopt::frontend
