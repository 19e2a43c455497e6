// Source text with a name, and the byte ranges that diagnostics point into.
// Every AST node carries a SourceRange so any later stage can point back at the rule text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fuseopt::support {

/// A half-open byte range [begin, end) into one SourceFile.
struct SourceRange {
  uint32_t begin = 0;
  uint32_t end = 0;

  /// The smallest range covering both.
  static SourceRange cover(SourceRange a, SourceRange b) {
    return {a.begin < b.begin ? a.begin : b.begin, a.end > b.end ? a.end : b.end};
  }
};

/// A 1-based line and column, as editors count them (column counts bytes).
struct LineColumn {
  int line = 1;
  int column = 1;
};

/// The text of one rule, with the name shown in diagnostics (a path, or "<builtin>/adam.opt").
class SourceFile {
 public:
  SourceFile(std::string name, std::string text);

  const std::string& name() const { return name_; }
  const std::string& text() const { return text_; }

  /// The line and column of a byte offset (offsets past the end map to the last position).
  LineColumn locate(uint32_t offset) const;
  /// The text of a 1-based line, without its newline.
  std::string_view line_text(int line) const;

 private:
  std::string name_;
  std::string text_;
  std::vector<uint32_t> line_starts_;
};

/// Reads a whole file; throws UserError naming the path when it cannot.
SourceFile read_source_file(const std::string& path);

}  // namespace fuseopt::support
