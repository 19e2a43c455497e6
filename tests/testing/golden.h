// Golden files: expected outputs kept in the repository. A run with --update-golden (or
// FUSEOPT_UPDATE_GOLDEN=1) rewrites them instead of comparing; review the diff, then commit.
#pragma once

#include <filesystem>
#include <string>

namespace fuseopt::testing {

/// The repository's root, for test data.
std::filesystem::path source_dir();

/// True when goldens are being regenerated.
bool updating_golden_files();

/// Compares `actual` with the golden file (a failing EXPECT with a diff hint when they
/// differ), or writes it when updating.
void expect_matches_golden(const std::string& actual, const std::filesystem::path& golden);

}  // namespace fuseopt::testing
