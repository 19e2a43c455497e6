// The tuner's sense of time, behind an interface so its logic is tested with a fake clock
// (tests/autotune/fakes.h) and never waits for real.
#pragma once

#include <chrono>

namespace fuseopt::autotune {

class Clock {
 public:
  virtual ~Clock() = default;
  /// Seconds since an arbitrary origin; never decreases.
  virtual double now() = 0;
};

/// std::chrono::steady_clock.
class SteadyClock final : public Clock {
 public:
  double now() override {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace fuseopt::autotune
