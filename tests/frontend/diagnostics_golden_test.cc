// One bad rule per diagnostic (tests/frontend/diagnostics/*.opt) -> the exact messages
// (*.expected): format, caret, "did you mean", recovery, warnings.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "frontend/rule.h"
#include "tests/testing/golden.h"

namespace fuseopt::frontend {
namespace {

namespace fs = std::filesystem;

std::vector<fs::path> bad_rules() {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(testing::source_dir() / "tests/frontend/diagnostics")) {
    if (entry.path().extension() == ".opt") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string diagnose(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  auto file = std::make_shared<support::SourceFile>("diagnostics/" + path.filename().string(), text.str());
  support::Diagnostics diags(*file);
  const bool ok = Rule::check(file, diags).has_value();
  return diags.render() + (ok ? "result: ok\n" : "result: " + std::to_string(diags.error_count()) + " error(s)\n");
}

TEST(DiagnosticsGolden, EveryBadRuleGivesItsExactMessages) {
  const auto files = bad_rules();
  ASSERT_GE(files.size(), 20u);
  for (const fs::path& path : files) {
    SCOPED_TRACE(path.filename().string());
    fs::path golden = path;
    golden.replace_extension(".expected");
    testing::expect_matches_golden(diagnose(path), golden);
  }
}

// Every file except the warnings one must fail; the warnings one must pass.
TEST(DiagnosticsGolden, BadRulesFailAndWarningsPass) {
  for (const fs::path& path : bad_rules()) {
    SCOPED_TRACE(path.filename().string());
    const std::string out = diagnose(path);
    if (path.stem() == "warnings") {
      EXPECT_NE(out.find("result: ok"), std::string::npos);
      EXPECT_NE(out.find("warning:"), std::string::npos);
    } else {
      EXPECT_NE(out.find(": error: "), std::string::npos);
    }
  }
}

}  // namespace
}  // namespace fuseopt::frontend
