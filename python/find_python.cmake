# Decides FUSEOPT_PYTHON (included from the root CMakeLists.txt before any library is made):
# the Python extension needs Python's development files and pybind11, and every library it
# links compiled as position-independent code.
if(FUSEOPT_SANITIZE OR FUSEOPT_FUZZ)
  # An instrumented extension cannot load into an uninstrumented interpreter.
  if(FUSEOPT_PYTHON)
    message(STATUS "fuseopt: Python package off in sanitizer and fuzz builds")
  endif()
  set(FUSEOPT_PYTHON OFF CACHE BOOL "Build the Python package (python/)" FORCE)
  return()
endif()

# The tests run with Debian's /usr/bin/python3 (the one with python3-torch), so the in-tree
# build prefers it over another python3 earlier on PATH; pip (scikit-build-core) and
# -DPython_EXECUTABLE=... choose their own.
if(NOT DEFINED Python_EXECUTABLE AND NOT SKBUILD AND EXISTS /usr/bin/python3)
  set(Python_EXECUTABLE /usr/bin/python3)
endif()

if(DEFINED FUSEOPT_PYTHON AND FUSEOPT_PYTHON)
  set(fuseopt_python_required REQUIRED)
else()
  set(fuseopt_python_required QUIET)
endif()
find_package(Python 3.8 COMPONENTS Interpreter Development.Module ${fuseopt_python_required})
if(Python_FOUND)
  find_package(pybind11 2.10 CONFIG ${fuseopt_python_required})
endif()
find_path(FUSEOPT_DLPACK_INCLUDE_DIR dlpack/dlpack.h)
if(FUSEOPT_DLPACK_INCLUDE_DIR STREQUAL "FUSEOPT_DLPACK_INCLUDE_DIR-NOTFOUND" AND
   fuseopt_python_required STREQUAL "REQUIRED")
  message(FATAL_ERROR "fuseopt: the Python package needs dlpack/dlpack.h (Debian: libdlpack-dev)")
endif()

set(fuseopt_python_default OFF)
if(Python_FOUND AND pybind11_FOUND AND FUSEOPT_DLPACK_INCLUDE_DIR)
  set(fuseopt_python_default ON)
endif()
option(FUSEOPT_PYTHON "Build the Python package (python/)" ${fuseopt_python_default})
if(FUSEOPT_PYTHON)
  message(STATUS "fuseopt: Python package with ${Python_EXECUTABLE} (${Python_VERSION}), "
                 "pybind11 ${pybind11_VERSION}")
  # The extension is a shared object that links the static libraries of the project.
  set(CMAKE_POSITION_INDEPENDENT_CODE ON)
endif()
