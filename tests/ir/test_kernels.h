// Hand-built kernels for the IR tests, written as frontend lowering would produce them
// (unsplit, scalar math inline in element code), plus shorthands for building expressions.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "ir/expr.h"
#include "ir/kernel.h"

namespace fuseopt::ir::test {

inline Expr num(double v) { return make_const(v); }
inline Expr var(const std::string& name, Type type = Type::kF64) { return make_var(name, type); }
inline Expr load(const std::string& buffer) { return make_load(buffer); }
inline Expr f32(Expr e) { return make_cast(Type::kF32, std::move(e)); }
inline Expr add(Expr a, Expr b) { return make_binary(BinaryOp::kAdd, std::move(a), std::move(b)); }
inline Expr sub(Expr a, Expr b) { return make_binary(BinaryOp::kSub, std::move(a), std::move(b)); }
inline Expr mul(Expr a, Expr b) { return make_binary(BinaryOp::kMul, std::move(a), std::move(b)); }
inline Expr div(Expr a, Expr b) { return make_binary(BinaryOp::kDiv, std::move(a), std::move(b)); }
inline Expr pow(Expr a, Expr b) { return make_binary(BinaryOp::kPow, std::move(a), std::move(b)); }
inline Expr gt(Expr a, Expr b) { return make_binary(BinaryOp::kGt, std::move(a), std::move(b)); }
inline Expr sqrt(Expr e) { return make_unary(UnaryOp::kSqrt, std::move(e)); }

inline BufferDecl state(const std::string& name, StateInit init = {}) {
  return BufferDecl{name, BufferRole::kState, StorageType::kF32, std::move(init)};
}

/// A kernel with param, grad, the given states and hypers, and one empty unsplit phase.
inline Kernel base_kernel(const std::string& rule, std::vector<HyperDecl> hypers,
                          std::vector<BufferDecl> states) {
  Kernel k;
  k.rule = rule;
  k.hypers = std::move(hypers);
  k.buffers = {BufferDecl{"param", BufferRole::kParam}, BufferDecl{"grad", BufferRole::kGrad}};
  for (BufferDecl& s : states) k.buffers.push_back(std::move(s));
  k.phases.resize(1);
  return k;
}

/// param -= lr * grad.
inline Kernel sgd_kernel() {
  Kernel k = base_kernel("sgd", {{"lr", 0.1}}, {});
  k.phases[0].stores = {{"param", sub(load("param"), mul(f32(var("lr")), load("grad")))}};
  return k;
}

/// Adam without weight decay: bias corrections in the prologue, the rest inline.
inline Kernel adam_kernel() {
  Kernel k = base_kernel("adam", {{"lr", 1e-3}, {"beta1", 0.9}, {"beta2", 0.999}, {"eps", 1e-8}},
                         {state("exp_avg"), state("exp_avg_sq")});
  k.options = {{"amsgrad", 0, true}, {"maximize", 0, true}};
  Phase& phase = k.phases[0];
  phase.prologue = {{"%0", sub(num(1), pow(var("beta1"), var("t")))},
                    {"%1", sub(num(1), pow(var("beta2"), var("t")))}};
  Expr g = load("grad");
  Expr m = add(mul(f32(var("beta1")), load("exp_avg")), mul(f32(sub(num(1), var("beta1"))), g));
  Expr v = add(mul(f32(var("beta2")), load("exp_avg_sq")),
               mul(mul(f32(sub(num(1), var("beta2"))), g), g));
  Expr denom = add(div(sqrt(v), f32(sqrt(var("%1")))), f32(var("eps")));
  Expr p = sub(load("param"), mul(f32(div(var("lr"), var("%0"))), div(m, denom)));
  phase.stores = {{"param", p}, {"exp_avg", m}, {"exp_avg_sq", v}};
  return k;
}

/// LAMB-like: two norms (reductions of the same level) feed a trust ratio in the prologue.
inline Kernel lamb_kernel() {
  Kernel k = base_kernel(
      "lamb", {{"lr", 1e-2}, {"beta1", 0.9}, {"beta2", 0.999}, {"eps", 1e-6}, {"wd", 0.01}},
      {state("exp_avg"), state("exp_avg_sq")});
  Phase& phase = k.phases[0];
  Expr g = load("grad");
  Expr p = load("param");
  Expr m = add(mul(f32(var("beta1")), load("exp_avg")), mul(f32(sub(num(1), var("beta1"))), g));
  Expr v = add(mul(f32(var("beta2")), load("exp_avg_sq")),
               mul(mul(f32(sub(num(1), var("beta2"))), g), g));
  Expr u = add(div(m, add(sqrt(v), f32(var("eps")))), mul(f32(var("wd")), p));
  phase.reductions = {{"%r0", ReduceOp::kSum, mul(p, p)}, {"%r1", ReduceOp::kSum, mul(u, u)}};
  Expr w = var("%0");
  Expr r = var("%1");
  phase.prologue = {
      {"%0", sqrt(var("%r0"))},
      {"%1", sqrt(var("%r1"))},
      {"%2", make_select(make_binary(BinaryOp::kAnd, gt(w, num(0)), gt(r, num(0))), div(w, r),
                         num(1))}};
  phase.stores = {{"param", sub(p, mul(f32(mul(var("lr"), var("%2"))), u))},
                  {"exp_avg", m},
                  {"exp_avg_sq", v}};
  return k;
}

/// A reduction whose body uses another reduction (through a temporary): centring by the
/// mean, then scaling by the standard deviation. Three phases once split. Also counts steps
/// in a scalar state.
inline Kernel nested_kernel() {
  Kernel k = base_kernel("center", {{"lr", 0.5}, {"eps", 1e-3}}, {});
  k.scalars = {{"count", 0}};
  Phase& phase = k.phases[0];
  Expr g = load("grad");
  Expr c = sub(g, f32(var("%0")));
  phase.prologue = {{"%0", div(var("%r0"), var("numel"))},
                    {"%1", sqrt(div(var("%r1"), var("numel")))}};
  phase.reductions = {{"%r0", ReduceOp::kSum, g}, {"%r1", ReduceOp::kSum, mul(c, c)}};
  phase.stores = {
      {"param", sub(load("param"), mul(f32(var("lr")), div(c, add(f32(var("%1")), f32(var("eps"))))))}};
  k.scalar_stores = {{"count", add(var("count"), num(1))}};
  return k;
}

}  // namespace fuseopt::ir::test
