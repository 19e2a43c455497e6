#include "tools/fuseopt/tensor_stepper.h"

#include <algorithm>

#include "support/error.h"
#include "support/low_precision.h"

namespace fuseopt::tools {
namespace {

// The interpreter's buffers hold values of their storage type: what is written into a bf16
// or f16 buffer from outside is rounded to nearest even first, as Optimizer::write_*() does.
void round_to(StorageType type, std::span<float> values) {
  if (type == StorageType::kF32) return;
  for (float& v : values) v = round_to_storage(v, type);
}

}  // namespace

TensorStepper::TensorStepper(ir::Kernel kernel, std::span<const float> param)
    : interpreter_(std::move(kernel)), numel_(static_cast<int64_t>(param.size())) {
  const ir::Kernel& k = interpreter_.kernel();
  FUSEOPT_CHECK(!k.buffers.empty() && k.buffers[0].role == ir::BufferRole::kParam,
                "the first buffer of kernel '" + k.rule + "' is not the parameter");
  // At least one element each, so that no buffer pointer is null for an empty tensor.
  const size_t size = std::max<size_t>(param.size(), 1);
  storage_.assign(k.buffers.size(), std::vector<float>(size, 0.0f));
  std::copy(param.begin(), param.end(), storage_[0].begin());
  round_to(k.buffers[0].storage, std::span<float>(storage_[0].data(), param.size()));
  given_.assign(k.buffers.size(), false);
  args_.numel = numel_;
  for (std::vector<float>& buffer : storage_) args_.buffers.push_back(buffer.data());
  args_.scalars.assign(k.scalars.size(), 0.0);
}

void TensorStepper::set_state(const std::string& name, std::span<const float> values) {
  const int index = kernel().buffer_index(name);
  FUSEOPT_CHECK(
      index >= 0 && kernel().buffers[static_cast<size_t>(index)].role == ir::BufferRole::kState,
      "'" + name + "' is not a state of kernel '" + kernel().rule + "'");
  FUSEOPT_CHECK(t_ == 0, "a starting state is given after the first step");
  FUSEOPT_CHECK(static_cast<int64_t>(values.size()) == numel_,
                "state '" + name + "' has the wrong number of elements");
  std::vector<float>& state = storage_[static_cast<size_t>(index)];
  std::copy(values.begin(), values.end(), state.begin());
  round_to(kernel().buffers[static_cast<size_t>(index)].storage,
           std::span<float>(state.data(), values.size()));
  given_[static_cast<size_t>(index)] = true;
}

void TensorStepper::step(std::span<const float> grad, std::span<const double> hypers) {
  FUSEOPT_CHECK(static_cast<int64_t>(grad.size()) == numel_,
                "the gradient has the wrong number of elements");
  const int grad_index = kernel().buffer_index("grad");
  if (grad_index >= 0) {
    std::vector<float>& g = storage_[static_cast<size_t>(grad_index)];
    std::copy(grad.begin(), grad.end(), g.begin());
    round_to(kernel().buffers[static_cast<size_t>(grad_index)].storage,
             std::span<float>(g.data(), grad.size()));
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
