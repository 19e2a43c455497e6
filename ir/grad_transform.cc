#include "ir/grad_transform.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <string>

#include "ir/rewrite.h"
#include "ir/verifier.h"
#include "support/error.h"

namespace fuseopt::ir {
namespace {

double hyper_value(const Kernel& kernel, std::span<const double> hypers, const char* name) {
  const int index = kernel.hyper_index(name);
  FUSEOPT_CHECK(index >= 0 && static_cast<size_t>(index) < hypers.size(),
                std::string("the kernel has no hyper ") + name);
  return hypers[static_cast<size_t>(index)];
}

Expr element_constant(double value) { return make_cast(Type::kF32, make_const(value)); }

}  // namespace

bool is_user_hyper(const std::string& name) { return name.empty() || name[0] != '%'; }

void apply_grad_transform(Kernel& kernel, GradTransform transform) {
  FUSEOPT_CHECK(!kernel.grad_transform.any(), "apply_grad_transform: applied twice");
  FUSEOPT_CHECK(kernel.is_split, "apply_grad_transform: the kernel must be split into phases");
  if (!transform.any()) return;
  for (const char* name : {kGradScaleHyper, kMaxGradNormHyper, kFoundInfHyper}) {
    if (kernel.hyper_index(name) >= 0) {
      throw UserError("rule '" + kernel.rule + "' declares a hyper '" + name +
                      "', the name loss scaling and clipping use; rename it");
    }
  }
  for (const BufferDecl& buffer : kernel.buffers) {
    if (buffer.init.kind == StateInit::Kind::kGrad && buffer.role == BufferRole::kState) {
      // The first gradient would have to be unscaled and clipped before the step that
      // computes the factors; no built-in rule starts a state that way.
      throw UserError("state '" + buffer.name + "' of rule '" + kernel.rule +
                      "' starts as the gradient; loss scaling and gradient clipping do not "
                      "support such states");
    }
  }
  if (transform.unscale) {
    kernel.hypers.push_back({kGradScaleHyper, 1.0});
    kernel.hypers.push_back({kFoundInfHyper, 0.0});
  }
  if (transform.clip_norm) kernel.hypers.push_back({kMaxGradNormHyper, 1.0});
  kernel.hypers.push_back({kGradUnscaleInput, 1.0});
  kernel.hypers.push_back({kGradClipInput, 1.0});

  const Expr unscale = make_cast(Type::kF32, make_var(kGradUnscaleInput, Type::kF64));
  const Expr clip = make_cast(Type::kF32, make_var(kGradClipInput, Type::kF64));
  const Expr transformed =
      make_binary(BinaryOp::kMul, make_binary(BinaryOp::kMul, make_load("grad"), unscale), clip);
  ExprRewriter rewriter([&](const Expr& e) -> Expr {
    if (e->kind == NodeKind::kLoad && e->name == "grad") return transformed;
    return e;
  });
  kernel = rewrite_exprs(kernel, [&](const Expr& e) { return rewriter(e); });

  // Phase 0: the statistics, of the unscaled (not yet clipped) gradient.
  const Expr g = make_binary(BinaryOp::kMul, make_load("grad"), unscale);
  Phase statistics;
  statistics.reductions.push_back(
      {kGradSumOfSquares, ReduceOp::kSum, make_binary(BinaryOp::kMul, g, g)});
  statistics.reductions.push_back(
      {kGradNonFinite, ReduceOp::kMax,
       make_select(make_unary(UnaryOp::kIsFinite, g), element_constant(0), element_constant(1))});
  kernel.phases.insert(kernel.phases.begin(), std::move(statistics));
  kernel.grad_transform = transform;
  verify(kernel);
}

bool can_decide_on_device(const Kernel& kernel) {
  if (!kernel.grad_transform.any() || !kernel.scalar_stores.empty()) return false;
  for (size_t p = 0; p < kernel.phases.size(); ++p) {
    const Phase& phase = kernel.phases[p];
    if (p > 0 && !phase.reductions.empty()) return false;
    std::set<std::string> names;
    for (const ScalarDef& def : phase.prologue) collect_var_names(def.value, names);
    if (names.contains(kGradUnscaleInput) || names.contains(kGradClipInput)) return false;
    if (p == 0) {
      const std::vector<std::string> inputs = phase_scalar_inputs(phase);
      if (std::find(inputs.begin(), inputs.end(), kGradClipInput) != inputs.end()) return false;
    }
  }
  return true;
}

double grad_unscale_factor(const Kernel& kernel, std::span<const double> hypers) {
  if (!kernel.grad_transform.unscale) return 1.0;
  const double scale = hyper_value(kernel, hypers, kGradScaleHyper);
  if (!(scale > 0 && std::isfinite(scale))) {
    throw UserError(std::string("the hyper ") + kGradScaleHyper +
                    " must be positive and finite, got " + std::to_string(scale));
  }
  // As GradScaler: the reciprocal in float64, rounded to float32 once.
  return static_cast<double>(static_cast<float>(1.0 / scale));
}

double max_grad_norm(const Kernel& kernel, std::span<const double> hypers) {
  if (!kernel.grad_transform.clip_norm) return 1.0;
  const double max_norm = hyper_value(kernel, hypers, kMaxGradNormHyper);
  if (!(max_norm >= 0 && std::isfinite(max_norm))) {
    throw UserError(std::string("the hyper ") + kMaxGradNormHyper +
                    " must be finite and not negative, got " + std::to_string(max_norm));
  }
  return max_norm;
}

GradFactors grad_factors(const Kernel& kernel, std::span<const double> hypers,
                         const GradStatistics& statistics) {
  GradFactors factors;
  factors.unscale = grad_unscale_factor(kernel, hypers);
  factors.total_norm = std::sqrt(statistics.sum_of_squares);
  if (kernel.grad_transform.unscale &&
      (statistics.nonfinite || hyper_value(kernel, hypers, kFoundInfHyper) != 0)) {
    factors.skip = true;
    return factors;
  }
  if (kernel.grad_transform.clip_norm) {
    const double max_norm = max_grad_norm(kernel, hypers);
    // clip_grad_norm_: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1; a NaN norm
    // gives a NaN coefficient (torch.clamp keeps NaN), so the step spreads the NaN as torch.
    const double coefficient = max_norm / (factors.total_norm + 1e-6);
    const double clamped = std::isnan(coefficient) ? coefficient : std::min(1.0, coefficient);
    factors.clip = static_cast<double>(static_cast<float>(clamped));
  }
  return factors;
}

}  // namespace fuseopt::ir
