// A TurnObserver that records what a provider reported, for tests.
#ifndef TESTS_UPSTREAM_RECORDING_OBSERVER_H_
#define TESTS_UPSTREAM_RECORDING_OBSERVER_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "upstream/provider.h"

namespace assistants::upstream {

class RecordingObserver : public TurnObserver {
 public:
  void OnEvent(const ProviderEvent& event) override {
    absl::MutexLock lock(&mu_);
    events_.push_back(event);
  }
  void OnDone(const std::optional<TurnError>& error) override {
    absl::MutexLock lock(&mu_);
    ++done_calls_;
    error_ = error;
  }

  // Waits until OnDone ran; false on timeout.
  bool WaitDone(absl::Duration timeout = absl::Seconds(30)) {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return done_calls_ > 0;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  }

  std::vector<ProviderEvent> events() const {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  std::optional<TurnError> error() const {
    absl::MutexLock lock(&mu_);
    return error_;
  }
  int done_calls() const {
    absl::MutexLock lock(&mu_);
    return done_calls_;
  }

  // The concatenated text deltas.
  std::string Text() const {
    std::string text;
    for (const ProviderEvent& e : events()) {
      if (e.type == ProviderEvent::Type::kTextDelta) text += e.text;
    }
    return text;
  }

  // Events of one type.
  std::vector<ProviderEvent> OfType(ProviderEvent::Type type) const {
    std::vector<ProviderEvent> out;
    for (const ProviderEvent& e : events()) {
      if (e.type == type) out.push_back(e);
    }
    return out;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<ProviderEvent> events_ ABSL_GUARDED_BY(mu_);
  std::optional<TurnError> error_ ABSL_GUARDED_BY(mu_);
  int done_calls_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace assistants::upstream

#endif  // TESTS_UPSTREAM_RECORDING_OBSERVER_H_
