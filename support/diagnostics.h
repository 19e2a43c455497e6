// User-facing diagnostics: "file:line:col: error: message", the source line, and a caret.
// Stages report into a Diagnostics sink and keep going, so one run shows every error it can.
#pragma once

#include <string>
#include <vector>

#include "support/source_file.h"

namespace fuseopt::support {

enum class Severity { kError, kWarning, kNote };

struct Diagnostic {
  Severity severity = Severity::kError;
  SourceRange range;
  std::string message;  ///< lower case, no trailing period, e.g. "unknown name 'gard'"
};

/// Collects the diagnostics of one SourceFile and renders them in the documented format.
class Diagnostics {
 public:
  explicit Diagnostics(const SourceFile& file) : file_(&file) {}

  void error(SourceRange range, std::string message);
  void warning(SourceRange range, std::string message);
  void note(SourceRange range, std::string message);

  bool has_errors() const { return error_count_ > 0; }
  int error_count() const { return error_count_; }
  const std::vector<Diagnostic>& all() const { return diagnostics_; }
  const SourceFile& file() const { return *file_; }

  /// Every diagnostic in file order, each with its line and caret.
  std::string render() const;
  /// One diagnostic in the documented format (ends with a newline).
  std::string render(const Diagnostic& diagnostic) const;

 private:
  void add(Severity severity, SourceRange range, std::string message);

  const SourceFile* file_;
  std::vector<Diagnostic> diagnostics_;
  int error_count_ = 0;
};

}  // namespace fuseopt::support
