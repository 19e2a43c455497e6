// The IR's arithmetic, written once as templates over float and double, so constant
// folding (one value) and the interpreter (blocks of elements) cannot disagree.
#include "ir/eval.h"

#include <cmath>
#include <limits>

namespace fuseopt::ir {
namespace {

template <typename T>
T truth(bool b) {
  return b ? T(1) : T(0);
}

// NaN-propagating min and max: a NaN on either side gives NaN (std::min would drop it
// depending on the argument order).
template <typename T>
T nan_min(T a, T b) {
  if (std::isnan(a)) return a;
  if (std::isnan(b)) return b;
  return b < a ? b : a;
}

template <typename T>
T nan_max(T a, T b) {
  if (std::isnan(a)) return a;
  if (std::isnan(b)) return b;
  return a < b ? b : a;
}

// std::sqrt, std::exp, std::log and std::pow have float overloads, so T = float computes
// in single precision (sqrtf, expf, logf, powf) and T = double in double precision.
template <UnaryOp kOp, typename T>
inline T apply_unary(T x) {
  if constexpr (kOp == UnaryOp::kNeg) return -x;
  if constexpr (kOp == UnaryOp::kSqrt) return std::sqrt(x);
  if constexpr (kOp == UnaryOp::kRsqrt) return T(1) / std::sqrt(x);
  if constexpr (kOp == UnaryOp::kExp) return std::exp(x);
  if constexpr (kOp == UnaryOp::kLog) return std::log(x);
  if constexpr (kOp == UnaryOp::kAbs) return std::fabs(x);
  // sign(0) = 0 keeps the zero's sign; a NaN stays NaN.
  if constexpr (kOp == UnaryOp::kSign) return x > T(0) ? T(1) : x < T(0) ? T(-1) : x;
  if constexpr (kOp == UnaryOp::kIsFinite) return truth<T>(std::isfinite(x));
  if constexpr (kOp == UnaryOp::kNot) return truth<T>(x == T(0));
}

template <BinaryOp kOp, typename T>
inline T apply_binary(T a, T b) {
  if constexpr (kOp == BinaryOp::kAdd) return a + b;
  if constexpr (kOp == BinaryOp::kSub) return a - b;
  if constexpr (kOp == BinaryOp::kMul) return a * b;
  if constexpr (kOp == BinaryOp::kDiv) return a / b;
  if constexpr (kOp == BinaryOp::kPow) return std::pow(a, b);
  if constexpr (kOp == BinaryOp::kMin) return nan_min(a, b);
  if constexpr (kOp == BinaryOp::kMax) return nan_max(a, b);
  if constexpr (kOp == BinaryOp::kLt) return truth<T>(a < b);
  if constexpr (kOp == BinaryOp::kLe) return truth<T>(a <= b);
  if constexpr (kOp == BinaryOp::kGt) return truth<T>(a > b);
  if constexpr (kOp == BinaryOp::kGe) return truth<T>(a >= b);
  if constexpr (kOp == BinaryOp::kEq) return truth<T>(a == b);
  if constexpr (kOp == BinaryOp::kNe) return truth<T>(a != b);
  if constexpr (kOp == BinaryOp::kAnd) return truth<T>(a != T(0) && b != T(0));
  if constexpr (kOp == BinaryOp::kOr) return truth<T>(a != T(0) || b != T(0));
}

template <typename T>
T eval_unary_t(UnaryOp op, T x) {
  switch (op) {
#define FUSEOPT_X(name, text) \
  case UnaryOp::k##name:      \
    return apply_unary<UnaryOp::k##name>(x);
    FUSEOPT_IR_UNARY_OPS(FUSEOPT_X)
#undef FUSEOPT_X
  }
  return std::numeric_limits<T>::quiet_NaN();
}

template <typename T>
T eval_binary_t(BinaryOp op, T a, T b) {
  switch (op) {
#define FUSEOPT_X(name, text) \
  case BinaryOp::k##name:     \
    return apply_binary<BinaryOp::k##name>(a, b);
    FUSEOPT_IR_BINARY_OPS(FUSEOPT_X)
#undef FUSEOPT_X
  }
  return std::numeric_limits<T>::quiet_NaN();
}

template <UnaryOp kOp>
void unary_loop(const float* x, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = apply_unary<kOp>(x[i]);
}

template <BinaryOp kOp>
void binary_loop(const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = apply_binary<kOp>(a[i], b[i]);
}

}  // namespace

double eval_unary(UnaryOp op, double x) { return eval_unary_t(op, x); }
float eval_unary(UnaryOp op, float x) { return eval_unary_t(op, x); }
double eval_binary(BinaryOp op, double a, double b) { return eval_binary_t(op, a, b); }
float eval_binary(BinaryOp op, float a, float b) { return eval_binary_t(op, a, b); }

double reduce_identity(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return 0;
    case ReduceOp::kMax:
      return -std::numeric_limits<double>::infinity();
  }
  return 0;
}

double reduce_combine(ReduceOp op, double accumulated, double value) {
  switch (op) {
    case ReduceOp::kSum:
      return accumulated + value;
    case ReduceOp::kMax:
      return nan_max(accumulated, value);
  }
  return accumulated;
}

void eval_unary_block(UnaryOp op, const float* x, float* out, int64_t n) {
  switch (op) {
#define FUSEOPT_X(name, text) \
  case UnaryOp::k##name:      \
    unary_loop<UnaryOp::k##name>(x, out, n); \
    return;
    FUSEOPT_IR_UNARY_OPS(FUSEOPT_X)
#undef FUSEOPT_X
  }
}

void eval_binary_block(BinaryOp op, const float* a, const float* b, float* out, int64_t n) {
  switch (op) {
#define FUSEOPT_X(name, text) \
  case BinaryOp::k##name:     \
    binary_loop<BinaryOp::k##name>(a, b, out, n); \
    return;
    FUSEOPT_IR_BINARY_OPS(FUSEOPT_X)
#undef FUSEOPT_X
  }
}

}  // namespace fuseopt::ir
