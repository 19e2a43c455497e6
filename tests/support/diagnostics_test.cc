#include "support/diagnostics.h"

#include <gtest/gtest.h>

#include "support/edit_distance.h"

namespace fuseopt::support {
namespace {

TEST(Diagnostics, RendersFileLineColumnAndCaret) {
  SourceFile file("rules/bad.opt", "rule x \"y\"\nstep {\n    m = m + gard\n}\n");
  Diagnostics diags(file);
  const auto begin = static_cast<uint32_t>(file.text().find("gard"));
  diags.error({begin, begin + 4}, "unknown name 'gard'; did you mean 'grad'?");
  EXPECT_EQ(diags.render(),
            "rules/bad.opt:3:13: error: unknown name 'gard'; did you mean 'grad'?\n"
            "        m = m + gard\n"
            "                ^~~~\n");
  EXPECT_TRUE(diags.has_errors());
}

TEST(Diagnostics, WarningsDoNotCountAsErrorsAndDuplicatesCollapse) {
  SourceFile file("f.opt", "hyper lr = 1\n");
  Diagnostics diags(file);
  diags.warning({6, 8}, "hyper 'lr' is never used");
  diags.warning({6, 8}, "hyper 'lr' is never used");
  EXPECT_FALSE(diags.has_errors());
  EXPECT_EQ(diags.all().size(), 1u);
  EXPECT_NE(diags.render().find("f.opt:1:7: warning: "), std::string::npos);
}

TEST(Diagnostics, TabsStayInTheCaretLineAndEndOfFileIsSafe) {
  SourceFile file("f.opt", "\tx = 1");
  Diagnostics diags(file);
  diags.error({1, 2}, "bad");
  EXPECT_NE(diags.render().find("\n    \t^\n"), std::string::npos);
  Diagnostics at_end(file);
  at_end.error({6, 6}, "missing");
  EXPECT_NE(at_end.render().find("f.opt:1:7: error: missing"), std::string::npos);
}

TEST(EditDistance, CountsEditsAndSuggestsOnlyCloseNames) {
  EXPECT_EQ(edit_distance("gard", "grad"), 1);  // one swap
  EXPECT_EQ(edit_distance("", "abc"), 3);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3);
  EXPECT_EQ(closest_match("gard", {"grad", "param", "t"}), "grad");
  EXPECT_EQ(closest_match("numell", {"numel", "param"}), "numel");
  EXPECT_FALSE(closest_match("zzzzzz", {"grad", "param"}).has_value());
}

}  // namespace
}  // namespace fuseopt::support
