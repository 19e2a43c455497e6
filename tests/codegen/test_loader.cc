// The test loader and step driver of test_loader.h.
#include "tests/codegen/test_loader.h"

#include <HalideRuntime.h>
#include <dlfcn.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <stdexcept>

#include "ir/eval.h"

namespace fuseopt::codegen::testing {

LoadedObject::LoadedObject(const HalideCpuBinary& binary) {
  fd_ = memfd_create(binary.name.c_str(), MFD_CLOEXEC);
  if (fd_ < 0) throw std::runtime_error("memfd_create failed");
  size_t written = 0;
  while (written < binary.shared_object.size()) {
    ssize_t n =
        write(fd_, binary.shared_object.data() + written, binary.shared_object.size() - written);
    if (n <= 0) throw std::runtime_error("writing the memfd failed");
    written += static_cast<size_t>(n);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd_);
  handle_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle_ == nullptr) throw std::runtime_error(std::string("dlopen: ") + dlerror());
  for (const std::string& name : binary.phase_functions) {
    phases_.push_back(reinterpret_cast<ArgvFunction>(symbol(name)));
  }
}

LoadedObject::~LoadedObject() {
  if (handle_ != nullptr) dlclose(handle_);
  if (fd_ >= 0) close(fd_);
}

void* LoadedObject::symbol(const std::string& name) const {
  void* address = dlsym(handle_, name.c_str());
  if (address == nullptr) throw std::runtime_error("no symbol " + name);
  return address;
}

std::string LoadedObject::last_error() const {
  using Query = const char* (*)();
  return reinterpret_cast<Query>(symbol(kLastErrorSymbol))();
}

namespace {

halide_buffer_t float_buffer(float* data, halide_dimension_t* dim, int64_t extent) {
  *dim = halide_dimension_t(0, static_cast<int32_t>(extent), 1);
  halide_buffer_t buffer{};
  buffer.host = reinterpret_cast<uint8_t*>(data);
  buffer.type = halide_type_t(halide_type_float, 32);
  buffer.dimensions = 1;
  buffer.dim = dim;
  return buffer;
}

// Host scalar code in f64, with ir/eval.h's arithmetic (what the runtime does).
double eval_host(const ir::Expr& e, const std::map<std::string, double>& env) {
  switch (e->kind) {
    case ir::NodeKind::kConst:
      return e->value;
    case ir::NodeKind::kVar:
      return env.at(e->name);
    case ir::NodeKind::kUnary:
      return ir::eval_unary(e->unary_op, eval_host(e->operands[0], env));
    case ir::NodeKind::kBinary:
      return ir::eval_binary(e->binary_op, eval_host(e->operands[0], env),
                             eval_host(e->operands[1], env));
    case ir::NodeKind::kSelect:
      return eval_host(e->operands[0], env) != 0 ? eval_host(e->operands[1], env)
                                                 : eval_host(e->operands[2], env);
    case ir::NodeKind::kLoad:
    case ir::NodeKind::kCast:
      break;
  }
  throw std::logic_error("element node in host code");
}

}  // namespace

int call_phase(const LoadedObject& object, const ir::Kernel& kernel, size_t k, int64_t count,
               const std::vector<float*>& buffers, const std::vector<float>& scalars,
               std::vector<double>& partials, const std::vector<int64_t>& extents) {
  const ir::Phase& phase = kernel.phases.at(k);
  const size_t n_buffers = kernel.buffers.size();
  std::vector<halide_dimension_t> dims(n_buffers + phase.stores.size());
  std::vector<halide_buffer_t> halide_buffers;
  halide_buffers.reserve(n_buffers + phase.stores.size() + phase.reductions.size());
  std::vector<void*> argv;
  for (size_t i = 0; i < n_buffers; ++i) {
    int64_t extent = i < extents.size() ? extents[i] : count;
    halide_buffers.push_back(float_buffer(buffers[i], &dims[i], extent));
    argv.push_back(&halide_buffers.back());
  }
  std::vector<float> scalar_copies = scalars;
  for (float& value : scalar_copies) argv.push_back(&value);
  for (size_t s = 0; s < phase.stores.size(); ++s) {
    const int index = kernel.buffer_index(phase.stores[s].target);
    halide_buffers.push_back(
        float_buffer(buffers[static_cast<size_t>(index)], &dims[n_buffers + s], count));
    argv.push_back(&halide_buffers.back());
  }
  partials.assign(phase.reductions.size(), 0.0);
  for (double& partial : partials) {
    halide_buffer_t buffer{};
    buffer.host = reinterpret_cast<uint8_t*>(&partial);
    buffer.type = halide_type_t(halide_type_float, 64);
    buffer.dimensions = 0;
    halide_buffers.push_back(buffer);
    argv.push_back(&halide_buffers.back());
  }
  return object.phase(k)(argv.data());
}

void step_compiled(const LoadedObject& object, const ir::Kernel& kernel, int64_t chunk,
                   ir::TensorArgs& tensor, std::span<const double> hypers, int64_t t) {
  std::map<std::string, double> env;
  for (size_t i = 0; i < kernel.hypers.size(); ++i) env[kernel.hypers[i].name] = hypers[i];
  env["t"] = static_cast<double>(t);
  env["numel"] = static_cast<double>(tensor.numel);
  for (size_t i = 0; i < kernel.scalars.size(); ++i) {
    env[kernel.scalars[i].name] = tensor.scalars[i];
  }
  for (size_t k = 0; k < kernel.phases.size(); ++k) {
    const ir::Phase& phase = kernel.phases[k];
    for (const ir::ScalarDef& def : phase.prologue) env[def.name] = eval_host(def.value, env);
    std::vector<float> scalars;
    for (const std::string& name : ir::phase_scalar_inputs(phase)) {
      scalars.push_back(static_cast<float>(env.at(name)));
    }
    std::vector<double> totals;
    for (const ir::Reduction& reduction : phase.reductions) {
      totals.push_back(ir::reduce_identity(reduction.op));
    }
    std::vector<double> partials;
    for (int64_t start = 0; start < tensor.numel; start += chunk) {
      const int64_t count = std::min(chunk, tensor.numel - start);
      std::vector<float*> pointers;
      for (float* buffer : tensor.buffers) pointers.push_back(buffer + start);
      int rc = call_phase(object, kernel, k, count, pointers, scalars, partials);
      if (rc != 0) {
        throw std::runtime_error("phase " + std::to_string(k) + " returned " + std::to_string(rc) +
                                 ": " + object.last_error());
      }
      for (size_t r = 0; r < totals.size(); ++r) {
        totals[r] = ir::reduce_combine(phase.reductions[r].op, totals[r], partials[r]);
      }
    }
    for (size_t r = 0; r < totals.size(); ++r) env[phase.reductions[r].name] = totals[r];
  }
  std::vector<double> stored;
  for (const ir::Store& store : kernel.scalar_stores) stored.push_back(eval_host(store.value, env));
  for (size_t i = 0; i < stored.size(); ++i) {
    tensor.scalars[static_cast<size_t>(kernel.scalar_index(kernel.scalar_stores[i].target))] =
        stored[i];
  }
}

MisalignedBuffer::MisalignedBuffer(int64_t count)
    : storage_(static_cast<size_t>(count) + 32), count_(count) {
  auto address = reinterpret_cast<uintptr_t>(storage_.data());
  uintptr_t aligned = (address + 63) & ~uintptr_t{63};
  data_ = reinterpret_cast<float*>(aligned + sizeof(float));
}

}  // namespace fuseopt::codegen::testing
