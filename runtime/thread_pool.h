// The CPU runtime's thread pool: a fixed set of workers that, with the calling thread, run
// the tasks of one parallel-for at a time. The Optimizer calls it a few times per step (once
// per phase), so starting a parallel-for costs one wake-up, not a thread creation.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace fuseopt::runtime {

class ThreadPool {
 public:
  /// `threads` counts the calling thread: 1 runs everything inline, 0 uses every core.
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  /// Threads taking part in a parallel-for, the caller included.
  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  /// Runs task(i) for every i in [0, n) and returns when all have finished. Tasks are
  /// handed out one at a time from a shared counter, so uneven tasks balance themselves.
  /// The first exception a task throws is rethrown here (tasks not yet started are then
  /// skipped). One parallel-for at a time: a task must not call parallel_for on this pool.
  void parallel_for(size_t n, const std::function<void(size_t)>& task);

  /// The number of cores this process may use (at least 1).
  static int hardware_threads();

 private:
  void work_loop();
  void run_tasks();  ///< takes tasks of the current job until none is left

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;  ///< workers wait here for a job (or shutdown)
  std::condition_variable idle_;  ///< the caller waits here for workers to leave a job
  uint64_t generation_ = 0;       ///< bumped for every job; guarded by mutex_
  const std::function<void(size_t)>* job_ = nullptr;  ///< guarded by mutex_
  int active_ = 0;               ///< workers inside the current job; guarded by mutex_
  bool stopping_ = false;        ///< guarded by mutex_
  size_t count_ = 0;             ///< tasks in the current job
  std::atomic<size_t> next_{0};  ///< the next task to hand out
  std::exception_ptr error_;     ///< the first exception; guarded by mutex_
};

}  // namespace fuseopt::runtime
