// PgStore: the Store on PostgreSQL, for several gateway replicas sharing one
// database. Same schema idea and semantics as SqliteStore (objects as
// serialized protobufs beside the columns the queries need), plus what
// sharing needs: every method is one transaction on a pooled connection,
// writes that must see a thread's current state (new messages, new runs
// with the one-active-run check, deleting the thread, a run's messages)
// lock the thread's row first, run event batches are fenced by run leases
// (RunChanges::lease_owner/lease_token) and announce themselves with
// pg_notify('assistants_run_events', run_id) at commit.
#ifndef SERVICE_STORE_PG_PG_STORE_H_
#define SERVICE_STORE_PG_PG_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "service/store/pg/pg_client.h"
#include "service/store/store.h"

namespace assistants {

// The channel CreateRun and CommitRunChanges notify, once per run that got
// events, with the run id as payload.
inline constexpr char kRunEventsChannel[] = "assistants_run_events";

struct PgStoreOptions {
  // Connections the store opens at most (each replica its own).
  int pool_size = 8;
  // A new run's lease row expires this long after CreateRun unless a
  // replica claims it, so a run whose creator died is taken over.
  int64_t unclaimed_run_grace_ms = 15000;
  // Tests lower this to reach the limit cheaply.
  int64_t max_messages_per_thread = kMaxMessagesPerThread;
};

class PgStore : public Store {
 public:
  // Connects to `conninfo` (a libpq URI or keyword/value string) and
  // migrates the "store" component to this build's schema first.
  // UNAVAILABLE when the database cannot be reached; FAILED_PRECONDITION
  // (STORE_SCHEMA_TOO_NEW) when a newer gateway migrated it.
  static absl::StatusOr<std::unique_ptr<PgStore>> Open(
      const std::string& conninfo, PgStoreOptions options);

  ~PgStore() override;
  PgStore(const PgStore&) = delete;
  PgStore& operator=(const PgStore&) = delete;

  // The pool, for the cluster pieces that share the store's database
  // (run leases, notifications).
  pg::Pool& pool() { return pool_; }

  // Mutations passed to Update* run inside the store's transaction (and may
  // run again when it is retried after a conflict): they must not call back
  // into the store.
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

  // Also inserts the run's run_leases row (owner NULL, token 0, expiring
  // unclaimed_run_grace_ms from now).
  absl::Status CreateRun(const RunCreation& creation) override;
  absl::StatusOr<v1::Run> GetRun(absl::string_view thread_id,
                                 absl::string_view run_id) override;
  absl::StatusOr<Page<v1::Run>> ListRuns(absl::string_view thread_id,
                                         const ListQuery& query) override;
  absl::StatusOr<std::vector<v1::Run>> ListActiveRuns() override;
  // One transaction for the batch, one multi-row statement per table.
  // Changes with a lease_token are checked against run_leases (row locked
  // FOR SHARE until commit): ABORTED (RUN_LEASE_LOST) and nothing written
  // when the owner or token no longer match.
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
  PgStore(const std::string& conninfo, const PgStoreOptions& options);

  // Reads, mutates and writes back `kind` object `id` under `parent_id`
  // (empty: a top-level object) in one transaction.
  template <typename T>
  absl::StatusOr<T> UpdateObject(absl::string_view kind, absl::string_view id,
                                 absl::string_view parent_id,
                                 const Mutation<T>& mutate);

  const PgStoreOptions options_;
  pg::Pool pool_;
};

}  // namespace assistants

#endif  // SERVICE_STORE_PG_PG_STORE_H_
