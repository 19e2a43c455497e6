#include "bench/kernel_traffic.h"

#include <set>
#include <string>
#include <vector>

#include "support/low_precision.h"

namespace fuseopt::bench {
namespace {

// Adds the buffer of every Load under `root` to `loads`, visiting shared nodes once.
void collect_loads(const ir::Expr& root, std::set<const ir::ExprNode*>& seen,
                   std::set<std::string>& loads) {
  std::vector<const ir::ExprNode*> stack{root.get()};
  while (!stack.empty()) {
    const ir::ExprNode* node = stack.back();
    stack.pop_back();
    if (!node || !seen.insert(node).second) continue;
    if (node->kind == ir::NodeKind::kLoad) loads.insert(node->name);
    for (const ir::Expr& operand : node->operands) stack.push_back(operand.get());
  }
}

}  // namespace

KernelTraffic kernel_traffic(const ir::Kernel& kernel) {
  KernelTraffic traffic;
  auto bytes_of = [&kernel](const std::string& name) -> int64_t {
    const ir::BufferDecl* decl = kernel.find_buffer(name);
    return decl != nullptr ? storage_type_bytes(decl->storage) : 4;
  };
  for (const ir::BufferDecl& decl : kernel.buffers) {
    traffic.narrow = traffic.narrow || decl.storage != StorageType::kF32;
  }
  for (const ir::Phase& phase : kernel.phases) {
    std::set<const ir::ExprNode*> seen;
    std::set<std::string> loads;
    std::set<std::string> stores;
    for (const ir::Reduction& reduction : phase.reductions) {
      collect_loads(reduction.body, seen, loads);
    }
    for (const ir::Store& store : phase.stores) {
      collect_loads(store.value, seen, loads);
      if (kernel.find_buffer(store.target)) stores.insert(store.target);
    }
    ++traffic.phases;
    traffic.buffer_reads += static_cast<int>(loads.size());
    traffic.buffer_writes += static_cast<int>(stores.size());
    for (const std::string& name : loads) traffic.read_bytes += bytes_of(name);
    for (const std::string& name : stores) {
      traffic.write_bytes += bytes_of(name);
      if (!loads.count(name)) {
        ++traffic.write_allocates;
        traffic.write_allocate_bytes += bytes_of(name);
      }
    }
  }
  traffic.stream_bytes_per_element = traffic.read_bytes + traffic.write_bytes;
  traffic.bytes_per_element = traffic.stream_bytes_per_element + traffic.write_allocate_bytes;
  return traffic;
}

}  // namespace fuseopt::bench
