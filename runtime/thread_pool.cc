// A worker joins a job under the mutex and leaves it under the mutex; the caller clears the
// job only when no worker is inside, so a worker that wakes late never sees a finished job's
// task (which lives on the caller's stack).
#include "runtime/thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <string>
#include <utility>

#include "support/error.h"

namespace fuseopt::runtime {

int ThreadPool::hardware_threads() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int count = CPU_COUNT(&set);
    if (count > 0) return count;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

ThreadPool::ThreadPool(int threads) {
  if (threads < 0) {
    throw UserError("a thread count must be 0 (every core) or positive, not " +
                    std::to_string(threads));
  }
  const int total = threads == 0 ? hardware_threads() : threads;
  workers_.reserve(static_cast<size_t>(total - 1));
  for (int i = 1; i < total; ++i) workers_.emplace_back([this] { work_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& worker : workers_) worker.join();
}

void ThreadPool::parallel_for(size_t n, const std::function<void(size_t)>& task) {
  if (n == 0) return;
  if (workers_.empty() || n == 1) {
    for (size_t i = 0; i < n; ++i) task(i);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    FUSEOPT_CHECK(job_ == nullptr, "ThreadPool::parallel_for called from inside a task");
    job_ = &task;
    count_ = n;
    next_.store(0, std::memory_order_relaxed);
    error_ = nullptr;
    ++generation_;
  }
  // Wake only as many workers as there are tasks for besides the caller's first one.
  const size_t helpers = std::min(workers_.size(), n - 1);
  if (helpers == workers_.size()) {
    wake_.notify_all();
  } else {
    for (size_t i = 0; i < helpers; ++i) wake_.notify_one();
  }
  run_tasks();
  std::exception_ptr error;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    idle_.wait(lock, [this] { return active_ == 0; });
    job_ = nullptr;
    error = std::exchange(error_, nullptr);
  }
  if (error) std::rethrow_exception(error);
}

void ThreadPool::run_tasks() {
  // job_ and count_ do not change while this thread is inside the job (see the file header).
  const std::function<void(size_t)>& task = *job_;
  const size_t n = count_;
  for (;;) {
    const size_t i = next_.fetch_add(1, std::memory_order_relaxed);
    if (i >= n) return;
    try {
      task(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
      next_.store(n, std::memory_order_relaxed);  // skip what has not started
    }
  }
}

void ThreadPool::work_loop() {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stopping_ || (job_ != nullptr && generation_ != seen); });
    if (stopping_) return;
    seen = generation_;
    ++active_;
    lock.unlock();
    run_tasks();
    lock.lock();
    if (--active_ == 0) idle_.notify_one();
  }
}

}  // namespace fuseopt::runtime
