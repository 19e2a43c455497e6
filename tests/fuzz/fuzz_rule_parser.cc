// libFuzzer target: arbitrary bytes as a rule file through the whole frontend (lexer,
// parser, sema, lowering for every option combination), the pass pipeline with its
// verifier, and a short interpreter run. Any crash, hang, leak or internal error is a bug:
// bad input must only ever produce diagnostics.
#include <cstddef>
#include <cstdint>
#include <string>

#include "frontend/rule.h"
#include "ir/interpreter.h"
#include "support/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4096) return 0;  // rules are small; long inputs only slow the search down
  auto file = std::make_shared<fuseopt::support::SourceFile>(
      "fuzz.opt", std::string(reinterpret_cast<const char*>(data), size));
  fuseopt::support::Diagnostics diags(*file);
  const auto rule = fuseopt::frontend::Rule::check(file, diags);
  (void)diags.render();
  if (!rule) return 0;
  // An internal error escapes as an exception, which libFuzzer reports as a crash.
  for (const auto& options : rule->option_combinations(8)) {
    const fuseopt::ir::Kernel kernel = rule->compile(options);
    fuseopt::ir::Interpreter interpreter(kernel);
    constexpr int64_t kSize = 5;
    std::vector<std::vector<float>> buffers(kernel.buffers.size(), std::vector<float>(kSize, 0.5f));
    fuseopt::ir::TensorArgs tensor{kSize, {}, {}};
    for (auto& buffer : buffers) tensor.buffers.push_back(buffer.data());
    std::vector<double> hypers;
    for (const auto& h : kernel.hypers) hypers.push_back(h.default_value);
    interpreter.initialize(tensor, hypers);
    for (int t = 1; t <= 2; ++t) interpreter.step(std::span(&tensor, 1), hypers, t);
  }
  return 0;
}
