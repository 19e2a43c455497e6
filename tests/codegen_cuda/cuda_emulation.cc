#include "tests/codegen_cuda/cuda_emulation.h"

#include <ucontext.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "frontend/rule.h"
#include "ir/grad_transform.h"
#include "support/error.h"
#include "tests/codegen_cuda/every_op_kernel.h"
#include "tests/gpu/storage_checks.h"

namespace fuseopt::emulation {
namespace {

// Every CUDA thread of a block is a fiber (ucontext): it runs until it reaches a barrier
// (__syncthreads, or each half of a warp shuffle), and the scheduler releases a barrier
// once every thread it waits for has reached it. Switching fibers costs far less than
// waking OS threads, and the order is deterministic.
constexpr size_t kStackBytes = 256 * 1024;

enum class Wait : uint8_t { kReady, kWarp, kBlock, kDone };

struct Fiber {
  ucontext_t context;
  std::unique_ptr<char[]> stack;
  Wait wait = Wait::kReady;
  Dim3 thread;
};

struct Block {
  std::vector<Fiber> fibers;
  std::vector<double> lanes[2];  // shuffle exchange, one slot per thread, alternating
  std::vector<unsigned int> shuffles;  // per thread, shuffles done (picks the slot set)
  ucontext_t scheduler;
  KernelEntry entry = nullptr;
  LaunchArgs args;
};

Dim3 g_thread;
Dim3 g_block;
Dim3 g_grid;
Block* g_current = nullptr;
Fiber* g_fiber = nullptr;

void yield(Wait wait) {
  g_fiber->wait = wait;
  swapcontext(&g_fiber->context, &g_current->scheduler);
}

void fiber_main() {
  Block& block = *g_current;
  block.entry(block.args);
  g_fiber->wait = Wait::kDone;
  swapcontext(&g_fiber->context, &block.scheduler);
}

std::vector<EmulatedKernel>& registry() {
  static std::vector<EmulatedKernel>* kernels = new std::vector<EmulatedKernel>;
  return *kernels;
}

}  // namespace

const Dim3& thread_index() { return g_thread; }
const Dim3& block_index() { return g_block; }
const Dim3& grid_dim() { return g_grid; }

void sync_block() { yield(Wait::kBlock); }

// Two sets of slots, alternating: a lane can write its next shuffle's value before the others
// have read this one, but not two shuffles ahead (the next barrier waits for all of them).
double shuffle_down(double value, int offset) {
  Block& block = *g_current;
  const unsigned int x = g_fiber->thread.x;
  const unsigned int lane = x & 31u;
  std::vector<double>& slots = block.lanes[block.shuffles[x]++ & 1u];
  slots[x] = value;
  yield(Wait::kWarp);
  const unsigned int from = lane + static_cast<unsigned int>(offset);
  return from < 32 ? slots[x + static_cast<unsigned int>(offset)] : value;
}

bool register_kernel(EmulatedKernel kernel) {
  registry().push_back(std::move(kernel));
  return true;
}

const std::vector<EmulatedKernel>& emulated_kernels() { return registry(); }

// Runs block `index` to completion: each ready fiber until its next barrier, then releases
// the barriers that every thread concerned has reached.
void run_block(Block& block, unsigned int index) {
  const unsigned int block_size = static_cast<unsigned int>(block.fibers.size());
  g_block = Dim3{index};
  for (unsigned int t = 0; t < block_size; ++t) {
    Fiber& fiber = block.fibers[t];
    fiber.wait = Wait::kReady;
    fiber.thread = Dim3{t};
    block.shuffles[t] = 0;
    getcontext(&fiber.context);
    fiber.context.uc_stack.ss_sp = fiber.stack.get();
    fiber.context.uc_stack.ss_size = kStackBytes;
    fiber.context.uc_link = nullptr;
    makecontext(&fiber.context, fiber_main, 0);
  }
  for (;;) {
    bool ran = false;
    for (Fiber& fiber : block.fibers) {
      if (fiber.wait != Wait::kReady) continue;
      g_fiber = &fiber;
      g_thread = fiber.thread;
      swapcontext(&block.scheduler, &fiber.context);
      ran = true;
    }
    // Release the barriers every thread has reached.
    bool released = false;
    for (unsigned int w = 0; w < block_size / 32; ++w) {
      bool all = true;
      for (unsigned int l = 0; l < 32 && all; ++l) all = block.fibers[w * 32 + l].wait == Wait::kWarp;
      if (!all) continue;
      for (unsigned int l = 0; l < 32; ++l) block.fibers[w * 32 + l].wait = Wait::kReady;
      released = true;
    }
    const bool at_block = std::all_of(block.fibers.begin(), block.fibers.end(),
                                      [](const Fiber& f) { return f.wait == Wait::kBlock; });
    if (at_block) {
      for (Fiber& fiber : block.fibers) fiber.wait = Wait::kReady;
      released = true;
    }
    const bool done = std::all_of(block.fibers.begin(), block.fibers.end(),
                                  [](const Fiber& f) { return f.wait == Wait::kDone; });
    if (done) break;
    FUSEOPT_CHECK(ran || released,
                  "emulation: the threads of a block wait at different barriers (deadlock)");
  }
}

void run_grid(KernelEntry entry, unsigned int grid, unsigned int block_size,
              const LaunchArgs& args) {
  FUSEOPT_CHECK(block_size % 32 == 0 && block_size > 0,
                "emulation: block size must be a multiple of 32");
  g_grid = Dim3{grid};
  Block block;
  block.entry = entry;
  block.args = args;
  block.fibers.resize(block_size);
  block.lanes[0].assign(block_size, 0.0);
  block.lanes[1].assign(block_size, 0.0);
  block.shuffles.assign(block_size, 0);
  for (Fiber& fiber : block.fibers) fiber.stack = std::make_unique<char[]>(kStackBytes);
  g_current = &block;
  for (unsigned int b = 0; b < grid; ++b) run_block(block, b);
  g_current = nullptr;
  g_fiber = nullptr;
}

EmulatedDevice::EmulatedDevice(int sm_count, int resident_blocks)
    : resident_blocks_(resident_blocks) {
  info_.name = "CPU emulation";
  info_.sm_major = 9;
  info_.sm_minor = 0;
  info_.sm_count = sm_count;
  info_.max_threads_per_sm = 2048;
}

EmulatedDevice::~EmulatedDevice() {
  for (void* p : live_) std::free(p);
}

runtime::CudaDevicePtr EmulatedDevice::allocate(size_t bytes) const {
  // 256-byte aligned, as cuMemAlloc's allocations are.
  const size_t size = (std::max<size_t>(bytes, 1) + 255) / 256 * 256;
  void* memory = std::aligned_alloc(256, size);
  FUSEOPT_CHECK(memory != nullptr, "emulation: out of memory");
  std::memset(memory, 0xcd, size);  // not zero: a kernel must not rely on fresh memory
  std::lock_guard<std::mutex> lock(mutex_);
  live_.insert(memory);
  ++allocated;
  return reinterpret_cast<runtime::CudaDevicePtr>(memory);
}

void EmulatedDevice::free(runtime::CudaDevicePtr pointer) const noexcept {
  if (pointer == 0) return;
  void* memory = reinterpret_cast<void*>(pointer);
  std::lock_guard<std::mutex> lock(mutex_);
  if (live_.erase(memory) == 1) {
    std::free(memory);
    --allocated;
  }
}

void EmulatedDevice::copy_to_device(runtime::CudaDevicePtr destination, const void* source,
                                    size_t bytes) const {
  ++uploads;
  if (bytes > 0) std::memcpy(reinterpret_cast<void*>(destination), source, bytes);
}

void EmulatedDevice::copy_to_host_async(void* destination, runtime::CudaDevicePtr source,
                                        size_t bytes) const {
  ++async_downloads;
  if (bytes > 0) std::memcpy(destination, reinterpret_cast<const void*>(source), bytes);
}

void EmulatedDevice::copy_to_host(void* destination, runtime::CudaDevicePtr source,
                                  size_t bytes) const {
  ++downloads;
  if (bytes > 0) std::memcpy(destination, reinterpret_cast<const void*>(source), bytes);
}

runtime::CudaModule EmulatedDevice::load_module(std::string_view, std::string_view ptx) const {
  for (const EmulatedKernel& kernel : emulated_kernels()) {
    if (kernel.source == ptx) {
      return reinterpret_cast<runtime::CudaModule>(const_cast<EmulatedKernel*>(&kernel));
    }
  }
  throw UserError("emulation: no kernel was compiled from this source (rebuild the tests?)");
}

runtime::CudaFunction EmulatedDevice::function(runtime::CudaModule module,
                                               const std::string& name) const {
  auto* kernel = reinterpret_cast<EmulatedKernel*>(module);
  for (auto& function : kernel->functions) {
    if (function.first == name) return reinterpret_cast<runtime::CudaFunction>(&function);
  }
  throw InternalError("emulation: module has no function '" + name + "'");
}

int EmulatedDevice::resident_blocks_per_sm(runtime::CudaFunction, int) const {
  return resident_blocks_;
}

void EmulatedDevice::launch(runtime::CudaFunction function, unsigned grid, unsigned block,
                            void** args) const {
  ++launches;
  auto* entry = reinterpret_cast<std::pair<std::string, KernelEntry>*>(function);
  auto pointer = [&](int k) {
    return reinterpret_cast<void*>(*static_cast<runtime::CudaDevicePtr*>(args[k]));
  };
  LaunchArgs launch;
  launch.table = pointer(0);
  launch.scalars = static_cast<const float*>(pointer(1));
  launch.stride = *static_cast<unsigned int*>(args[2]);
  launch.partials = static_cast<double*>(pointer(3));
  launch.rounding_keys = static_cast<const unsigned int*>(pointer(4));
  launch.gate = pointer(5);
  launch.grad_scale = static_cast<const float*>(pointer(6));
  launch.found_inf = static_cast<float*>(pointer(7));
  launch.max_grad_norm = *static_cast<double*>(args[8]);
  FUSEOPT_CHECK(grid > 0, "emulation: empty grid");
  run_grid(entry->second, grid, block, launch);
}


Loaded prepare(const EmulatedKernel& emulated) {
  Loaded loaded;
  const ir::GradTransform transform = transform_of(emulated.rule);
  if (emulated.rule == "every_op") {
    loaded.kernel = codegen::test::every_op_kernel();
    gpu_testing::apply_storage(loaded.kernel, emulated.storage);
  } else {
    const std::string name = emulated.rule.substr(0, emulated.rule.find('+'));
    const frontend::Rule rule = frontend::load_rule(name);
    loaded.kernel = rule.compile(rule.resolve_options(emulated.options));
    gpu_testing::apply_storage(loaded.kernel, emulated.storage);
    ir::apply_grad_transform(loaded.kernel, transform);
  }
  loaded.shape.block_size = emulated.block_size;
  loaded.shape.elements_per_thread = emulated.elements_per_thread;
  loaded.shape.vector_width = emulated.vector_width;
  loaded.shape.chunk_elements = emulated.chunk_elements;
  loaded.source = codegen::generate_cuda_source(loaded.kernel, loaded.shape);
  runtime::CudaBinaryView& view = loaded.view;
  view.name = loaded.kernel.config_name() + "_emulated_" + loaded.shape.spelling();
  view.arch = "emulated";
  view.ptx = loaded.source.text;  // the emulated device finds the kernel by its source
  view.phase_functions = loaded.source.phase_functions;
  view.block_size = loaded.shape.block_size;
  view.chunk_elements = loaded.shape.chunk_elements;
  view.table_layout = loaded.source.table_layout;
  return loaded;
}

}  // namespace fuseopt::emulation
