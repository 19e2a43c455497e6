// `fuseopt emit RULE (--ir | --halide | --cuda)`: prints what one rule compiles to with the
// given option values. Only the IR exists so far; the code generators are not built yet.
#include <iostream>
#include <string>

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
          "CUDA C (--cuda). The Halide and CUDA backends are not built yet: --halide and\n"
          "--cuda exit with code 4.\n",
      .positional_name = "RULE",
      .min_positionals = 1,
      .max_positionals = 1,
      .flags =
          {
              {"--ir", FlagKind::kSwitch, "", "print the IR after the optimisation passes"},
              {"--halide", FlagKind::kSwitch, "",
               "print the Halide pipeline description (not built yet)"},
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
  if (args.has("--halide")) {
    throw EnvironmentError("the halide backend is not built yet; 'fuseopt emit --ir' works");
  }
  if (args.has("--cuda")) {
    throw EnvironmentError("the cuda backend is not built yet; 'fuseopt emit --ir' works");
  }

  ir::PipelineOptions pipeline;
  if (args.has("--passes")) pipeline.print_after_each = &std::cout;
  const ir::Kernel kernel = compile_rule(rule, options, pipeline);
  // With --passes the last pass has printed the final IR already.
  if (!args.has("--passes")) std::cout << ir::print_kernel(kernel);
  return 0;
}

}  // namespace fuseopt::tools
