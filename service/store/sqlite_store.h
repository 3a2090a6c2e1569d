// SqliteStore: the durable Store, one SQLite database file (WAL mode) holding
// every object as a serialized protobuf next to the few columns the store
// indexes by. Each method runs in one transaction, so a crash mid-write never
// leaves half an object (or half a thread) behind.
#ifndef SERVICE_STORE_SQLITE_STORE_H_
#define SERVICE_STORE_SQLITE_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "service/store/store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace assistants {

struct SqliteStoreOptions {
  // Tests lower this to reach the limit cheaply.
  int64_t max_messages_per_thread = kMaxMessagesPerThread;
  // How long a write waits for another connection's lock before failing
  // with UNAVAILABLE.
  int busy_timeout_ms = 5000;
  // WAL pages after which a background connection checkpoints the WAL into
  // the database file (file-backed stores only). A checkpoint fsyncs, which
  // must not happen inside a commit: every run's events would wait for it.
  int checkpoint_pages = 1000;
};

class SqliteStore : public Store {
 public:
  // Opens (creating if needed) the database at `path`, or a private in-memory
  // database for ":memory:", and migrates its schema to the newest version.
  // FAILED_PRECONDITION (STORE_SCHEMA_TOO_NEW) when the file was written by a
  // newer build; UNAVAILABLE when it cannot be opened.
  static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(
      const std::string& path);
  static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(
      const std::string& path, const SqliteStoreOptions& options);

  // The schema version this build writes (PRAGMA user_version).
  static int SchemaVersion();

  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  // Mutations passed to Update* run inside the store's transaction and under
  // its lock: they must not call back into the store.
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
  class Statement;
  class Transaction;
  // One stored row: its insertion sequence number, id and serialized body.
  struct Row {
    int64_t seq = 0;
    std::string id;
    std::string body;
  };

  SqliteStore(sqlite3* db, const SqliteStoreOptions& options);

  absl::Status Configure(bool file_backed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Migrate() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The cached prepared statement for `sql` (prepared on first use).
  absl::StatusOr<Statement> Prepare(const char* sql)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs `sql` (no parameters, no result rows needed) through the cache.
  absl::Status Exec(const char* sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The live row of `id` if it is a `kind` under `parent_id` (empty: none).
  absl::StatusOr<std::optional<Row>> FindRow(absl::string_view kind,
                                             absl::string_view id,
                                             absl::string_view parent_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether a live `kind` object `id` exists (any kind when `kind` is empty).
  absl::StatusOr<bool> Exists(absl::string_view kind, absl::string_view id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether a live `kind` object `id` exists under `parent_id` (non-empty).
  absl::StatusOr<bool> ExistsUnder(absl::string_view kind, absl::string_view id,
                                   absl::string_view parent_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The NOT_FOUND for a `kind` object `id` missing from thread `thread_id`:
  // THREAD_NOT_FOUND when the thread is gone, else `kind`'s.
  absl::Status ChildNotFound(absl::string_view thread_id,
                             absl::string_view kind, absl::string_view id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // THREAD_HAS_ACTIVE_RUN (naming its oldest active run) when the thread has
  // an active run.
  // RESOURCE_EXHAUSTED (PROJECT_ACTIVE_RUN_LIMIT) when `limit` > 0 and the
  // project's threads hold `limit` active runs.
  absl::Status CheckProjectRunLimit(absl::string_view project, int64_t limit)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckNoActiveRun(absl::string_view thread_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Which list a page or cursor is in: `kind` objects under `parent_id`
  // (optionally only those with `run_id`), or, for the top-level kinds, the
  // ones owned by `project`.
  struct ListScope {
    absl::string_view kind;
    absl::string_view parent_id;
    absl::string_view run_id;
    absl::string_view project;
  };
  // The sequence number of cursor `id` in `scope`, live or deleted;
  // INVALID_CURSOR for `field` otherwise.
  absl::StatusOr<int64_t> CursorSeq(absl::string_view field,
                                    absl::string_view id,
                                    const ListScope& scope)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The serialized bodies of one page of `scope`.
  absl::StatusOr<Page<Row>> ListRows(const ListScope& scope,
                                     const ListQuery& query)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // ALREADY_EXISTS when `id` is taken by any object. `active` marks a run
  // whose status is active; `project` is set for assistants and threads.
  absl::Status InsertRow(absl::string_view kind, absl::string_view id,
                         absl::string_view parent_id, absl::string_view run_id,
                         const std::string& body, bool active = false,
                         absl::string_view project = "")
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Replaces the body of `kind` object `id` under `parent_id` in place
  // (keeping its seq, hence its list position), or inserts it when `id` is
  // new; ALREADY_EXISTS when `id` is some other object.
  absl::Status UpsertRow(absl::string_view kind, absl::string_view id,
                         absl::string_view parent_id, absl::string_view run_id,
                         const std::string& body)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether run `run_id` lives in thread `thread_id`, and its log's last
  // sequence (0: empty).
  struct RunLogState {
    bool exists = false;
    int64_t last_sequence = 0;
  };
  absl::StatusOr<RunLogState> ReadRunLogState(absl::string_view run_id,
                                              absl::string_view thread_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends serialized `bodies` of `events` to run `run_id`'s event log,
  // whose last sequence is `*last` (updated); RUN_EVENT_SEQUENCE unless they
  // continue it without gaps.
  absl::Status AppendEvents(absl::string_view run_id, int64_t* last,
                            const std::vector<v1::RunEvent>& events,
                            const std::vector<std::string>& bodies)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status UpdateBody(absl::string_view id, absl::string_view run_id,
                          const std::string& body)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Deletes the row of `id` and leaves a tombstone with its position.
  absl::Status DeleteRow(absl::string_view id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // ABORTED (IDEMPOTENCY_CONFLICT) when the key is taken, else writes it.
  absl::Status PutIdempotency(const IdempotencyRecord* record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Messages in thread `thread_id` (kept by triggers, see migration 3).
  absl::StatusOr<int64_t> CountMessages(absl::string_view thread_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckMessageLimit(absl::string_view thread_id, int64_t adding)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Shared bodies of the typed Get/Update/List methods.
  // Reads, mutates and writes back `kind` object `id` under `parent_id` in one
  // transaction; `not_found` builds the error for a missing object.
  template <typename T>
  absl::StatusOr<T> UpdateObject(absl::string_view kind, absl::string_view id,
                                 absl::string_view parent_id,
                                 const Mutation<T>& mutate,
                                 const std::function<absl::Status()>& not_found)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Checkpoints the WAL on its own connection when the writer's commit hook
  // asks for it (see SqliteStoreOptions::checkpoint_pages).
  void StartCheckpointer(const std::string& path);
  void CheckpointLoop(sqlite3* db);
  static int OnWalCommit(void* store, sqlite3* db, const char* name, int pages);

  const SqliteStoreOptions options_;

  absl::Mutex mu_;
  sqlite3* const db_ ABSL_GUARDED_BY(mu_);
  // Keyed by the SQL literal's address: every text is a string literal of
  // this file, so the pointer names it without hashing the text per call.
  absl::flat_hash_map<const char*, sqlite3_stmt*> statements_
      ABSL_GUARDED_BY(mu_);

  absl::Mutex checkpoint_mu_;
  bool checkpoint_wanted_ ABSL_GUARDED_BY(checkpoint_mu_) = false;
  bool checkpoint_stop_ ABSL_GUARDED_BY(checkpoint_mu_) = false;
  int64_t checkpoints_ ABSL_GUARDED_BY(checkpoint_mu_) = 0;
  std::thread checkpointer_;

 public:
  // Background checkpoints that copied pages into the database (tests).
  int64_t checkpoints();
};

}  // namespace assistants

#endif  // SERVICE_STORE_SQLITE_STORE_H_
