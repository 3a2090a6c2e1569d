// SqliteStore: objects are rows of one `objects` table (kind, id, parent,
// run_id, insertion seq, serialized body, and whether a run is active); run
// event logs are rows of `run_events`. One connection, guarded by a mutex,
// with its prepared statements cached per SQL text. Every method that issues
// more than one statement runs them in one transaction (BEGIN IMMEDIATE for
// writes, so the write lock is taken up front and checks cannot go stale).
#include "service/store/sqlite_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <limits>
#include <unordered_set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "service/common/errors.h"
#include "service/common/status_macros.h"
#include "service/store/paging.h"
#include "service/store/store_errors.h"

namespace assistants {
namespace {

// Schema migrations, applied in order; PRAGMA user_version holds how many
// have run. Never edit a released step: append a new one.
//
// objects.seq is AUTOINCREMENT so a sequence number is never reused, even
// after the newest row is deleted; tombstones keep the seq of deleted rows so
// a paging cursor naming one keeps its place. parent_id is NULL for top-level
// objects (assistants, threads), the thread for messages and runs, and the
// run for run steps (so deleting a run cascades to its steps).
// objects_by_parent_run also serves the foreign key's child lookup when a row
// is deleted.
//
// objects.active (2) is 1 exactly for runs whose status is active; the
// partial index over those rows alone makes "the active run of thread X" and
// "every active run" cheap however many finished runs pile up. run_events
// is keyed by (run_id, seq) so appending and resuming are primary-key range
// operations; it has no foreign key (that would cost a lookup per appended
// event): DeleteThread deletes a thread's logs itself.
constexpr const char* kMigrations[] = {
    // 1: objects, tombstones, idempotency records.
    R"sql(
CREATE TABLE objects (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL,
  parent_id TEXT REFERENCES objects(id) ON DELETE CASCADE,
  run_id TEXT NOT NULL DEFAULT '',
  body BLOB NOT NULL
);
CREATE INDEX objects_by_kind_parent ON objects(kind, parent_id, seq);
CREATE INDEX objects_by_parent_run ON objects(parent_id, run_id, seq);
CREATE TABLE tombstones (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  parent_id TEXT,
  seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX tombstones_by_parent ON tombstones(parent_id);
CREATE TABLE idempotency (
  key TEXT PRIMARY KEY,
  fingerprint BLOB NOT NULL,
  response BLOB NOT NULL,
  created_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX idempotency_by_age ON idempotency(created_at_ms);
)sql",
    // 2: runs (objects.active) and run event logs.
    R"sql(
ALTER TABLE objects ADD COLUMN active INTEGER NOT NULL DEFAULT 0;
CREATE INDEX objects_active_runs ON objects(parent_id, seq) WHERE active = 1;
CREATE TABLE run_events (
  run_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  body BLOB NOT NULL,
  PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
)sql",
    // 3: per-thread message counts, kept by triggers in the same transaction
    // as the rows, so the 100,000-message limit is checked without counting
    // a thread's messages on every insert (that grew with the thread).
    R"sql(
CREATE TABLE message_counts (
  thread_id TEXT PRIMARY KEY,
  messages INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO message_counts (thread_id, messages)
  SELECT parent_id, COUNT(*) FROM objects
  WHERE kind = 'message' GROUP BY parent_id;
CREATE TRIGGER message_counts_insert AFTER INSERT ON objects
  WHEN NEW.kind = 'message'
BEGIN
  INSERT INTO message_counts (thread_id, messages) VALUES (NEW.parent_id, 1)
    ON CONFLICT (thread_id) DO UPDATE SET messages = messages + 1;
END;
CREATE TRIGGER message_counts_delete AFTER DELETE ON objects
  WHEN OLD.kind = 'message'
BEGIN
  UPDATE message_counts SET messages = messages - 1
    WHERE thread_id = OLD.parent_id;
END;
CREATE TRIGGER message_counts_thread_delete AFTER DELETE ON objects
  WHEN OLD.kind = 'thread'
BEGIN
  DELETE FROM message_counts WHERE thread_id = OLD.id;
END;
)sql",
    // 4: projects. Assistants and threads name the project that owns them
    // (NULL for every other kind, so the partial index costs their inserts
    // nothing); what was stored before belongs to the default project.
    R"sql(
ALTER TABLE objects ADD COLUMN project TEXT;
UPDATE objects SET project = 'default' WHERE kind IN ('assistant', 'thread');
ALTER TABLE tombstones ADD COLUMN project TEXT;
UPDATE tombstones SET project = 'default' WHERE kind = 'assistant';
CREATE INDEX objects_by_project ON objects(kind, project, seq)
  WHERE project IS NOT NULL;
)sql",
};
constexpr int kSchemaVersion =
    static_cast<int>(sizeof(kMigrations) / sizeof(kMigrations[0]));

// Maps a failed SQLite call to the project's errors: trouble a retry may
// clear is UNAVAILABLE, a damaged file is DATA_LOSS, anything else is a bug.
absl::Status SqliteError(sqlite3* db, int rc, absl::string_view what) {
  std::string detail = absl::StrCat(what, ": ", sqlite3_errstr(rc));
  if (db != nullptr && sqlite3_errcode(db) == rc) {
    absl::StrAppend(&detail, " (", sqlite3_errmsg(db), ")");
  }
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_NOMEM:
    case SQLITE_PROTOCOL:
    case SQLITE_READONLY:
    case SQLITE_INTERRUPT:
    case SQLITE_NOLFS:
    case SQLITE_AUTH:
    case SQLITE_PERM:
      return StoreUnavailable(detail);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return MakeError(absl::StatusCode::kDataLoss, "STORE_CORRUPT",
                       absl::StrCat("The store is damaged: ", detail));
    default:
      return MakeError(absl::StatusCode::kInternal, "STORE_ERROR",
                       absl::StrCat("Store error: ", detail));
  }
}

absl::Status CorruptBody(absl::string_view id) {
  return MakeError(
      absl::StatusCode::kDataLoss, "STORE_CORRUPT",
      absl::StrCat("The stored object '", id, "' cannot be decoded."),
      {{"id", std::string(id)}});
}

// The run_id column of an object: only messages have one (a run step's run
// is its parent).
template <typename T>
std::string RunIdOf(const T&) {
  return "";
}
std::string RunIdOf(const v1::Message& message) { return message.run_id(); }

// The parent_id column of an object, checked to stay put across updates.
template <typename T>
std::string ParentOf(const T&) {
  return "";
}
std::string ParentOf(const v1::Message& message) { return message.thread_id(); }

}  // namespace

// A cached prepared statement, checked out for one use: binding, stepping and
// reading columns. Resets the statement when done so the cache can reuse it.
class SqliteStore::Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Statement(Statement&& other) noexcept
      : db_(other.db_),
        stmt_(std::exchange(other.stmt_, nullptr)),
        bind_rc_(other.bind_rc_) {}
  Statement& operator=(Statement&&) = delete;
  ~Statement() {
    if (stmt_ != nullptr) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }

  // Binds parameter `i` (1-based); an empty `value` binds NULL so top-level
  // objects match `parent_id IS ?`.
  Statement& BindParent(int i, absl::string_view value) {
    if (value.empty()) return Check(sqlite3_bind_null(stmt_, i));
    return BindText(i, value);
  }
  Statement& BindText(int i, absl::string_view value) {
    return Check(sqlite3_bind_text64(stmt_, i, value.data(), value.size(),
                                     SQLITE_TRANSIENT, SQLITE_UTF8));
  }
  Statement& BindBlob(int i, absl::string_view value) {
    return Check(sqlite3_bind_blob64(stmt_, i, value.data(), value.size(),
                                     SQLITE_TRANSIENT));
  }
  Statement& BindInt64(int i, int64_t value) {
    return Check(sqlite3_bind_int64(stmt_, i, value));
  }

  // True when a row is ready, false when the statement is done.
  absl::StatusOr<bool> Step() {
    if (bind_rc_ != SQLITE_OK) {
      return SqliteError(db_, bind_rc_, sqlite3_sql(stmt_));
    }
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteError(db_, rc, sqlite3_sql(stmt_));
  }
  // Steps a statement that returns no rows (or whose rows do not matter).
  absl::Status Run() { return Step().status(); }
  // Readies the statement to run again, with new bindings, without going
  // back through the cache (for loops on hot paths).
  Statement& Reset() {
    sqlite3_reset(stmt_);
    return *this;
  }

  int64_t Int64(int col) { return sqlite3_column_int64(stmt_, col); }
  std::string Blob(int col) {
    const void* data = sqlite3_column_blob(stmt_, col);
    const int size = sqlite3_column_bytes(stmt_, col);
    if (data == nullptr || size <= 0) return std::string();
    return std::string(static_cast<const char*>(data),
                       static_cast<size_t>(size));
  }

 private:
  Statement& Check(int rc) {
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
    return *this;
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  int bind_rc_ = SQLITE_OK;
};

// A transaction that rolls back unless committed, so every early return
// (error or mutation failure) leaves the database as it was.
class SqliteStore::Transaction {
 public:
  // Only for use while `store->mu_` is held, for the transaction's lifetime.
  static absl::StatusOr<Transaction> Begin(SqliteStore* store, bool write)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(store->mu_) {
    RETURN_IF_ERROR(store->Exec(write ? "BEGIN IMMEDIATE" : "BEGIN"));
    return Transaction(store);
  }
  Transaction(Transaction&& other) noexcept
      : store_(std::exchange(other.store_, nullptr)) {}
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    // SQLite may already have rolled back on its own (e.g. after SQLITE_FULL);
    // a second ROLLBACK would only fail.
    if (store_ != nullptr && !sqlite3_get_autocommit(store_->db_)) {
      store_->Exec("ROLLBACK").IgnoreError();
    }
  }

  absl::Status Commit() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    RETURN_IF_ERROR(store_->Exec("COMMIT"));
    store_ = nullptr;
    return absl::OkStatus();
  }

 private:
  explicit Transaction(SqliteStore* store) : store_(store) {}
  SqliteStore* store_;
};

// --- Opening and schema ---

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(
    const std::string& path) {
  return Open(path, SqliteStoreOptions());
}

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(
    const std::string& path, const SqliteStoreOptions& options) {
  const bool file_backed = !path.empty() && path != ":memory:";
  sqlite3* db = nullptr;
  // The store serializes access itself, so SQLite's own mutex is redundant.
  const int rc = sqlite3_open_v2(
      path.c_str(), &db,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
      nullptr);
  if (rc != SQLITE_OK) {
    absl::Status status = SqliteError(db, rc, "opening the database");
    sqlite3_close_v2(db);
    return status;
  }
  sqlite3_extended_result_codes(db, 1);
  std::unique_ptr<SqliteStore> store(new SqliteStore(db, options));
  {
    absl::MutexLock lock(&store->mu_);
    RETURN_IF_ERROR(store->Configure(file_backed));
    RETURN_IF_ERROR(store->Migrate());
  }
  if (file_backed) store->StartCheckpointer(path);
  return store;
}

void SqliteStore::StartCheckpointer(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  // A connection attaches to the WAL on its first read; until then a
  // checkpoint through it silently does nothing.
  if (rc != SQLITE_OK || sqlite3_exec(db, "SELECT COUNT(*) FROM sqlite_schema",
                                      nullptr, nullptr, nullptr) != SQLITE_OK) {
    // SQLite's own checkpoints inside commits still keep the WAL bounded.
    sqlite3_close_v2(db);
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    // Replaces SQLite's automatic checkpoint, which would run inside the
    // commit that crosses the threshold while it holds the store.
    sqlite3_wal_hook(db_, &SqliteStore::OnWalCommit, this);
  }
  checkpointer_ = std::thread([this, db] { CheckpointLoop(db); });
}

int SqliteStore::OnWalCommit(void* store, sqlite3*, const char*, int pages) {
  auto* self = static_cast<SqliteStore*>(store);
  if (pages >= self->options_.checkpoint_pages) {
    absl::MutexLock lock(&self->checkpoint_mu_);
    self->checkpoint_wanted_ = true;
  }
  return SQLITE_OK;
}

void SqliteStore::CheckpointLoop(sqlite3* db) {
  while (true) {
    {
      absl::MutexLock lock(&checkpoint_mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(checkpoint_mu_) {
        return checkpoint_wanted_ || checkpoint_stop_;
      };
      checkpoint_mu_.Await(absl::Condition(&ready));
      if (checkpoint_stop_) break;
      checkpoint_wanted_ = false;
    }
    // PASSIVE: copies what no reader still needs, never blocks the writer.
    int copied = 0;
    const int rc = sqlite3_wal_checkpoint_v2(
        db, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, &copied);
    absl::MutexLock lock(&checkpoint_mu_);
    if (rc == SQLITE_OK && copied > 0) ++checkpoints_;
  }
  sqlite3_close_v2(db);
}

int64_t SqliteStore::checkpoints() {
  absl::MutexLock lock(&checkpoint_mu_);
  return checkpoints_;
}

int SqliteStore::SchemaVersion() { return kSchemaVersion; }

SqliteStore::SqliteStore(sqlite3* db, const SqliteStoreOptions& options)
    : options_(options), db_(db) {}

SqliteStore::~SqliteStore() {
  if (checkpointer_.joinable()) {
    {
      absl::MutexLock lock(&checkpoint_mu_);
      checkpoint_stop_ = true;
    }
    checkpointer_.join();
  }
  absl::MutexLock lock(&mu_);
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  statements_.clear();
  sqlite3_close_v2(db_);
}

absl::Status SqliteStore::Configure(bool file_backed) {
  const int rc = sqlite3_busy_timeout(db_, options_.busy_timeout_ms);
  if (rc != SQLITE_OK) return SqliteError(db_, rc, "setting busy timeout");
  RETURN_IF_ERROR(Exec("PRAGMA foreign_keys = ON"));
  if (file_backed) {
    // WAL lets readers in other processes (backups, the CLI) run alongside
    // the writer; with it, synchronous=NORMAL is still crash-safe.
    ASSIGN_OR_RETURN(Statement stmt, Prepare("PRAGMA journal_mode = WAL"));
    ASSIGN_OR_RETURN(bool row, stmt.Step());
    const std::string mode = row ? stmt.Blob(0) : std::string();
    if (mode != "wal") {
      return MakeError(absl::StatusCode::kFailedPrecondition,
                       "STORE_UNSUPPORTED",
                       absl::StrCat("The database cannot use WAL journal mode "
                                    "(got '",
                                    mode, "')."));
    }
    RETURN_IF_ERROR(Exec("PRAGMA synchronous = NORMAL"));
  }
  return absl::OkStatus();
}

absl::Status SqliteStore::Migrate() {
  auto read_version =
      [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::StatusOr<int64_t> {
    ASSIGN_OR_RETURN(Statement stmt, Prepare("PRAGMA user_version"));
    ASSIGN_OR_RETURN(bool row, stmt.Step());
    return row ? stmt.Int64(0) : 0;
  };
  auto too_new = [](int64_t version) {
    return MakeError(
        absl::StatusCode::kFailedPrecondition, "STORE_SCHEMA_TOO_NEW",
        absl::StrCat("The database has schema version ", version,
                     " but this build supports at most ", kSchemaVersion,
                     "; it was written by a newer gateway. Upgrade the "
                     "gateway or use another database file."),
        {{"schema_version", absl::StrCat(version)},
         {"supported_schema_version", absl::StrCat(kSchemaVersion)}});
  };
  ASSIGN_OR_RETURN(int64_t version, read_version());
  if (version > kSchemaVersion) return too_new(version);
  if (version == kSchemaVersion) return absl::OkStatus();

  ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(this, /*write=*/true));
  // Another process may have migrated between the first read and the lock.
  ASSIGN_OR_RETURN(version, read_version());
  if (version > kSchemaVersion) return too_new(version);
  for (int64_t step = version; step < kSchemaVersion; ++step) {
    // Migration steps hold several statements, which only sqlite3_exec runs.
    char* message = nullptr;
    const int rc =
        sqlite3_exec(db_, kMigrations[step], nullptr, nullptr, &message);
    sqlite3_free(message);
    if (rc != SQLITE_OK) {
      return SqliteError(db_, rc,
                         absl::StrCat("applying schema migration ", step + 1));
    }
  }
  // PRAGMA takes no bound parameters; the version is our own integer.
  const std::string set_version =
      absl::StrCat("PRAGMA user_version = ", kSchemaVersion);
  const int rc =
      sqlite3_exec(db_, set_version.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return SqliteError(db_, rc, "setting user_version");
  return txn.Commit();
}

// --- Statement helpers ---

absl::StatusOr<SqliteStore::Statement> SqliteStore::Prepare(const char* sql) {
  auto it = statements_.find(sql);
  if (it == statements_.end()) {
    sqlite3_stmt* stmt = nullptr;
    const int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                      &stmt, nullptr);
    if (rc != SQLITE_OK) {
      sqlite3_finalize(stmt);
      return SqliteError(db_, rc, absl::StrCat("preparing ", sql));
    }
    it = statements_.emplace(sql, stmt).first;
  } else if (sqlite3_stmt_busy(it->second)) {
    // Reusing a statement mid-iteration would silently reset the outer use.
    return MakeError(absl::StatusCode::kInternal, "STORE_ERROR",
                     absl::StrCat("Statement already in use: ", sql));
  }
  return Statement(db_, it->second);
}

absl::Status SqliteStore::Exec(const char* sql) {
  ASSIGN_OR_RETURN(Statement stmt, Prepare(sql));
  return stmt.Run();
}

absl::StatusOr<std::optional<SqliteStore::Row>> SqliteStore::FindRow(
    absl::string_view kind, absl::string_view id, absl::string_view parent_id) {
  ASSIGN_OR_RETURN(Statement stmt,
                   Prepare("SELECT seq, body FROM objects "
                           "WHERE id = ?1 AND kind = ?2 AND parent_id IS ?3"));
  stmt.BindText(1, id).BindText(2, kind).BindParent(3, parent_id);
  ASSIGN_OR_RETURN(bool row, stmt.Step());
  if (!row) return std::optional<Row>();
  return std::optional<Row>(Row{stmt.Int64(0), std::string(id), stmt.Blob(1)});
}

absl::StatusOr<bool> SqliteStore::Exists(absl::string_view kind,
                                         absl::string_view id) {
  if (kind.empty()) {
    ASSIGN_OR_RETURN(Statement stmt,
                     Prepare("SELECT 1 FROM objects WHERE id = ?1"));
    stmt.BindText(1, id);
    return stmt.Step();
  }
  ASSIGN_OR_RETURN(
      Statement stmt,
      Prepare("SELECT 1 FROM objects WHERE id = ?1 AND kind = ?2"));
  stmt.BindText(1, id).BindText(2, kind);
  return stmt.Step();
}

absl::StatusOr<bool> SqliteStore::ExistsUnder(absl::string_view kind,
                                              absl::string_view id,
                                              absl::string_view parent_id) {
  ASSIGN_OR_RETURN(Statement stmt,
                   Prepare("SELECT 1 FROM objects "
                           "WHERE id = ?1 AND kind = ?2 AND parent_id = ?3"));
  stmt.BindText(1, id).BindText(2, kind).BindText(3, parent_id);
  return stmt.Step();
}

absl::Status SqliteStore::ChildNotFound(absl::string_view thread_id,
                                        absl::string_view kind,
                                        absl::string_view id) {
  ASSIGN_OR_RETURN(bool thread_exists, Exists(kThreadKind, thread_id));
  if (!thread_exists) return NotFound(kThreadKind, thread_id);
  return NotFound(kind, id);
}

absl::Status SqliteStore::CheckNoActiveRun(absl::string_view thread_id) {
  ASSIGN_OR_RETURN(Statement stmt,
                   Prepare("SELECT id FROM objects WHERE parent_id = ?1 AND "
                           "active = 1 ORDER BY seq LIMIT 1"));
  stmt.BindText(1, thread_id);
  ASSIGN_OR_RETURN(bool row, stmt.Step());
  if (row) return ThreadHasActiveRun(thread_id, stmt.Blob(0));
  return absl::OkStatus();
}

absl::Status SqliteStore::CheckProjectRunLimit(absl::string_view project,
                                               int64_t limit) {
  if (limit <= 0) return absl::OkStatus();
  ASSIGN_OR_RETURN(
      Statement stmt,
      Prepare("SELECT count(*) FROM objects AS run JOIN objects AS thread ON "
              "thread.id = run.parent_id WHERE run.active = 1 AND "
              "thread.project = ?1"));
  stmt.BindText(1, project);
  ASSIGN_OR_RETURN(bool row, stmt.Step());
  if (row && stmt.Int64(0) >= limit) {
    return ProjectActiveRunLimit(project, limit);
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> SqliteStore::CursorSeq(absl::string_view field,
                                               absl::string_view id,
                                               const ListScope& scope) {
  const bool by_project = !scope.project.empty();
  const absl::string_view owner = by_project ? scope.project : scope.parent_id;
  for (const char* sql :
       {by_project ? "SELECT seq FROM objects "
                     "WHERE id = ?1 AND kind = ?2 AND project = ?3"
                   : "SELECT seq FROM objects "
                     "WHERE id = ?1 AND kind = ?2 AND parent_id IS ?3",
        by_project ? "SELECT seq FROM tombstones "
                     "WHERE id = ?1 AND kind = ?2 AND project = ?3"
                   : "SELECT seq FROM tombstones "
                     "WHERE id = ?1 AND kind = ?2 AND parent_id IS ?3"}) {
    ASSIGN_OR_RETURN(Statement stmt, Prepare(sql));
    stmt.BindText(1, id).BindText(2, scope.kind).BindParent(3, owner);
    ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (row) return stmt.Int64(0);
  }
  return InvalidCursor(field, id);
}

absl::StatusOr<Page<SqliteStore::Row>> SqliteStore::ListRows(
    const ListScope& scope, const ListQuery& query) {
  std::optional<int64_t> after, before;
  if (!query.after.empty()) {
    ASSIGN_OR_RETURN(after, CursorSeq("after", query.after, scope));
  }
  if (!query.before.empty()) {
    ASSIGN_OR_RETURN(before, CursorSeq("before", query.before, scope));
  }
  const PageWindow w = MakePageWindow(query, after, before);
  Page<Row> page;
  if (w.lo >= w.hi) return page;
  // Fixed texts rather than one with optional clauses, so each can use its
  // best index and stay cached.
  const char* sql;
  if (!scope.project.empty()) {
    sql = w.upward ? "SELECT seq, id, body FROM objects WHERE kind = ?1 AND "
                     "project = ?2 AND seq > ?3 AND seq < ?4 "
                     "ORDER BY seq ASC LIMIT ?5"
                   : "SELECT seq, id, body FROM objects WHERE kind = ?1 AND "
                     "project = ?2 AND seq > ?3 AND seq < ?4 "
                     "ORDER BY seq DESC LIMIT ?5";
  } else if (scope.run_id.empty()) {
    sql = w.upward ? "SELECT seq, id, body FROM objects WHERE kind = ?1 AND "
                     "parent_id IS ?2 AND seq > ?3 AND seq < ?4 "
                     "ORDER BY seq ASC LIMIT ?5"
                   : "SELECT seq, id, body FROM objects WHERE kind = ?1 AND "
                     "parent_id IS ?2 AND seq > ?3 AND seq < ?4 "
                     "ORDER BY seq DESC LIMIT ?5";
  } else {
    sql = w.upward ? "SELECT seq, id, body FROM objects WHERE kind = ?1 AND "
                     "parent_id IS ?2 AND run_id = ?6 AND seq > ?3 AND "
                     "seq < ?4 ORDER BY seq ASC LIMIT ?5"
                   : "SELECT seq, id, body FROM objects WHERE kind = ?1 AND "
                     "parent_id IS ?2 AND run_id = ?6 AND seq > ?3 AND "
                     "seq < ?4 ORDER BY seq DESC LIMIT ?5";
  }
  ASSIGN_OR_RETURN(Statement stmt, Prepare(sql));
  const int64_t limit = std::max(query.limit, 0);
  stmt.BindText(1, scope.kind)
      .BindParent(2, scope.project.empty() ? scope.parent_id : scope.project)
      .BindInt64(3, w.lo)
      .BindInt64(4, w.hi)
      .BindInt64(5, limit + 1);
  if (scope.project.empty() && !scope.run_id.empty()) {
    stmt.BindText(6, scope.run_id);
  }
  while (true) {
    ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) break;
    if (static_cast<int64_t>(page.items.size()) == limit) {
      page.has_more = true;
      break;
    }
    page.items.push_back(Row{stmt.Int64(0), stmt.Blob(1), stmt.Blob(2)});
  }
  if (w.reverse) std::reverse(page.items.begin(), page.items.end());
  return page;
}

absl::Status SqliteStore::InsertRow(absl::string_view kind,
                                    absl::string_view id,
                                    absl::string_view parent_id,
                                    absl::string_view run_id,
                                    const std::string& body, bool active,
                                    absl::string_view project) {
  ASSIGN_OR_RETURN(bool taken, Exists("", id));
  if (taken) return AlreadyExists(kind, id);
  ASSIGN_OR_RETURN(
      Statement stmt,
      Prepare("INSERT INTO objects (id, kind, parent_id, run_id, body, "
              "active, project) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"));
  stmt.BindText(1, id)
      .BindText(2, kind)
      .BindParent(3, parent_id)
      .BindText(4, run_id)
      .BindBlob(5, body)
      .BindInt64(6, active ? 1 : 0)
      .BindParent(7, project);
  return stmt.Run();
}

absl::Status SqliteStore::UpsertRow(absl::string_view kind,
                                    absl::string_view id,
                                    absl::string_view parent_id,
                                    absl::string_view run_id,
                                    const std::string& body) {
  {
    // Replacing is the common case (a step or message updated as a run
    // streams), so try it first: one statement when it hits.
    ASSIGN_OR_RETURN(Statement stmt,
                     Prepare("UPDATE objects SET body = ?4, run_id = ?5 "
                             "WHERE id = ?1 AND kind = ?2 AND parent_id = ?3"));
    stmt.BindText(1, id)
        .BindText(2, kind)
        .BindText(3, parent_id)
        .BindBlob(4, body)
        .BindText(5, run_id);
    RETURN_IF_ERROR(stmt.Run());
    if (sqlite3_changes(db_) > 0) return absl::OkStatus();
  }
  return InsertRow(kind, id, parent_id, run_id, body);
}

absl::StatusOr<SqliteStore::RunLogState> SqliteStore::ReadRunLogState(
    absl::string_view run_id, absl::string_view thread_id) {
  // One statement for both checks: this runs once per run per commit batch.
  ASSIGN_OR_RETURN(
      Statement stmt,
      Prepare("SELECT EXISTS (SELECT 1 FROM objects WHERE id = ?1 AND "
              "kind = ?2 AND parent_id = ?3), (SELECT seq FROM run_events "
              "WHERE run_id = ?1 ORDER BY seq DESC LIMIT 1)"));
  stmt.BindText(1, run_id).BindText(2, kRunKind).BindText(3, thread_id);
  ASSIGN_OR_RETURN(bool row, stmt.Step());
  RunLogState state;
  if (row) {
    state.exists = stmt.Int64(0) != 0;
    state.last_sequence = stmt.Int64(1);  // NULL (no events) reads as 0
  }
  return state;
}

absl::Status SqliteStore::AppendEvents(absl::string_view run_id, int64_t* last,
                                       const std::vector<v1::RunEvent>& events,
                                       const std::vector<std::string>& bodies) {
  if (events.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(Statement stmt,
                   Prepare("INSERT INTO run_events (run_id, seq, body) "
                           "VALUES (?1, ?2, ?3)"));
  for (size_t i = 0; i < events.size(); ++i) {
    const int64_t expected = *last + 1;
    if (events[i].sequence() != expected) {
      return RunEventSequence(run_id, expected, events[i].sequence());
    }
    stmt.Reset()
        .BindText(1, run_id)
        .BindInt64(2, expected)
        .BindBlob(3, bodies[i]);
    RETURN_IF_ERROR(stmt.Run());
    *last = expected;
  }
  return absl::OkStatus();
}

absl::Status SqliteStore::UpdateBody(absl::string_view id,
                                     absl::string_view run_id,
                                     const std::string& body) {
  ASSIGN_OR_RETURN(
      Statement stmt,
      Prepare("UPDATE objects SET body = ?2, run_id = ?3 WHERE id = ?1"));
  stmt.BindText(1, id).BindBlob(2, body).BindText(3, run_id);
  return stmt.Run();
}

absl::Status SqliteStore::DeleteRow(absl::string_view id) {
  {
    ASSIGN_OR_RETURN(Statement stmt,
                     Prepare("INSERT OR REPLACE INTO tombstones "
                             "(id, kind, parent_id, seq, project) SELECT id, "
                             "kind, parent_id, seq, project FROM objects "
                             "WHERE id = ?1"));
    stmt.BindText(1, id);
    RETURN_IF_ERROR(stmt.Run());
  }
  ASSIGN_OR_RETURN(Statement stmt,
                   Prepare("DELETE FROM objects WHERE id = ?1"));
  stmt.BindText(1, id);
  return stmt.Run();
}

absl::Status SqliteStore::PutIdempotency(const IdempotencyRecord* record) {
  if (record == nullptr) return absl::OkStatus();
  {
    ASSIGN_OR_RETURN(Statement stmt,
                     Prepare("SELECT 1 FROM idempotency WHERE key = ?1"));
    stmt.BindText(1, record->key);
    ASSIGN_OR_RETURN(bool taken, stmt.Step());
    if (taken) {
      return IdempotencyConflict(record->key);
    }
  }
  ASSIGN_OR_RETURN(Statement stmt,
                   Prepare("INSERT INTO idempotency (key, fingerprint, "
                           "response, created_at_ms) VALUES (?1, ?2, ?3, ?4)"));
  stmt.BindText(1, record->key)
      .BindBlob(2, record->request_fingerprint)
      .BindBlob(3, record->response)
      .BindInt64(4, record->created_at_ms);
  return stmt.Run();
}

absl::StatusOr<int64_t> SqliteStore::CountMessages(
    absl::string_view thread_id) {
  ASSIGN_OR_RETURN(
      Statement stmt,
      Prepare("SELECT messages FROM message_counts WHERE thread_id = ?1"));
  stmt.BindText(1, thread_id);
  ASSIGN_OR_RETURN(bool row, stmt.Step());
  return row ? stmt.Int64(0) : 0;
}

absl::Status SqliteStore::CheckMessageLimit(absl::string_view thread_id,
                                            int64_t adding) {
  ASSIGN_OR_RETURN(int64_t count, CountMessages(thread_id));
  if (count + adding > options_.max_messages_per_thread) {
    return MessageLimit(thread_id, options_.max_messages_per_thread);
  }
  return absl::OkStatus();
}

namespace {

template <typename T>
absl::StatusOr<T> Decode(absl::string_view id, const std::string& body) {
  T object;
  if (!object.ParseFromString(body)) return CorruptBody(id);
  return object;
}

template <typename T>
absl::StatusOr<std::string> Encode(const T& object) {
  std::string body;
  if (!object.SerializeToString(&body)) {
    // Not every stored message has an id (run events do not).
    return MakeError(
        absl::StatusCode::kInternal, "STORE_ERROR",
        absl::StrCat("Cannot serialize a ", object.GetTypeName(), "."));
  }
  return body;
}

template <typename T>
absl::StatusOr<std::vector<std::string>> EncodeAll(
    const std::vector<T>& objects) {
  std::vector<std::string> bodies;
  bodies.reserve(objects.size());
  for (const T& object : objects) {
    ASSIGN_OR_RETURN(std::string body, Encode(object));
    bodies.push_back(std::move(body));
  }
  return bodies;
}

// Decodes a page of rows (SqliteStore::Row, deduced: the type is private).
template <typename T, typename RowPage>
absl::StatusOr<Page<T>> DecodePage(const RowPage& rows) {
  Page<T> page;
  page.has_more = rows.has_more;
  page.items.reserve(rows.items.size());
  for (const auto& row : rows.items) {
    ASSIGN_OR_RETURN(T object, Decode<T>(row.id, row.body));
    page.items.push_back(std::move(object));
  }
  return page;
}

}  // namespace

template <typename T>
absl::StatusOr<T> SqliteStore::UpdateObject(
    absl::string_view kind, absl::string_view id, absl::string_view parent_id,
    const Mutation<T>& mutate, const std::function<absl::Status()>& not_found) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(this, /*write=*/true));
  ASSIGN_OR_RETURN(std::optional<Row> row, FindRow(kind, id, parent_id));
  if (!row.has_value()) return not_found();
  ASSIGN_OR_RETURN(const T stored, Decode<T>(id, row->body));
  T updated = stored;
  RETURN_IF_ERROR(mutate(updated));
  if (updated.id() != stored.id()) return ImmutableField(kind, "id");
  if (ParentOf(updated) != ParentOf(stored)) {
    return ImmutableField(kind, "thread_id");
  }
  ASSIGN_OR_RETURN(std::string body, Encode(updated));
  RETURN_IF_ERROR(UpdateBody(id, RunIdOf(updated), body));
  RETURN_IF_ERROR(txn.Commit());
  return updated;
}

// --- Assistants ---

absl::Status SqliteStore::CreateAssistant(
    const v1::Assistant& assistant, absl::string_view project,
    const IdempotencyRecord* idempotency) {
  ASSIGN_OR_RETURN(std::string body, Encode(assistant));
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(this, /*write=*/true));
  RETURN_IF_ERROR(PutIdempotency(idempotency));
  RETURN_IF_ERROR(InsertRow(kAssistantKind, assistant.id(), "", "", body,
                            /*active=*/false, project));
  return txn.Commit();
}

absl::StatusOr<v1::Assistant> SqliteStore::GetAssistant(absl::string_view id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(std::optional<Row> row, FindRow(kAssistantKind, id, ""));
  if (!row.has_value()) return NotFound(kAssistantKind, id);
  return Decode<v1::Assistant>(id, row->body);
}

absl::StatusOr<Page<v1::Assistant>> SqliteStore::ListAssistants(
    absl::string_view project, const ListQuery& query) {
  Page<Row> rows;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(this, false));
    ASSIGN_OR_RETURN(rows, ListRows({kAssistantKind, "", "", project}, query));
    RETURN_IF_ERROR(txn.Commit());
  }
  Page<v1::Assistant> page;
  page.has_more = rows.has_more;
  for (const Row& row : rows.items) {
    v1::Assistant assistant;
    if (!assistant.ParseFromString(row.body)) {
      return CorruptBody(row.id);
    }
    page.items.push_back(std::move(assistant));
  }
  return page;
}

absl::StatusOr<v1::Assistant> SqliteStore::UpdateAssistant(
    absl::string_view id, const Mutation<v1::Assistant>& mutate) {
  return UpdateObject<v1::Assistant>(kAssistantKind, id, "", mutate, [id] {
    return NotFound(kAssistantKind, id);
  });
}

absl::Status SqliteStore::DeleteAssistant(absl::string_view id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(this, /*write=*/true));
  ASSIGN_OR_RETURN(bool exists, Exists(kAssistantKind, id));
  if (!exists) return NotFound(kAssistantKind, id);
  RETURN_IF_ERROR(DeleteRow(id));
  return txn.Commit();
}

// --- Threads ---

absl::Status SqliteStore::CreateThread(const v1::Thread& thread,
                                       absl::string_view project,
                                       const std::vector<v1::Message>& messages,
                                       const IdempotencyRecord* idempotency) {
  // Encode and check everything before taking the lock.
  ASSIGN_OR_RETURN(std::string thread_body, Encode(thread));
  std::vector<std::string> bodies;
  bodies.reserve(messages.size());
  for (const v1::Message& message : messages) {
    if (message.thread_id() != thread.id()) {
      return ThreadIdMismatch(thread.id(), message.id());
    }
    ASSIGN_OR_RETURN(std::string body, Encode(message));
    bodies.push_back(std::move(body));
  }
  if (static_cast<int64_t>(messages.size()) >
      options_.max_messages_per_thread) {
    return MessageLimit(thread.id(), options_.max_messages_per_thread);
  }
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(this, /*write=*/true));
  RETURN_IF_ERROR(PutIdempotency(idempotency));
  RETURN_IF_ERROR(InsertRow(kThreadKind, thread.id(), "", "", thread_body,
                            /*active=*/false, project));
  // Inserted in order, so the messages' seqs follow the order given.
  for (size_t i = 0; i < messages.size(); ++i) {
    RETURN_IF_ERROR(InsertRow(kMessageKind, messages[i].id(), thread.id(),
                              messages[i].run_id(), bodies[i]));
  }
  return txn.Commit();
}

absl::StatusOr<v1::Thread> SqliteStore::GetThread(absl::string_view id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(std::optional<Row> row, FindRow(kThreadKind, id, ""));
  if (!row.has_value()) return NotFound(kThreadKind, id);
  return Decode<v1::Thread>(id, row->body);
}

absl::StatusOr<v1::Thread> SqliteStore::UpdateThread(
    absl::string_view id, const Mutation<v1::Thread>& mutate) {
  return UpdateObject<v1::Thread>(kThreadKind, id, "", mutate,
                                  [id] { return NotFound(kThreadKind, id); });
}

absl::Status SqliteStore::DeleteThread(absl::string_view id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(this, /*write=*/true));
  ASSIGN_OR_RETURN(bool exists, Exists(kThreadKind, id));
  if (!exists) return NotFound(kThreadKind, id);
  RETURN_IF_ERROR(CheckNoActiveRun(id));
  {
    // Event logs have no foreign key to cascade along: delete them first,
    // while the runs still say which logs are the thread's.
    ASSIGN_OR_RETURN(Statement stmt,
                     Prepare("DELETE FROM run_events WHERE run_id IN (SELECT "
                             "id FROM objects WHERE kind = ?2 AND "
                             "parent_id = ?1)"));
    stmt.BindText(1, id).BindText(2, kRunKind);
    RETURN_IF_ERROR(stmt.Run());
  }
  // Children next, without tombstones: they can never be listed again
  // (listing needs the thread), so tombstones for them would be dead weight.
  // This covers every kind parented by the thread (messages, runs); the
  // foreign key's ON DELETE CASCADE takes the runs' steps.
  {
    ASSIGN_OR_RETURN(Statement stmt,
                     Prepare("DELETE FROM objects WHERE parent_id = ?1"));
    stmt.BindText(1, id);
    RETURN_IF_ERROR(stmt.Run());
  }
  {
    // Tombstones of children deleted earlier are unreachable now as well.
    ASSIGN_OR_RETURN(Statement stmt,
                     Prepare("DELETE FROM tombstones WHERE parent_id = ?1"));
    stmt.BindText(1, id);
    RETURN_IF_ERROR(stmt.Run());
  }
  RETURN_IF_ERROR(DeleteRow(id));
  return txn.Commit();
}

// --- Messages ---

absl::Status SqliteStore::CreateMessage(const v1::Message& message,
                                        const IdempotencyRecord* idempotency) {
  ASSIGN_OR_RETURN(std::string body, Encode(message));
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(this, /*write=*/true));
  RETURN_IF_ERROR(PutIdempotency(idempotency));
  ASSIGN_OR_RETURN(bool thread_exists,
                   Exists(kThreadKind, message.thread_id()));
  if (!thread_exists) return NotFound(kThreadKind, message.thread_id());
  RETURN_IF_ERROR(CheckNoActiveRun(message.thread_id()));
  RETURN_IF_ERROR(CheckMessageLimit(message.thread_id(), 1));
  RETURN_IF_ERROR(InsertRow(kMessageKind, message.id(), message.thread_id(),
                            message.run_id(), body));
  return txn.Commit();
}

absl::StatusOr<v1::Message> SqliteStore::GetMessage(
    absl::string_view thread_id, absl::string_view message_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(std::optional<Row> row,
                   FindRow(kMessageKind, message_id, thread_id));
  if (!row.has_value()) {
    return ChildNotFound(thread_id, kMessageKind, message_id);
  }
  return Decode<v1::Message>(message_id, row->body);
}

absl::StatusOr<Page<v1::Message>> SqliteStore::ListMessages(
    absl::string_view thread_id, absl::string_view run_id,
    const ListQuery& query) {
  Page<Row> rows;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(this, false));
    ASSIGN_OR_RETURN(bool thread_exists, Exists(kThreadKind, thread_id));
    if (!thread_exists) return NotFound(kThreadKind, thread_id);
    ASSIGN_OR_RETURN(rows,
                     ListRows({kMessageKind, thread_id, run_id, ""}, query));
    RETURN_IF_ERROR(txn.Commit());
  }
  Page<v1::Message> page;
  page.has_more = rows.has_more;
  for (const Row& row : rows.items) {
    v1::Message message;
    if (!message.ParseFromString(row.body)) {
      return CorruptBody(row.id);
    }
    page.items.push_back(std::move(message));
  }
  return page;
}

absl::StatusOr<v1::Message> SqliteStore::UpdateMessage(
    absl::string_view thread_id, absl::string_view message_id,
    const Mutation<v1::Message>& mutate) {
  return UpdateObject<v1::Message>(
      kMessageKind, message_id, thread_id, mutate,
      [this, thread_id, message_id]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        // Runs inside UpdateObject, under mu_.
        return ChildNotFound(thread_id, kMessageKind, message_id);
      });
}

absl::Status SqliteStore::DeleteMessage(absl::string_view thread_id,
                                        absl::string_view message_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(this, /*write=*/true));
  ASSIGN_OR_RETURN(std::optional<Row> row,
                   FindRow(kMessageKind, message_id, thread_id));
  if (!row.has_value()) {
    return ChildNotFound(thread_id, kMessageKind, message_id);
  }
  RETURN_IF_ERROR(DeleteRow(message_id));
  return txn.Commit();
}

// --- Runs, run steps and run event logs ---

absl::Status SqliteStore::CreateRun(const RunCreation& creation) {
  RETURN_IF_ERROR(
      ValidateRunCreation(creation, options_.max_messages_per_thread));
  const v1::Run& run = creation.run;
  const std::string& thread_id = run.thread_id();
  // Encode everything before taking the lock.
  std::string thread_body;
  if (creation.new_thread != nullptr) {
    ASSIGN_OR_RETURN(thread_body, Encode(*creation.new_thread));
  }
  ASSIGN_OR_RETURN(std::vector<std::string> message_bodies,
                   EncodeAll(creation.messages));
  ASSIGN_OR_RETURN(std::string run_body, Encode(run));
  ASSIGN_OR_RETURN(std::vector<std::string> event_bodies,
                   EncodeAll(creation.events));

  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(this, /*write=*/true));
  RETURN_IF_ERROR(PutIdempotency(creation.idempotency));
  if (creation.new_thread != nullptr) {
    RETURN_IF_ERROR(InsertRow(kThreadKind, thread_id, "", "", thread_body,
                              /*active=*/false, creation.project));
  } else {
    ASSIGN_OR_RETURN(bool thread_exists, Exists(kThreadKind, thread_id));
    if (!thread_exists) return NotFound(kThreadKind, thread_id);
    if (creation.reject_if_thread_active) {
      RETURN_IF_ERROR(CheckNoActiveRun(thread_id));
    }
    RETURN_IF_ERROR(CheckMessageLimit(
        thread_id, static_cast<int64_t>(creation.messages.size())));
  }
  RETURN_IF_ERROR(CheckProjectRunLimit(creation.project,
                                       creation.max_active_runs_in_project));
  // Messages before the run, so they list before anything the run adds.
  for (size_t i = 0; i < creation.messages.size(); ++i) {
    const v1::Message& message = creation.messages[i];
    RETURN_IF_ERROR(InsertRow(kMessageKind, message.id(), thread_id,
                              message.run_id(), message_bodies[i]));
  }
  RETURN_IF_ERROR(InsertRow(kRunKind, run.id(), thread_id, "", run_body,
                            IsActiveRunStatus(run.status())));
  int64_t last = 0;  // a new run's log is empty
  RETURN_IF_ERROR(AppendEvents(run.id(), &last, creation.events, event_bodies));
  return txn.Commit();
}

absl::StatusOr<v1::Run> SqliteStore::GetRun(absl::string_view thread_id,
                                            absl::string_view run_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(std::optional<Row> row,
                   FindRow(kRunKind, run_id, thread_id));
  if (!row.has_value()) return ChildNotFound(thread_id, kRunKind, run_id);
  return Decode<v1::Run>(run_id, row->body);
}

absl::StatusOr<Page<v1::Run>> SqliteStore::ListRuns(absl::string_view thread_id,
                                                    const ListQuery& query) {
  Page<Row> rows;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(this, false));
    ASSIGN_OR_RETURN(bool thread_exists, Exists(kThreadKind, thread_id));
    if (!thread_exists) return NotFound(kThreadKind, thread_id);
    ASSIGN_OR_RETURN(rows, ListRows({kRunKind, thread_id, "", ""}, query));
    RETURN_IF_ERROR(txn.Commit());
  }
  return DecodePage<v1::Run>(rows);
}

absl::StatusOr<std::vector<v1::Run>> SqliteStore::ListActiveRuns() {
  std::vector<Row> rows;
  {
    absl::MutexLock lock(&mu_);
    // Without INDEXED BY the planner prefers walking the whole table in seq
    // order to sorting the few rows of the partial index.
    ASSIGN_OR_RETURN(Statement stmt,
                     Prepare("SELECT seq, id, body FROM objects INDEXED BY "
                             "objects_active_runs WHERE active = 1 "
                             "ORDER BY seq"));
    while (true) {
      ASSIGN_OR_RETURN(bool row, stmt.Step());
      if (!row) break;
      rows.push_back(Row{stmt.Int64(0), stmt.Blob(1), stmt.Blob(2)});
    }
  }
  std::vector<v1::Run> runs;
  runs.reserve(rows.size());
  for (const Row& row : rows) {
    ASSIGN_OR_RETURN(v1::Run run, Decode<v1::Run>(row.id, row.body));
    runs.push_back(std::move(run));
  }
  return runs;
}

absl::Status SqliteStore::CommitRunChanges(
    const std::vector<const RunChanges*>& batch) {
  // Check and encode everything before taking the lock: this is the hot
  // path (every streamed event), and the lock serializes every store call.
  struct Encoded {
    std::string run;
    std::vector<std::string> steps;
    std::vector<std::string> messages;
    std::vector<std::string> events;
  };
  std::vector<Encoded> encoded(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    const RunChanges& changes = *batch[i];
    RETURN_IF_ERROR(ValidateRunChanges(changes));
    if (changes.run.has_value()) {
      ASSIGN_OR_RETURN(encoded[i].run, Encode(*changes.run));
    }
    ASSIGN_OR_RETURN(encoded[i].steps, EncodeAll(changes.steps));
    ASSIGN_OR_RETURN(encoded[i].messages, EncodeAll(changes.messages));
    ASSIGN_OR_RETURN(encoded[i].events, EncodeAll(changes.events));
  }

  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(this, /*write=*/true));
  // A batch usually holds many changes of few runs (a streaming run submits
  // one per token): each run is checked and its log's end read once.
  struct RunInBatch {
    absl::string_view thread_id;
    int64_t last_sequence = 0;
  };
  absl::flat_hash_map<absl::string_view, RunInBatch> runs;
  for (size_t i = 0; i < batch.size(); ++i) {
    const RunChanges& changes = *batch[i];
    const Encoded& bodies = encoded[i];
    auto [run, first_of_run] = runs.try_emplace(changes.run_id);
    if (first_of_run) {
      ASSIGN_OR_RETURN(RunLogState state,
                       ReadRunLogState(changes.run_id, changes.thread_id));
      if (!state.exists) return NotFound(kRunKind, changes.run_id);
      run->second = {changes.thread_id, state.last_sequence};
    } else if (run->second.thread_id != changes.thread_id) {
      return NotFound(kRunKind, changes.run_id);
    }
    if (changes.run.has_value()) {
      ASSIGN_OR_RETURN(
          Statement stmt,
          Prepare("UPDATE objects SET body = ?2, active = ?3 WHERE id = ?1"));
      stmt.BindText(1, changes.run_id)
          .BindBlob(2, bodies.run)
          .BindInt64(3, IsActiveRunStatus(changes.run->status()) ? 1 : 0);
      RETURN_IF_ERROR(stmt.Run());
    }
    for (size_t j = 0; j < changes.steps.size(); ++j) {
      RETURN_IF_ERROR(UpsertRow(kRunStepKind, changes.steps[j].id(),
                                changes.run_id, "", bodies.steps[j]));
    }
    for (size_t j = 0; j < changes.messages.size(); ++j) {
      const v1::Message& message = changes.messages[j];
      RETURN_IF_ERROR(UpsertRow(kMessageKind, message.id(), changes.thread_id,
                                message.run_id(), bodies.messages[j]));
    }
    RETURN_IF_ERROR(AppendEvents(changes.run_id, &run->second.last_sequence,
                                 changes.events, bodies.events));
    RETURN_IF_ERROR(PutIdempotency(changes.idempotency));
  }
  return txn.Commit();
}

absl::StatusOr<v1::RunStep> SqliteStore::GetRunStep(absl::string_view thread_id,
                                                    absl::string_view run_id,
                                                    absl::string_view step_id) {
  std::optional<Row> row;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(this, false));
    // The step's parent is its run; the run must be the thread's.
    ASSIGN_OR_RETURN(bool run_exists, ExistsUnder(kRunKind, run_id, thread_id));
    if (!run_exists) return ChildNotFound(thread_id, kRunKind, run_id);
    ASSIGN_OR_RETURN(row, FindRow(kRunStepKind, step_id, run_id));
    RETURN_IF_ERROR(txn.Commit());
  }
  if (!row.has_value()) return NotFound(kRunStepKind, step_id);
  return Decode<v1::RunStep>(step_id, row->body);
}

absl::StatusOr<Page<v1::RunStep>> SqliteStore::ListRunSteps(
    absl::string_view thread_id, absl::string_view run_id,
    const ListQuery& query) {
  Page<Row> rows;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(Transaction txn, Transaction::Begin(this, false));
    ASSIGN_OR_RETURN(bool run_exists, ExistsUnder(kRunKind, run_id, thread_id));
    if (!run_exists) return ChildNotFound(thread_id, kRunKind, run_id);
    ASSIGN_OR_RETURN(rows, ListRows({kRunStepKind, run_id, "", ""}, query));
    RETURN_IF_ERROR(txn.Commit());
  }
  return DecodePage<v1::RunStep>(rows);
}

absl::StatusOr<std::vector<v1::RunEvent>> SqliteStore::ListRunEvents(
    absl::string_view run_id, int64_t after_sequence, int limit) {
  std::vector<std::string> bodies;
  if (limit > 0) {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(Statement stmt,
                     Prepare("SELECT body FROM run_events WHERE run_id = ?1 "
                             "AND seq > ?2 ORDER BY seq LIMIT ?3"));
    stmt.BindText(1, run_id).BindInt64(2, after_sequence).BindInt64(3, limit);
    while (true) {
      ASSIGN_OR_RETURN(bool row, stmt.Step());
      if (!row) break;
      bodies.push_back(stmt.Blob(0));
    }
  }
  std::vector<v1::RunEvent> events;
  events.reserve(bodies.size());
  for (const std::string& body : bodies) {
    ASSIGN_OR_RETURN(v1::RunEvent event, Decode<v1::RunEvent>(run_id, body));
    events.push_back(std::move(event));
  }
  return events;
}

// --- Projects ---

absl::StatusOr<std::string> SqliteStore::GetProject(OwnedKind kind,
                                                    absl::string_view id) {
  const absl::string_view kind_name =
      kind == OwnedKind::kAssistant ? kAssistantKind : kThreadKind;
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Statement stmt, Prepare("SELECT project FROM objects "
                                           "WHERE id = ?1 AND kind = ?2"));
  stmt.BindText(1, id).BindText(2, kind_name);
  ASSIGN_OR_RETURN(bool row, stmt.Step());
  if (!row) return NotFound(kind_name, id);
  return stmt.Blob(0);
}

// --- Idempotency ---

absl::StatusOr<std::optional<IdempotencyRecord>>
SqliteStore::GetIdempotencyRecord(absl::string_view key) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Statement stmt,
                   Prepare("SELECT fingerprint, response, created_at_ms "
                           "FROM idempotency WHERE key = ?1"));
  stmt.BindText(1, key);
  ASSIGN_OR_RETURN(bool row, stmt.Step());
  if (!row) return std::optional<IdempotencyRecord>();
  IdempotencyRecord record;
  record.key = std::string(key);
  record.request_fingerprint = stmt.Blob(0);
  record.response = stmt.Blob(1);
  record.created_at_ms = stmt.Int64(2);
  return std::optional<IdempotencyRecord>(std::move(record));
}

absl::StatusOr<int64_t> SqliteStore::PruneIdempotencyRecords(
    int64_t cutoff_ms) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Statement stmt,
                   Prepare("DELETE FROM idempotency WHERE created_at_ms < ?1"));
  stmt.BindInt64(1, cutoff_ms);
  RETURN_IF_ERROR(stmt.Run());
  return static_cast<int64_t>(sqlite3_changes(db_));
}

}  // namespace assistants
