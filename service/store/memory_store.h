// MemoryStore: the in-memory Store, for tests and single-process deployments
// that can afford to lose state on restart. One mutex guards everything, so
// each method is trivially atomic.
#ifndef SERVICE_STORE_MEMORY_STORE_H_
#define SERVICE_STORE_MEMORY_STORE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "service/store/store.h"

namespace assistants {

class MemoryStore : public Store {
 public:
  // `max_messages_per_thread` exists so tests can reach the limit cheaply.
  explicit MemoryStore(int64_t max_messages_per_thread = kMaxMessagesPerThread);

  MemoryStore(const MemoryStore&) = delete;
  MemoryStore& operator=(const MemoryStore&) = delete;

  // Mutations passed to Update* run under the store's lock: they must not call
  // back into the store.
  absl::Status CreateAssistant(const v1::Assistant& assistant,
                               absl::string_view project,
                               const IdempotencyRecord* idempotency) override;
  absl::StatusOr<v1::Assistant> GetAssistant(absl::string_view id) override;
  absl::StatusOr<Page<v1::Assistant>> ListAssistants(
      absl::string_view project, const ListQuery& query) override;
  absl::StatusOr<v1::Assistant> UpdateAssistant(
      absl::string_view id, const Mutation<v1::Assistant>& mutate) override;
  absl::Status DeleteAssistant(absl::string_view id) override;

  absl::Status CreateThread(const v1::Thread& thread, absl::string_view project,
                            const std::vector<v1::Message>& messages,
                            const IdempotencyRecord* idempotency) override;
  absl::StatusOr<v1::Thread> GetThread(absl::string_view id) override;
  absl::StatusOr<v1::Thread> UpdateThread(
      absl::string_view id, const Mutation<v1::Thread>& mutate) override;
  absl::Status DeleteThread(absl::string_view id) override;

  absl::Status CreateMessage(const v1::Message& message,
                             const IdempotencyRecord* idempotency) override;
  absl::StatusOr<v1::Message> GetMessage(absl::string_view thread_id,
                                         absl::string_view message_id) override;
  absl::StatusOr<Page<v1::Message>> ListMessages(
      absl::string_view thread_id, absl::string_view run_id,
      const ListQuery& query) override;
  absl::StatusOr<v1::Message> UpdateMessage(
      absl::string_view thread_id, absl::string_view message_id,
      const Mutation<v1::Message>& mutate) override;
  absl::Status DeleteMessage(absl::string_view thread_id,
                             absl::string_view message_id) override;

  absl::Status CreateRun(const RunCreation& creation) override;
  absl::StatusOr<v1::Run> GetRun(absl::string_view thread_id,
                                 absl::string_view run_id) override;
  absl::StatusOr<Page<v1::Run>> ListRuns(absl::string_view thread_id,
                                         const ListQuery& query) override;
  absl::StatusOr<std::vector<v1::Run>> ListActiveRuns() override;
  absl::Status CommitRunChanges(
      const std::vector<const RunChanges*>& batch) override;
  absl::StatusOr<v1::RunStep> GetRunStep(absl::string_view thread_id,
                                         absl::string_view run_id,
                                         absl::string_view step_id) override;
  absl::StatusOr<Page<v1::RunStep>> ListRunSteps(
      absl::string_view thread_id, absl::string_view run_id,
      const ListQuery& query) override;
  absl::StatusOr<std::vector<v1::RunEvent>> ListRunEvents(
      absl::string_view run_id, int64_t after_sequence, int limit) override;

  absl::StatusOr<std::string> GetProject(OwnedKind kind,
                                         absl::string_view id) override;

  absl::StatusOr<std::optional<IdempotencyRecord>> GetIdempotencyRecord(
      absl::string_view key) override;
  absl::StatusOr<int64_t> PruneIdempotencyRecords(int64_t cutoff_ms) override;

 private:
  struct ThreadEntry {
    int64_t seq = 0;
    v1::Thread thread;
    // The thread's messages by insertion sequence number.
    std::map<int64_t, v1::Message> messages;
    // The thread's runs by insertion sequence number (the rest of each run
    // lives in runs_).
    std::map<int64_t, v1::Run> runs;
    // The sequence numbers of the thread's active runs, oldest first.
    std::set<int64_t> active_runs;
  };
  // Everything of a run except the run itself (which its thread holds).
  struct RunEntry {
    std::string thread_id;
    // The run's key in its thread's `runs`.
    int64_t seq = 0;
    // The run's steps by insertion sequence number.
    std::map<int64_t, v1::RunStep> steps;
    // The event log: events[i].sequence() == i + 1.
    std::vector<v1::RunEvent> events;
  };
  // Where a run step lives, so GetRunStep need not scan runs.
  struct StepLocation {
    std::string run_id;
    int64_t seq = 0;
  };
  // An id first written by the CommitRunChanges batch being checked, with
  // the kind and parent it was written as (a later change of the same batch
  // may replace it, but not reuse the id for something else).
  struct PendingObject {
    std::string kind;
    std::string parent_id;
  };
  // What checking a CommitRunChanges batch tracks across its changes.
  struct BatchCheck {
    std::unordered_map<std::string, PendingObject> added;
    // The next event sequence of each run touched by the batch.
    std::unordered_map<std::string, int64_t> next_event;
    std::unordered_set<std::string> idempotency_keys;
  };
  // Where a message lives, so GetMessage need not scan threads.
  struct MessageLocation {
    std::string thread_id;
    int64_t seq = 0;
  };
  // A deleted object, kept so a paging cursor naming it still has a position.
  struct Tombstone {
    std::string kind;
    std::string parent_id;
    int64_t seq = 0;
  };

  // The sequence number of cursor `id` in the list of `kind` objects under
  // `parent_id` (live or deleted); INVALID_CURSOR for `field` otherwise.
  absl::StatusOr<int64_t> CursorSeq(absl::string_view field,
                                    absl::string_view id,
                                    absl::string_view kind,
                                    absl::string_view parent_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The live sequence number of `id` if it is a `kind` under `parent_id`.
  std::optional<int64_t> LiveSeq(absl::string_view id, absl::string_view kind,
                                 absl::string_view parent_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // ABORTED (IDEMPOTENCY_CONFLICT) when `record`'s key is taken.
  absl::Status CheckIdempotency(const IdempotencyRecord* record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PutIdempotency(const IdempotencyRecord* record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The thread's entry and the message's sequence number, or NOT_FOUND.
  absl::StatusOr<std::pair<ThreadEntry*, int64_t>> FindMessage(
      absl::string_view thread_id, absl::string_view message_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether `id` is taken by any live object.
  bool IdInUse(const std::string& id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The thread's entry and the run's entry, or NOT_FOUND (naming the thread
  // when it is missing, else the run).
  absl::StatusOr<std::pair<ThreadEntry*, RunEntry*>> FindRun(
      absl::string_view thread_id, absl::string_view run_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The id of the thread's oldest active run, if any.
  std::optional<std::string> ActiveRunOf(const ThreadEntry& thread) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records whether the run at `seq` of `thread` is active.
  void IndexRunStatus(ThreadEntry& thread, int64_t seq, bool active)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Checks one change of a CommitRunChanges batch against the store as the
  // batch's earlier changes would leave it (tracked in `check`).
  absl::Status CheckRunChanges(const RunChanges& changes, BatchCheck& check)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Checks that `id` may be upserted as a `kind` under `parent_id`: it is
  // new, or already that kind of object under that parent.
  absl::Status CheckUpsert(const std::string& id, absl::string_view kind,
                           absl::string_view parent_id, BatchCheck& check)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies one checked change; cannot fail.
  void ApplyRunChanges(const RunChanges& changes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int64_t max_messages_per_thread_;

  absl::Mutex mu_;
  int64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<int64_t, v1::Assistant> assistants_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, int64_t> assistant_seq_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, ThreadEntry> threads_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, MessageLocation> messages_
      ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, RunEntry> runs_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, StepLocation> steps_ ABSL_GUARDED_BY(mu_);
  // Every active run: its sequence number -> its thread's id.
  std::map<int64_t, std::string> active_runs_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, Tombstone> tombstones_ ABSL_GUARDED_BY(mu_);
  // The owning project of every live assistant and thread.
  std::unordered_map<std::string, std::string> projects_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, IdempotencyRecord> idempotency_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace assistants

#endif  // SERVICE_STORE_MEMORY_STORE_H_
