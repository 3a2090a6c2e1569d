// The Timers seam: callbacks at a time on the Clock. The run engine uses it
// for requires_action expiry and the stream layer for heartbeats; tests use
// ManualTimers with a FakeClock instead of sleeping.
#ifndef SERVICE_COMMON_TIMERS_H_
#define SERVICE_COMMON_TIMERS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "service/common/clock.h"

namespace assistants {

class Timers {
 public:
  using Id = uint64_t;
  virtual ~Timers() = default;
  // Runs `callback` once at or after `deadline_ms` (Clock milliseconds).
  // Callbacks run on the timers' own thread, one at a time, and must not
  // block. Thread-safe.
  virtual Id ScheduleAt(int64_t deadline_ms,
                        std::function<void()> callback) = 0;
  // Forgets a timer that has not fired yet; a no-op otherwise. Does not wait
  // for a callback that is already running.
  virtual void Cancel(Id id) = 0;
};

// The production timers: one thread sleeping until the earliest deadline.
// Holds thousands of timers cheaply (one map node each).
class ThreadTimers : public Timers {
 public:
  explicit ThreadTimers(const Clock* clock);
  // Joins the thread; pending timers never fire.
  ~ThreadTimers() override;

  Id ScheduleAt(int64_t deadline_ms, std::function<void()> callback) override;
  void Cancel(Id id) override;

 private:
  void Loop();

  const Clock* clock_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Id next_id_ ABSL_GUARDED_BY(mu_) = 1;
  // (deadline, id) -> callback; the id breaks ties in scheduling order.
  std::map<std::pair<int64_t, Id>, std::function<void()>> queue_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<Id, int64_t> deadlines_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// Timers that fire only when the test calls RunDue() (after moving its
// FakeClock), on the calling thread.
class ManualTimers : public Timers {
 public:
  explicit ManualTimers(const Clock* clock) : clock_(clock) {}

  Id ScheduleAt(int64_t deadline_ms, std::function<void()> callback) override;
  void Cancel(Id id) override;
  // Fires every timer whose deadline has passed; returns how many.
  int RunDue();
  // Timers not yet fired.
  size_t pending() const;

 private:
  const Clock* clock_;
  mutable absl::Mutex mu_;
  Id next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<std::pair<int64_t, Id>, std::function<void()>> queue_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<Id, int64_t> deadlines_ ABSL_GUARDED_BY(mu_);
};

}  // namespace assistants

#endif  // SERVICE_COMMON_TIMERS_H_
