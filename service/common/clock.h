// The Clock seam: the core reads time only through it so tests can use a
// fake clock instead of sleeping.
#ifndef SERVICE_COMMON_CLOCK_H_
#define SERVICE_COMMON_CLOCK_H_

#include <atomic>
#include <chrono>
#include <cstdint>

namespace assistants {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch.
  virtual int64_t NowMillis() const = 0;
  // Seconds since the Unix epoch (the unit of OpenAI's created_at).
  int64_t NowSeconds() const { return NowMillis() / 1000; }
};

// Wall-clock time.
class SystemClock : public Clock {
 public:
  int64_t NowMillis() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

// A clock that moves only when told to. Thread-safe.
class FakeClock : public Clock {
 public:
  explicit FakeClock(int64_t start_millis = 1'700'000'000'000)
      : now_millis_(start_millis) {}
  int64_t NowMillis() const override { return now_millis_.load(); }
  void Advance(std::chrono::milliseconds delta) {
    now_millis_ += delta.count();
  }
  void SetMillis(int64_t millis) { now_millis_ = millis; }

 private:
  std::atomic<int64_t> now_millis_;
};

}  // namespace assistants

#endif  // SERVICE_COMMON_CLOCK_H_
