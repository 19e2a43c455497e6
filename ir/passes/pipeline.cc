// The optimisation pipeline, as one straight-line list (after Halide's Lower.cpp): each pass
// is followed by the verifier, so a broken invariant is blamed on the pass that broke it.
#include "ir/passes/pipeline.h"

#include "ir/passes/eliminate_common_subexpressions.h"
#include "ir/passes/eliminate_dead_code.h"
#include "ir/passes/fold_constants.h"
#include "ir/passes/hoist_scalars.h"
#include "ir/passes/split_phases.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "support/error.h"

namespace fuseopt::ir {
namespace {

Kernel run_pass(const char* name, Kernel (*pass)(const Kernel&), const Kernel& kernel,
                const PipelineOptions& options) {
  Kernel result = pass(kernel);
  try {
    verify(result);
  } catch (const InternalError& error) {
    throw InternalError(std::string(error.what()) + " (after pass " + name + ")");
  }
  if (options.print_after_each != nullptr) {
    *options.print_after_each << "; after " << name << "\n" << print_kernel(result);
  }
  return result;
}

}  // namespace

Kernel optimize(Kernel kernel, const PipelineOptions& options) {
  verify(kernel);
  kernel = run_pass("fold_constants", fold_constants, kernel, options);
  kernel = run_pass("eliminate_common_subexpressions", eliminate_common_subexpressions, kernel,
                    options);
  kernel = run_pass("eliminate_dead_code", eliminate_dead_code, kernel, options);
  kernel = run_pass("split_phases", split_phases, kernel, options);
  kernel = run_pass("hoist_scalars", hoist_scalars, kernel, options);
  kernel = run_pass("eliminate_common_subexpressions", eliminate_common_subexpressions, kernel,
                    options);
  kernel = run_pass("eliminate_dead_code", eliminate_dead_code, kernel, options);
  return kernel;
}

}  // namespace fuseopt::ir
