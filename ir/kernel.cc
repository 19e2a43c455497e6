// Kernel helpers: the configuration name (part of every binary's name and cache key) and
// lookups of declarations by name.
#include "ir/kernel.h"

#include <set>

#include "ir/rewrite.h"
#include "support/error.h"

namespace fuseopt::ir {

const char* spelling(ReduceOp op) {
  switch (op) {
#define FUSEOPT_X(name, text) \
  case ReduceOp::k##name:     \
    return text;
    FUSEOPT_IR_REDUCE_OPS(FUSEOPT_X)
#undef FUSEOPT_X
  }
  return "?";
}

std::string Kernel::config_name() const {
  std::string name = rule;
  for (const OptionValue& option : options) {
    name += "_" + option.name;
    name += option.is_bool ? (option.value != 0 ? "1" : "0") : std::to_string(option.value);
  }
  // Storage and gradient transforms change the kernel too (names stay C identifiers).
  for (const BufferDecl& buffer : buffers) {
    if (buffer.storage == StorageType::kF32) continue;
    name += "_" + buffer.name + "_" + storage_type_name(buffer.storage);
    if (buffer.stochastic) name += "sr";
  }
  if (grad_transform.unscale) name += "_unscale";
  if (grad_transform.clip_norm) name += "_clipnorm";
  return name;
}

const BufferDecl* Kernel::find_buffer(const std::string& name) const {
  int index = buffer_index(name);
  return index < 0 ? nullptr : &buffers[static_cast<size_t>(index)];
}

namespace {

template <typename Decls>
int index_by_name(const Decls& decls, const std::string& name) {
  for (size_t i = 0; i < decls.size(); ++i) {
    if (decls[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace

int Kernel::buffer_index(const std::string& name) const { return index_by_name(buffers, name); }
int Kernel::hyper_index(const std::string& name) const { return index_by_name(hypers, name); }
int Kernel::scalar_index(const std::string& name) const { return index_by_name(scalars, name); }

bool Kernel::has_stochastic_store() const {
  for (const BufferDecl& buffer : buffers) {
    if (buffer.stochastic) return true;
  }
  return false;
}

void set_buffer_storage(Kernel& kernel, const std::string& name, StorageType storage,
                        bool stochastic) {
  const int index = kernel.buffer_index(name);
  if (index < 0) {
    std::string known;
    for (const BufferDecl& buffer : kernel.buffers) known += (known.empty() ? "" : ", ") + buffer.name;
    throw UserError("rule '" + kernel.rule + "' has no buffer '" + name + "' (it has " + known + ")");
  }
  BufferDecl& buffer = kernel.buffers[static_cast<size_t>(index)];
  if (stochastic && storage == StorageType::kF32) {
    throw UserError("stochastic rounding of '" + name + "' needs bf16 or f16 storage, not f32");
  }
  if (stochastic && buffer.role == BufferRole::kGrad) {
    throw UserError("the grad is never stored, so it cannot round stochastically");
  }
  buffer.storage = storage;
  buffer.stochastic = stochastic;
  if (stochastic && kernel.hyper_index(kRoundingSeedHyper) < 0) {
    kernel.hypers.push_back({kRoundingSeedHyper, 0.0});
  }
}

std::vector<std::string> phase_scalar_inputs(const Phase& phase) {
  std::set<std::string> names;
  for (const Reduction& r : phase.reductions) collect_var_names(r.body, names);
  for (const Store& s : phase.stores) collect_var_names(s.value, names);
  return {names.begin(), names.end()};
}

}  // namespace fuseopt::ir
