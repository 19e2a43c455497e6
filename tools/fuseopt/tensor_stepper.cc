#include "tools/fuseopt/tensor_stepper.h"

#include <algorithm>

#include "support/error.h"

namespace fuseopt::tools {

TensorStepper::TensorStepper(ir::Kernel kernel, std::span<const float> param)
    : interpreter_(std::move(kernel)), numel_(static_cast<int64_t>(param.size())) {
  const ir::Kernel& k = interpreter_.kernel();
  FUSEOPT_CHECK(!k.buffers.empty() && k.buffers[0].role == ir::BufferRole::kParam,
                "the first buffer of kernel '" + k.rule + "' is not the parameter");
  // At least one element each, so that no buffer pointer is null for an empty tensor.
  const size_t size = std::max<size_t>(param.size(), 1);
  storage_.assign(k.buffers.size(), std::vector<float>(size, 0.0f));
  std::copy(param.begin(), param.end(), storage_[0].begin());
  given_.assign(k.buffers.size(), false);
  args_.numel = numel_;
  for (std::vector<float>& buffer : storage_) args_.buffers.push_back(buffer.data());
  args_.scalars.assign(k.scalars.size(), 0.0);
}

void TensorStepper::set_state(const std::string& name, std::span<const float> values) {
  const int index = kernel().buffer_index(name);
  FUSEOPT_CHECK(index >= 0 && kernel().buffers[static_cast<size_t>(index)].role ==
                                  ir::BufferRole::kState,
                "'" + name + "' is not a state of kernel '" + kernel().rule + "'");
  FUSEOPT_CHECK(t_ == 0, "a starting state is given after the first step");
  FUSEOPT_CHECK(static_cast<int64_t>(values.size()) == numel_,
                "state '" + name + "' has the wrong number of elements");
  std::copy(values.begin(), values.end(), storage_[static_cast<size_t>(index)].begin());
  given_[static_cast<size_t>(index)] = true;
}

void TensorStepper::step(std::span<const float> grad, std::span<const double> hypers) {
  FUSEOPT_CHECK(static_cast<int64_t>(grad.size()) == numel_,
                "the gradient has the wrong number of elements");
  const int grad_index = kernel().buffer_index("grad");
  if (grad_index >= 0) {
    std::copy(grad.begin(), grad.end(), storage_[static_cast<size_t>(grad_index)].begin());
  }
  // States initialised from `grad` take the first step's gradient, so this comes after it.
  if (t_ == 0) interpreter_.initialize(args_, hypers, given_);
  ++t_;
  interpreter_.step(std::span<ir::TensorArgs>(&args_, 1), hypers, t_);
}

std::span<const float> TensorStepper::buffer(size_t index) const {
  FUSEOPT_CHECK(index < storage_.size(), "no buffer " + std::to_string(index));
  return std::span<const float>(storage_[index].data(), static_cast<size_t>(numel_));
}

}  // namespace fuseopt::tools
