#include "service/common/timers.h"

#include <algorithm>
#include <vector>

#include "absl/time/time.h"

namespace assistants {

ThreadTimers::ThreadTimers(const Clock* clock)
    : clock_(clock), thread_([this] { Loop(); }) {}

ThreadTimers::~ThreadTimers() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

Timers::Id ThreadTimers::ScheduleAt(int64_t deadline_ms,
                                    std::function<void()> callback) {
  absl::MutexLock lock(&mu_);
  const Id id = next_id_++;
  queue_.emplace(std::make_pair(deadline_ms, id), std::move(callback));
  deadlines_[id] = deadline_ms;
  return id;
}

void ThreadTimers::Cancel(Id id) {
  absl::MutexLock lock(&mu_);
  auto it = deadlines_.find(id);
  if (it == deadlines_.end()) return;
  queue_.erase({it->second, id});
  deadlines_.erase(it);
}

void ThreadTimers::Loop() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    const int64_t now = clock_->NowMillis();
    if (!queue_.empty() && queue_.begin()->first.first <= now) {
      auto node = queue_.extract(queue_.begin());
      deadlines_.erase(node.key().second);
      mu_.Unlock();
      node.mapped()();
      mu_.Lock();
      continue;
    }
    // Sleep until the earliest deadline (capped, so a clock jump or a new
    // earlier timer is noticed), or until a change wakes us.
    const int64_t wait_ms =
        queue_.empty()
            ? 1000
            : std::min<int64_t>(1000, queue_.begin()->first.first - now);
    const size_t size = queue_.size();
    const int64_t head = queue_.empty() ? 0 : queue_.begin()->first.first;
    auto changed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || queue_.size() != size ||
             (!queue_.empty() && queue_.begin()->first.first != head);
    };
    mu_.AwaitWithTimeout(absl::Condition(&changed),
                         absl::Milliseconds(wait_ms));
  }
}

Timers::Id ManualTimers::ScheduleAt(int64_t deadline_ms,
                                    std::function<void()> callback) {
  absl::MutexLock lock(&mu_);
  const Id id = next_id_++;
  queue_.emplace(std::make_pair(deadline_ms, id), std::move(callback));
  deadlines_[id] = deadline_ms;
  return id;
}

void ManualTimers::Cancel(Id id) {
  absl::MutexLock lock(&mu_);
  auto it = deadlines_.find(id);
  if (it == deadlines_.end()) return;
  queue_.erase({it->second, id});
  deadlines_.erase(it);
}

int ManualTimers::RunDue() {
  int fired = 0;
  while (true) {
    std::function<void()> callback;
    {
      absl::MutexLock lock(&mu_);
      if (queue_.empty() || queue_.begin()->first.first > clock_->NowMillis()) {
        break;
      }
      auto node = queue_.extract(queue_.begin());
      deadlines_.erase(node.key().second);
      callback = std::move(node.mapped());
    }
    callback();
    ++fired;
  }
  return fired;
}

size_t ManualTimers::pending() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

}  // namespace assistants
