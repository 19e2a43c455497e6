# Warnings are on and kept clean for every target of the project.
add_compile_options(-Wall -Wextra -Wpedantic -Wno-missing-field-initializers)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  # -Wrestrict gives false positives on std::string concatenation in GCC 12 at -O2 and
  # above (GCC bug 105329), inside libstdc++'s own headers.
  add_compile_options(-Wshadow=local -Wno-restrict)
endif()
