#include "support/diagnostics.h"

#include <algorithm>

namespace fuseopt::support {
namespace {

const char* severity_name(Severity severity) {
  switch (severity) {
    case Severity::kError:
      return "error";
    case Severity::kWarning:
      return "warning";
    case Severity::kNote:
      return "note";
  }
  return "error";
}

}  // namespace

void Diagnostics::error(SourceRange range, std::string message) {
  add(Severity::kError, range, std::move(message));
}

void Diagnostics::warning(SourceRange range, std::string message) {
  add(Severity::kWarning, range, std::move(message));
}

void Diagnostics::note(SourceRange range, std::string message) {
  add(Severity::kNote, range, std::move(message));
}

void Diagnostics::add(Severity severity, SourceRange range, std::string message) {
  // The same problem found twice (say, once per option combination) is reported once.
  for (const Diagnostic& d : diagnostics_) {
    if (d.severity == severity && d.range.begin == range.begin && d.range.end == range.end &&
        d.message == message) {
      return;
    }
  }
  if (severity == Severity::kError) ++error_count_;
  diagnostics_.push_back({severity, range, std::move(message)});
}

std::string Diagnostics::render(const Diagnostic& diagnostic) const {
  const LineColumn where = file_->locate(diagnostic.range.begin);
  std::string out = file_->name() + ":" + std::to_string(where.line) + ":" +
                    std::to_string(where.column) + ": " + severity_name(diagnostic.severity) +
                    ": " + diagnostic.message + "\n";
  const std::string_view line = file_->line_text(where.line);
  out += "    ";
  out += line;
  out += "\n    ";
  // Keep tabs in the caret line so the caret stays under the culprit in any tab width.
  const auto caret_column = std::min<size_t>(static_cast<size_t>(where.column - 1), line.size());
  for (size_t i = 0; i < caret_column; ++i) out += line[i] == '\t' ? '\t' : ' ';
  out += '^';
  const size_t length = diagnostic.range.end > diagnostic.range.begin
                             ? diagnostic.range.end - diagnostic.range.begin
                             : 1;
  const size_t tildes = std::min(length, line.size() > caret_column ? line.size() - caret_column : 1);
  for (size_t i = 1; i < tildes; ++i) out += '~';
  out += '\n';
  return out;
}

std::string Diagnostics::render() const {
  // In file order, as a reader goes through the file, whichever stage found each problem.
  std::vector<const Diagnostic*> ordered;
  for (const Diagnostic& d : diagnostics_) ordered.push_back(&d);
  std::stable_sort(ordered.begin(), ordered.end(), [](const Diagnostic* a, const Diagnostic* b) {
    return a->range.begin < b->range.begin;
  });
  std::string out;
  for (const Diagnostic* d : ordered) out += render(*d);
  return out;
}

}  // namespace fuseopt::support
