// Tests of runtime::ThreadPool: every task runs exactly once, on the caller too, exceptions
// reach the caller, and the pool is reusable many times in a row.
#include "runtime/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "support/error.h"

namespace fuseopt::runtime {
namespace {

TEST(ThreadPool, RunsEveryTaskOnce) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.threads(), threads);
    for (size_t n : {0u, 1u, 2u, 3u, 17u, 1000u}) {
      std::vector<std::atomic<int>> runs(n);
      pool.parallel_for(n, [&](size_t i) { runs[i].fetch_add(1); });
      for (size_t i = 0; i < n; ++i) EXPECT_EQ(runs[i].load(), 1) << "task " << i << " of " << n;
    }
  }
}

TEST(ThreadPool, ZeroMeansEveryCore) {
  ThreadPool pool(0);
  EXPECT_EQ(pool.threads(), ThreadPool::hardware_threads());
  EXPECT_GE(pool.threads(), 1);
}

TEST(ThreadPool, NegativeThreadCountIsAUserError) {
  EXPECT_THROW(ThreadPool(-1), UserError);
}

TEST(ThreadPool, OneThreadRunsInlineInOrder) {
  ThreadPool pool(1);
  std::vector<size_t> order;
  const auto caller = std::this_thread::get_id();
  pool.parallel_for(5, [&](size_t i) {
    EXPECT_EQ(std::this_thread::get_id(), caller);
    order.push_back(i);
  });
  EXPECT_EQ(order, (std::vector<size_t>{0, 1, 2, 3, 4}));
}

TEST(ThreadPool, UsesSeveralThreads) {
  ThreadPool pool(4);
  std::mutex mutex;
  std::set<std::thread::id> seen;
  std::atomic<int> inside{0};
  // Each task waits (boundedly) until another one runs at the same time.
  pool.parallel_for(64, [&](size_t) {
    inside.fetch_add(1);
    for (int spin = 0; spin < 2000 && inside.load() < 2; ++spin) std::this_thread::yield();
    {
      std::lock_guard<std::mutex> lock(mutex);
      seen.insert(std::this_thread::get_id());
    }
    inside.fetch_sub(1);
  });
  EXPECT_GE(seen.size(), 2u);
}

TEST(ThreadPool, RethrowsTheTaskException) {
  for (int threads : {1, 3}) {
    ThreadPool pool(threads);
    EXPECT_THROW(pool.parallel_for(100,
                                   [](size_t i) {
                                     if (i == 37) throw UserError("task 37 failed");
                                   }),
                 UserError);
    try {
      pool.parallel_for(10, [](size_t) { throw std::runtime_error("every task fails"); });
      FAIL() << "no exception";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "every task fails");
    }
    // The pool still works afterwards.
    std::atomic<size_t> sum{0};
    pool.parallel_for(100, [&](size_t i) { sum.fetch_add(i); });
    EXPECT_EQ(sum.load(), 4950u);
  }
}

TEST(ThreadPool, ManyShortJobsInARow) {
  ThreadPool pool(3);
  std::atomic<size_t> total{0};
  for (int round = 0; round < 20000; ++round) {
    pool.parallel_for(static_cast<size_t>(round % 5), [&](size_t) { total.fetch_add(1); });
  }
  size_t expected = 0;
  for (int round = 0; round < 20000; ++round) expected += static_cast<size_t>(round % 5);
  EXPECT_EQ(total.load(), expected);
}

TEST(ThreadPool, DestroysWhileIdle) {
  for (int i = 0; i < 50; ++i) {
    ThreadPool pool(4);
    if (i % 2 == 0) pool.parallel_for(8, [](size_t) {});
  }
}

}  // namespace
}  // namespace fuseopt::runtime
