// RunCommitter: makes run changes durable with group commit, then publishes
// their events. One thread takes every change queued since its last commit
// and applies them in one store transaction, so a busy gateway pays one
// commit for many runs' tokens while an idle one commits each change at
// once (no added delay). Changes of one run commit in submission order.
#ifndef SERVICE_RUNS_COMMITTER_H_
#define SERVICE_RUNS_COMMITTER_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "service/runs/event_hub.h"
#include "service/store/store.h"

namespace assistants::runs {

class RunCommitter {
 public:
  using Done = std::function<void(const absl::Status&)>;

  // `store` and `hub` must outlive the committer.
  RunCommitter(Store* store, RunEventHub* hub, size_t max_batch = 256);
  // Commits what is queued, then joins.
  ~RunCommitter();

  // Queues `changes`. After they are durable their events are published to
  // the hub and `done` (may be null) runs with OK, on the committer thread.
  // If the store refuses them (after retrying UNAVAILABLE for a few
  // seconds), `done` gets the error, nothing is published, and every later
  // change of that run fails the same way: the run's log must not get gaps.
  void Submit(RunChanges changes, Done done);

  // Blocks until everything submitted so far is committed (tests, shutdown).
  void Flush();

  // Commits and transactions so far (for benchmarks and tests).
  int64_t commits() const;

 private:
  struct Entry {
    RunChanges changes;
    Done done;
  };
  void Loop();
  absl::Status CommitWithRetry(const std::vector<const RunChanges*>& batch);
  void Finish(Entry& entry, const absl::Status& status);

  Store* store_;
  RunEventHub* hub_;
  const size_t max_batch_;

  mutable absl::Mutex mu_;
  std::deque<Entry> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Submitted and finished counts, for Flush.
  int64_t submitted_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t finished_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t commits_ ABSL_GUARDED_BY(mu_) = 0;
  // Runs whose changes failed: later changes fail with this status.
  absl::flat_hash_map<std::string, absl::Status> poisoned_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace assistants::runs

#endif  // SERVICE_RUNS_COMMITTER_H_
