// RunEventHub: the live tail of each run's event log, in memory. The
// committer publishes events here once they are durable; RunEvents streams
// read from here and fall back to the store for anything older than the
// in-memory window or for runs no longer driven. Streams pull (one event at
// a time, when their previous write is done), so a slow reader costs no
// memory beyond the run's shared window.
#ifndef SERVICE_RUNS_EVENT_HUB_H_
#define SERVICE_RUNS_EVENT_HUB_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "assistants/v1/run_service.pb.h"

namespace assistants::runs {

// Events are shared, immutable, and already wrapped in the stream's response
// message so a stream writes them without copying.
using EventPtr = std::shared_ptr<const v1::RunEventsResponse>;

class RunEventHub {
 public:
  // Woken (once per registration, on any thread, without hub locks held)
  // when the awaited event exists or the run's channel closes.
  class Waiter {
   public:
    virtual ~Waiter() = default;
    virtual void Wake() = 0;
  };

  struct Read {
    enum class Kind {
      kEvent,    // `event` is the one asked for
      kBehind,   // older than the in-memory window: read the store
      kWaiting,  // not published yet: the waiter will be woken
      kNotLive,  // no channel (run ended or not driven here): read the store
    };
    Kind kind = Kind::kNotLive;
    EventPtr event;
  };

  // `window` = events kept in memory per run.
  explicit RunEventHub(size_t window = 4096) : window_(window) {}

  // Starts the run's channel; its next event has `last_sequence + 1`.
  void Open(const std::string& run_id, int64_t last_sequence);
  // Appends committed events (consecutive sequences) and wakes waiters.
  void Publish(const std::string& run_id, std::vector<EventPtr> events);
  // Ends the run's channel (after `done`, or when it stops being driven).
  void Close(const std::string& run_id);
  // Closes every channel (shutdown).
  void CloseAll();

  // The event with `sequence` of `run_id`. With kWaiting, `waiter` is
  // registered and woken once.
  Read Next(const std::string& run_id, int64_t sequence,
            const std::shared_ptr<Waiter>& waiter);
  // Forgets a registration, live or remote (a stream that ended).
  void CancelWait(const std::string& run_id, const Waiter* waiter);

  // Several replicas: a run driven by another replica has no channel here;
  // its events arrive only in the store. Registers `waiter` to be woken once
  // when NotifyRemote(run_id) says the store has more (a database
  // notification), when the run's channel opens here (this replica took it
  // over), or at WakeAllRemote.
  void WaitRemote(const std::string& run_id,
                  const std::shared_ptr<Waiter>& waiter);
  void NotifyRemote(const std::string& run_id);
  // Wakes every remote waiter (notifications may have been lost).
  void WakeAllRemote();

  // Highest published sequence of a live run, or -1.
  int64_t LastSequence(const std::string& run_id) const;
  size_t live_runs() const;

 private:
  struct Channel {
    std::deque<EventPtr> recent;
    // Sequence of recent.front() (or the next event when empty).
    int64_t first_sequence = 1;
    int64_t last_sequence = 0;
    std::vector<std::shared_ptr<Waiter>> waiters;
  };

  void TakeRemoteWaitersLocked(const std::string& run_id,
                               std::vector<std::shared_ptr<Waiter>>& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t window_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<Channel>> channels_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::vector<std::shared_ptr<Waiter>>>
      remote_waiters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace assistants::runs

#endif  // SERVICE_RUNS_EVENT_HUB_H_
