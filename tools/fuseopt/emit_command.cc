// `fuseopt emit RULE (--ir | --halide | --cuda)`: prints what one rule compiles to with the
// given option values: the IR, or what a backend's code generator makes of it.
#include <iostream>
#include <string>

#include "codegen/halide/cpu_codegen.h"
#include "frontend/rule.h"
#include "ir/passes/pipeline.h"
#include "ir/printer.h"
#include "support/error.h"
#include "tools/fuseopt/flag_values.h"
#include "tools/fuseopt/rule_setup.h"
#include "tools/fuseopt/subcommands.h"

namespace fuseopt::tools {

CommandSpec emit_spec() {
  return {
      .name = "emit",
      .synopsis = "RULE (--ir | --halide | --cuda) [--option NAME=VALUE]... [--passes]",
      .description =
          "Compiles RULE with the given option values (the others at their defaults) and\n"
          "prints the optimised IR (--ir), the Halide pipeline (--halide) or the generated\n"
          "CUDA C (--cuda). --halide describes, per phase, the Halide definitions, the\n"
          "schedule (--target and the default schedule) and Halide's lowered statement.\n"
          "The CUDA backend is not built yet: --cuda exits with code 4.\n",
      .positional_name = "RULE",
      .min_positionals = 1,
      .max_positionals = 1,
      .flags =
          {
              {"--ir", FlagKind::kSwitch, "", "print the IR after the optimisation passes"},
              {"--halide", FlagKind::kSwitch, "", "print the Halide pipelines"},
              {"--target", FlagKind::kValue, "T",
               "with --halide: host (default), x86-64-v2/v3/v4 or a Halide target"},
              {"--cuda", FlagKind::kSwitch, "", "print the generated CUDA C (not built yet)"},
              {"--option", FlagKind::kRepeated, "NAME=VALUE",
               "set an option: true, false or an integer (repeatable)"},
              {"--passes", FlagKind::kSwitch, "", "with --ir: print the IR after every pass"},
          },
  };
}

int run_emit(const Args& args) {
  const int targets = args.has("--ir") + args.has("--halide") + args.has("--cuda");
  if (targets != 1) {
    throw UsageError(std::string(targets == 0 ? "'emit' needs one of" : "'emit' takes only one of") +
                     " --ir, --halide and --cuda; " + see_help("emit"));
  }
  if (args.has("--passes") && !args.has("--ir")) {
    throw UsageError("--passes goes with --ir; " + see_help("emit"));
  }

  // The rule and its options are checked first, so their errors show whatever the target.
  const frontend::Rule rule = frontend::load_rule(args.positionals()[0]);
  const auto options = rule.resolve_options(parse_assignments(args.values("--option"), "--option"));
  if (args.has("--target") && !args.has("--halide")) {
    throw UsageError("--target goes with --halide; " + see_help("emit"));
  }
  if (args.has("--cuda")) {
    throw EnvironmentError("the cuda backend is not built yet; 'fuseopt emit --ir' works");
  }

  ir::PipelineOptions pipeline;
  if (args.has("--passes")) pipeline.print_after_each = &std::cout;
  const ir::Kernel kernel = compile_rule(rule, options, pipeline);
  if (args.has("--halide")) {
    std::cout << codegen::describe_halide_pipelines(kernel, codegen::default_cpu_schedule(),
                                                    args.value_or("--target", "host"));
    return 0;
  }
  // With --passes the last pass has printed the final IR already.
  if (!args.has("--passes")) std::cout << ir::print_kernel(kernel);
  return 0;
}

}  // namespace fuseopt::tools
