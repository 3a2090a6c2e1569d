// RunCommitter: makes run changes durable with group commit, then publishes
// their events. Leader/follower: the thread that submits into an idle
// committer commits one batch right away on its own stack (no hand-off to
// another thread, so an idle gateway adds no wake-up to each token); changes
// submitted meanwhile queue up. If some are waiting when that batch is done,
// the committer's own thread takes over and commits batches until the queue
// is empty, so a busy gateway pays one commit for many runs' tokens and no
// run-engine thread is kept committing other runs' work. Changes of one run
// commit in submission order.
#ifndef SERVICE_RUNS_COMMITTER_H_
#define SERVICE_RUNS_COMMITTER_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

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
  // Commits what is queued, then joins. Nothing may submit after this.
  ~RunCommitter();

  // Queues `changes`. After they are durable their events are published to
  // the hub and `done` (may be null) runs with OK, on the committing thread:
  // possibly this one, before Submit returns. So callers must not hold a lock
  // that `done` or a stream woken by the events takes, and `done` must not
  // call Flush.
  // If the store refuses them (after retrying UNAVAILABLE for a few
  // seconds), `done` gets the error, nothing is published, and every later
  // change of that run fails the same way: the run's log must not get gaps.
  void Submit(RunChanges changes, Done done);

  // Forgets that `run_id`'s changes failed: a run this replica drives again
  // (several replicas: it took the run back over) starts with a clean slate.
  void Forget(const std::string& run_id);

  // Blocks until everything submitted so far is committed (tests, shutdown).
  void Flush();

  // Commits and transactions so far (for benchmarks and tests).
  int64_t commits() const;
  // Changes submitted and not yet taken into a batch (for metrics).
  size_t queue_depth() const;

 private:
  struct Entry {
    RunChanges changes;
    Done done;
  };
  // Takes up to max_batch_ queued changes, commits them and finishes them;
  // returns false when the queue was empty (leadership is then released).
  bool CommitNextBatch();
  // The committer thread: leads whenever a submitter hands over.
  void Loop();
  void CommitBatch(std::vector<Entry>& batch);
  absl::Status CommitWithRetry(const std::vector<const RunChanges*>& batch);
  void Finish(Entry& entry, const absl::Status& status);

  Store* store_;
  RunEventHub* hub_;
  const size_t max_batch_;

  mutable absl::Mutex mu_;
  std::deque<Entry> queue_ ABSL_GUARDED_BY(mu_);
  // A thread leads: everything queued will be committed by it.
  bool leading_ ABSL_GUARDED_BY(mu_) = false;
  // A submitter committed its batch and found more queued: the committer
  // thread leads from here.
  bool handed_over_ ABSL_GUARDED_BY(mu_) = false;
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
