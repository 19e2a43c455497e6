// Edit distance for "did you mean" suggestions, after ninja's edit_distance.cc.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fuseopt::support {

/// Levenshtein distance (insert, delete, substitute each cost 1).
int edit_distance(std::string_view a, std::string_view b);

/// The candidate closest to `name`, if it is close enough to be a plausible typo.
std::optional<std::string> closest_match(std::string_view name,
                                         const std::vector<std::string>& candidates);

}  // namespace fuseopt::support
