#include "tests/testing/golden.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace fuseopt::testing {
// Set by main() from --update-golden.
bool update_flag = false;

std::filesystem::path source_dir() { return FUSEOPT_SOURCE_DIR; }

bool updating_golden_files() {
  const char* env = std::getenv("FUSEOPT_UPDATE_GOLDEN");
  return update_flag || (env != nullptr && std::string(env) == "1");
}

void expect_matches_golden(const std::string& actual, const std::filesystem::path& golden) {
  if (updating_golden_files()) {
    std::filesystem::create_directories(golden.parent_path());
    std::ofstream(golden, std::ios::binary) << actual;
    return;
  }
  std::ifstream in(golden, std::ios::binary);
  ASSERT_TRUE(in) << "missing golden file " << golden
                  << "; run the test with --update-golden to create it";
  std::ostringstream expected;
  expected << in.rdbuf();
  EXPECT_EQ(expected.str(), actual)
      << "output differs from " << golden
      << "; if the change is intended, rerun with --update-golden and review the diff";
}

}  // namespace fuseopt::testing

// The test programs' main: GoogleTest's flags plus --update-golden.
int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--update-golden") fuseopt::testing::update_flag = true;
  }
  return RUN_ALL_TESTS();
}
