#include "frontend/lexer.h"

#include <cctype>
#include <charconv>
#include <cstdlib>
#include <unordered_map>

namespace fuseopt::frontend {
namespace {

const std::unordered_map<std::string_view, TokenKind>& keywords() {
  static const std::unordered_map<std::string_view, TokenKind> table = {
      {"rule", TokenKind::kRule},   {"hyper", TokenKind::kHyper}, {"option", TokenKind::kOption},
      {"state", TokenKind::kState}, {"scalar", TokenKind::kScalar}, {"step", TokenKind::kStep},
      {"let", TokenKind::kLet},     {"if", TokenKind::kIf},       {"else", TokenKind::kElse},
      {"when", TokenKind::kWhen},   {"true", TokenKind::kTrue},   {"false", TokenKind::kFalse},
      {"and", TokenKind::kAnd},     {"or", TokenKind::kOr},       {"not", TokenKind::kNot},
  };
  return table;
}

bool is_identifier_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool is_identifier_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
bool is_digit(char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }

class Lexer {
 public:
  Lexer(const support::SourceFile& file, support::Diagnostics& diags)
      : text_(file.text()), diags_(diags) {}

  std::vector<Token> run() {
    while (true) {
      skip_blanks_and_comments();
      if (pos_ >= text_.size()) break;
      lex_one();
    }
    push(TokenKind::kEnd, static_cast<uint32_t>(text_.size()), static_cast<uint32_t>(text_.size()));
    return std::move(tokens_);
  }

 private:
  void skip_blanks_and_comments() {
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == ' ' || c == '\t' || c == '\r') {
        ++pos_;
      } else if (c == '#') {
        while (pos_ < text_.size() && text_[pos_] != '\n') ++pos_;
      } else {
        break;
      }
    }
  }

  Token& push(TokenKind kind, uint32_t begin, uint32_t end) {
    Token token;
    token.kind = kind;
    token.range = {begin, end};
    tokens_.push_back(std::move(token));
    return tokens_.back();
  }

  void lex_one() {
    const auto begin = static_cast<uint32_t>(pos_);
    const char c = text_[pos_];
    if (c == '\n') {
      ++pos_;
      push(TokenKind::kNewline, begin, begin + 1);
    } else if (is_identifier_start(c)) {
      lex_word(begin);
    } else if (is_digit(c) || (c == '.' && pos_ + 1 < text_.size() && is_digit(text_[pos_ + 1]))) {
      lex_number(begin);
    } else if (c == '"') {
      lex_string(begin);
    } else {
      lex_punctuation(begin);
    }
  }

  void lex_word(uint32_t begin) {
    while (pos_ < text_.size() && is_identifier_char(text_[pos_])) ++pos_;
    const std::string_view word = std::string_view(text_).substr(begin, pos_ - begin);
    const auto keyword = keywords().find(word);
    Token& token = push(keyword == keywords().end() ? TokenKind::kIdentifier : keyword->second,
                        begin, static_cast<uint32_t>(pos_));
    token.text = std::string(word);
  }

  void lex_number(uint32_t begin) {
    bool is_integer = true;
    while (pos_ < text_.size() && is_digit(text_[pos_])) ++pos_;
    if (pos_ < text_.size() && text_[pos_] == '.') {
      is_integer = false;
      ++pos_;
      while (pos_ < text_.size() && is_digit(text_[pos_])) ++pos_;
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      is_integer = false;
      size_t p = pos_ + 1;
      if (p < text_.size() && (text_[p] == '+' || text_[p] == '-')) ++p;
      if (p < text_.size() && is_digit(text_[p])) {
        pos_ = p;
        while (pos_ < text_.size() && is_digit(text_[pos_])) ++pos_;
      } else {
        pos_ = p;
        diags_.error({begin, static_cast<uint32_t>(pos_)}, "malformed number: exponent has no digits");
        push(TokenKind::kError, begin, static_cast<uint32_t>(pos_));
        return;
      }
    }
    // A letter glued to a number ("1e", "2x") is one malformed token, not two.
    if (pos_ < text_.size() && is_identifier_char(text_[pos_])) {
      while (pos_ < text_.size() && is_identifier_char(text_[pos_])) ++pos_;
      diags_.error({begin, static_cast<uint32_t>(pos_)},
                   "malformed number '" + text_.substr(begin, pos_ - begin) + "'");
      push(TokenKind::kError, begin, static_cast<uint32_t>(pos_));
      return;
    }
    const std::string spelling = text_.substr(begin, pos_ - begin);
    Token& token = push(TokenKind::kNumber, begin, static_cast<uint32_t>(pos_));
    token.text = spelling;
    token.number = std::strtod(spelling.c_str(), nullptr);
    token.is_integer = is_integer;
  }

  void lex_string(uint32_t begin) {
    ++pos_;
    std::string contents;
    while (pos_ < text_.size() && text_[pos_] != '"' && text_[pos_] != '\n') {
      contents += text_[pos_++];
    }
    if (pos_ >= text_.size() || text_[pos_] != '"') {
      diags_.error({begin, static_cast<uint32_t>(pos_)}, "unterminated string");
      push(TokenKind::kError, begin, static_cast<uint32_t>(pos_));
      return;
    }
    ++pos_;
    Token& token = push(TokenKind::kString, begin, static_cast<uint32_t>(pos_));
    token.text = std::move(contents);
  }

  void lex_punctuation(uint32_t begin) {
    const char c = text_[pos_];
    const char next = pos_ + 1 < text_.size() ? text_[pos_ + 1] : '\0';
    auto one = [&](TokenKind kind) {
      ++pos_;
      push(kind, begin, begin + 1);
    };
    auto two = [&](TokenKind kind) {
      pos_ += 2;
      push(kind, begin, begin + 2);
    };
    switch (c) {
      case '=': return next == '=' ? two(TokenKind::kEqual) : one(TokenKind::kAssign);
      case '<': return next == '=' ? two(TokenKind::kLessEqual) : one(TokenKind::kLess);
      case '>': return next == '=' ? two(TokenKind::kGreaterEqual) : one(TokenKind::kGreater);
      case '!':
        if (next == '=') return two(TokenKind::kNotEqual);
        break;
      case ',': return one(TokenKind::kComma);
      case ':': return one(TokenKind::kColon);
      case ';': return one(TokenKind::kSemicolon);
      case '?': return one(TokenKind::kQuestion);
      case '{': return one(TokenKind::kLeftBrace);
      case '}': return one(TokenKind::kRightBrace);
      case '(': return one(TokenKind::kLeftParen);
      case ')': return one(TokenKind::kRightParen);
      case '+': return one(TokenKind::kPlus);
      case '-': return one(TokenKind::kMinus);
      case '*': return one(TokenKind::kStar);
      case '/': return one(TokenKind::kSlash);
      case '^': return one(TokenKind::kCaret);
      default:
        break;
    }
    // Report a UTF-8 sequence as one character, not as its bytes.
    size_t length = 1;
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0xC0) length = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : 2;
    length = std::min(length, text_.size() - pos_);
    const std::string shown = std::isprint(byte) ? "'" + std::string(1, c) + "'"
                              : length > 1      ? "'" + text_.substr(pos_, length) + "'"
                                                : "byte 0x" + hex(byte);
    if (c == '!') {
      diags_.error({begin, begin + 1}, "unexpected character '!'; write 'not' for negation or '!=' for inequality");
    } else {
      diags_.error({begin, static_cast<uint32_t>(begin + length)}, "unexpected character " + shown);
    }
    pos_ += length;
    push(TokenKind::kError, begin, static_cast<uint32_t>(pos_));
  }

  static std::string hex(unsigned char byte) {
    const char* digits = "0123456789abcdef";
    return {digits[byte >> 4], digits[byte & 15]};
  }

  const std::string& text_;
  support::Diagnostics& diags_;
  size_t pos_ = 0;
  std::vector<Token> tokens_;
};

}  // namespace

std::string describe(TokenKind kind) {
  switch (kind) {
    case TokenKind::kEnd: return "end of file";
    case TokenKind::kNewline: return "end of line";
    case TokenKind::kIdentifier: return "a name";
    case TokenKind::kNumber: return "a number";
    case TokenKind::kString: return "a string";
    case TokenKind::kRule: return "'rule'";
    case TokenKind::kHyper: return "'hyper'";
    case TokenKind::kOption: return "'option'";
    case TokenKind::kState: return "'state'";
    case TokenKind::kScalar: return "'scalar'";
    case TokenKind::kStep: return "'step'";
    case TokenKind::kLet: return "'let'";
    case TokenKind::kIf: return "'if'";
    case TokenKind::kElse: return "'else'";
    case TokenKind::kWhen: return "'when'";
    case TokenKind::kTrue: return "'true'";
    case TokenKind::kFalse: return "'false'";
    case TokenKind::kAnd: return "'and'";
    case TokenKind::kOr: return "'or'";
    case TokenKind::kNot: return "'not'";
    case TokenKind::kAssign: return "'='";
    case TokenKind::kComma: return "','";
    case TokenKind::kColon: return "':'";
    case TokenKind::kSemicolon: return "';'";
    case TokenKind::kQuestion: return "'?'";
    case TokenKind::kLeftBrace: return "'{'";
    case TokenKind::kRightBrace: return "'}'";
    case TokenKind::kLeftParen: return "'('";
    case TokenKind::kRightParen: return "')'";
    case TokenKind::kPlus: return "'+'";
    case TokenKind::kMinus: return "'-'";
    case TokenKind::kStar: return "'*'";
    case TokenKind::kSlash: return "'/'";
    case TokenKind::kCaret: return "'^'";
    case TokenKind::kLess: return "'<'";
    case TokenKind::kLessEqual: return "'<='";
    case TokenKind::kGreater: return "'>'";
    case TokenKind::kGreaterEqual: return "'>='";
    case TokenKind::kEqual: return "'=='";
    case TokenKind::kNotEqual: return "'!='";
    case TokenKind::kError: return "an invalid token";
  }
  return "a token";
}

std::vector<Token> tokenize(const support::SourceFile& file, support::Diagnostics& diags) {
  return Lexer(file, diags).run();
}

}  // namespace fuseopt::frontend
