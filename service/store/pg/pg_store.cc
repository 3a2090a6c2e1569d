// PgStore: SqliteStore's design on PostgreSQL (see pg_schema.cc for the
// tables). Each method is one pool.InTransaction at READ COMMITTED; where a
// check must not go stale before the write (one active run per thread, the
// message limit, deleting a thread, a run's event log) the rows it depends
// on are locked explicitly, always in the order thread -> runs -> leases so
// concurrent transactions cannot deadlock on each other. Batches write one
// multi-row statement per table (VALUES lists of bound parameters, bytea in
// binary) instead of a round trip per row.
#include "service/store/pg/pg_store.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "service/common/errors.h"
#include "service/common/status_macros.h"
#include "service/store/paging.h"
#include "service/store/pg/pg_errors.h"
#include "service/store/pg/pg_schema.h"
#include "service/store/store_errors.h"

namespace assistants {
namespace {

using pg::Connection;
using pg::Param;
using pg::Result;

// Rows per multi-row statement: keeps the parameter count (at most 7 per
// row) far below PostgreSQL's limit of 65535.
constexpr size_t kMaxRowsPerStatement = 2000;

Param Text(absl::string_view value) { return Param::Text(std::string(value)); }
// NULL for an empty string (parent_id and project of objects without one).
Param TextOrNull(absl::string_view value) {
  return value.empty() ? Param::Null() : Text(value);
}
Param Bool(bool value) { return Param::Text(value ? "true" : "false"); }

// A text[] literal ({"a","b"}) for `= ANY($1::text[])`.
Param TextArray(const std::vector<std::string>& items) {
  std::string literal = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) literal += ',';
    literal += '"';
    for (char c : items[i]) {
      if (c == '"' || c == '\\') literal += '\\';
      literal += c;
    }
    literal += '"';
  }
  literal += '}';
  return Param::Text(std::move(literal));
}

// One stored row: its insertion sequence number, id and serialized body.
struct Row {
  int64_t seq = 0;
  std::string id;
  std::string body;
};

absl::Status CorruptBody(absl::string_view id) {
  return MakeError(
      absl::StatusCode::kDataLoss, "STORE_CORRUPT",
      absl::StrCat("The stored object '", id, "' cannot be decoded."),
      {{"id", std::string(id)}});
}

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

template <typename T>
absl::StatusOr<Page<T>> DecodePage(const Page<Row>& rows) {
  Page<T> page;
  page.has_more = rows.has_more;
  page.items.reserve(rows.items.size());
  for (const Row& row : rows.items) {
    ASSIGN_OR_RETURN(T object, Decode<T>(row.id, row.body));
    page.items.push_back(std::move(object));
  }
  return page;
}

// The run_id column of an object: only messages have one.
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

// Runs `head` VALUES-list `tail` over `params` (`columns` per row, each
// placeholder cast as `casts` says), in chunks of kMaxRowsPerStatement
// rows; returns the first column of every row the statements return.
absl::StatusOr<std::vector<std::string>> ExecValues(
    Connection& connection, absl::string_view head,
    const std::vector<absl::string_view>& casts, absl::string_view tail,
    std::vector<Param> params) {
  std::vector<std::string> returned;
  const size_t columns = casts.size();
  const size_t rows = params.size() / columns;
  for (size_t first = 0; first < rows; first += kMaxRowsPerStatement) {
    const size_t count = std::min(kMaxRowsPerStatement, rows - first);
    std::string sql(head);
    int placeholder = 1;
    for (size_t row = 0; row < count; ++row) {
      sql += row == 0 ? "(" : ",(";
      for (size_t column = 0; column < columns; ++column) {
        absl::StrAppend(&sql, column == 0 ? "$" : ",$", placeholder++,
                        "::", casts[column]);
      }
      sql += ')';
    }
    absl::StrAppend(&sql, tail);
    std::vector<Param> chunk(
        std::make_move_iterator(params.begin() + first * columns),
        std::make_move_iterator(params.begin() + (first + count) * columns));
    ASSIGN_OR_RETURN(Result result, connection.Exec(sql, chunk));
    for (int i = 0; i < result.rows(); ++i) {
      returned.push_back(result.Text(i, 0));
    }
  }
  return returned;
}

// ALREADY_EXISTS for the first of `ids` (in order) that `written` lacks:
// the statement skipped it because the id is taken.
absl::Status CheckAllWritten(absl::string_view kind,
                             const std::vector<std::string>& ids,
                             const std::vector<std::string>& written) {
  if (written.size() == ids.size()) return absl::OkStatus();
  absl::flat_hash_map<std::string, int> remaining;
  for (const std::string& id : written) ++remaining[id];
  for (const std::string& id : ids) {
    auto it = remaining.find(id);
    if (it == remaining.end() || it->second == 0) {
      return AlreadyExists(kind, id);
    }
    --it->second;
  }
  return absl::OkStatus();
}

// The live row of `id` if it is a `kind` under `parent_id` (empty: a
// top-level object); `lock` takes its row lock for an update.
absl::StatusOr<std::optional<Row>> FindRow(Connection& connection,
                                           absl::string_view kind,
                                           absl::string_view id,
                                           absl::string_view parent_id,
                                           bool lock = false) {
  const char* sql;
  std::vector<Param> params = {Text(id), Text(kind)};
  if (parent_id.empty()) {
    sql = lock ? "SELECT seq, body FROM objects WHERE id = $1 AND kind = $2 "
                 "AND parent_id IS NULL FOR UPDATE"
               : "SELECT seq, body FROM objects WHERE id = $1 AND kind = $2 "
                 "AND parent_id IS NULL";
  } else {
    sql = lock ? "SELECT seq, body FROM objects WHERE id = $1 AND kind = $2 "
                 "AND parent_id = $3 FOR UPDATE"
               : "SELECT seq, body FROM objects WHERE id = $1 AND kind = $2 "
                 "AND parent_id = $3";
    params.push_back(Text(parent_id));
  }
  ASSIGN_OR_RETURN(Result result, connection.Exec(sql, params));
  if (result.rows() == 0) return std::optional<Row>();
  return std::optional<Row>(
      Row{result.Int(0, 0), std::string(id), result.Bytes(0, 1)});
}

absl::StatusOr<bool> Exists(Connection& connection, absl::string_view kind,
                            absl::string_view id) {
  ASSIGN_OR_RETURN(
      Result result,
      connection.Exec("SELECT 1 FROM objects WHERE id = $1 AND kind = $2",
                      {Text(id), Text(kind)}));
  return result.rows() > 0;
}

absl::StatusOr<bool> ExistsUnder(Connection& connection, absl::string_view kind,
                                 absl::string_view id,
                                 absl::string_view parent_id) {
  ASSIGN_OR_RETURN(Result result,
                   connection.Exec("SELECT 1 FROM objects WHERE id = $1 AND "
                                   "kind = $2 AND parent_id = $3",
                                   {Text(id), Text(kind), Text(parent_id)}));
  return result.rows() > 0;
}

// The NOT_FOUND for a `kind` object `id` missing from thread `thread_id`:
// THREAD_NOT_FOUND when the thread is gone, else `kind`'s.
absl::Status ChildNotFound(Connection& connection, absl::string_view thread_id,
                           absl::string_view kind, absl::string_view id) {
  ASSIGN_OR_RETURN(bool thread_exists,
                   Exists(connection, kThreadKind, thread_id));
  if (!thread_exists) return NotFound(kThreadKind, thread_id);
  return NotFound(kind, id);
}

// Locks thread `thread_id`'s row until the transaction ends: every write
// whose checks depend on the thread's contents takes it first, so those
// writes are serialized per thread across replicas. THREAD_NOT_FOUND when
// there is no such thread.
absl::Status LockThread(Connection& connection, absl::string_view thread_id) {
  ASSIGN_OR_RETURN(Result result,
                   connection.Exec("SELECT 1 FROM objects WHERE id = $1 AND "
                                   "kind = 'thread' FOR UPDATE",
                                   {Text(thread_id)}));
  if (result.rows() == 0) return NotFound(kThreadKind, thread_id);
  return absl::OkStatus();
}

// THREAD_HAS_ACTIVE_RUN (naming its oldest active run) when the thread has
// one. Callers hold the thread's lock.
absl::Status CheckNoActiveRun(Connection& connection,
                              absl::string_view thread_id) {
  ASSIGN_OR_RETURN(Result result,
                   connection.Exec("SELECT id FROM objects WHERE parent_id = "
                                   "$1 AND active ORDER BY seq LIMIT 1",
                                   {Text(thread_id)}));
  if (result.rows() > 0) {
    return ThreadHasActiveRun(thread_id, result.Text(0, 0));
  }
  return absl::OkStatus();
}

// PROJECT_ACTIVE_RUN_LIMIT when `limit` > 0 and the project's threads hold
// `limit` active runs. A transaction-level advisory lock per project makes
// the count and the caller's insert one step for every replica (READ
// COMMITTED: the count, taken after the lock, sees the previous holder's
// committed run).
absl::Status CheckProjectRunLimit(Connection& connection,
                                  absl::string_view project, int64_t limit) {
  if (limit <= 0) return absl::OkStatus();
  // First key: ASCII "PRUN", this store's project run-limit locks.
  RETURN_IF_ERROR(
      connection
          .Exec("SELECT pg_advisory_xact_lock(1347573070, hashtext($1))",
                {Text(project)})
          .status());
  ASSIGN_OR_RETURN(
      Result result,
      connection.Exec("SELECT count(*) FROM objects AS run JOIN objects AS "
                      "thread ON thread.id = run.parent_id WHERE run.active "
                      "AND thread.project = $1",
                      {Text(project)}));
  if (result.Int(0, 0) >= limit) return ProjectActiveRunLimit(project, limit);
  return absl::OkStatus();
}

absl::Status CheckMessageLimit(Connection& connection,
                               absl::string_view thread_id, int64_t adding,
                               int64_t limit) {
  ASSIGN_OR_RETURN(Result result,
                   connection.Exec("SELECT messages FROM message_counts "
                                   "WHERE thread_id = $1",
                                   {Text(thread_id)}));
  const int64_t count = result.rows() > 0 ? result.Int(0, 0) : 0;
  if (count + adding > limit) return MessageLimit(thread_id, limit);
  return absl::OkStatus();
}

// Which list a page or cursor is in: `kind` objects under `parent_id`
// (optionally only those with `run_id`), or, for assistants, the ones
// owned by `project`.
struct ListScope {
  absl::string_view kind;
  absl::string_view parent_id;
  absl::string_view run_id;
  absl::string_view project;
};

// The seq of cursor `id` in `scope`, live or deleted; INVALID_CURSOR for
// `field` otherwise.
absl::StatusOr<int64_t> CursorSeq(Connection& connection,
                                  absl::string_view field, absl::string_view id,
                                  const ListScope& scope) {
  const bool by_project = !scope.project.empty();
  const absl::string_view owner = by_project ? scope.project : scope.parent_id;
  for (const char* sql :
       {by_project ? "SELECT seq FROM objects "
                     "WHERE id = $1 AND kind = $2 AND project = $3"
                   : "SELECT seq FROM objects "
                     "WHERE id = $1 AND kind = $2 AND parent_id = $3",
        by_project ? "SELECT seq FROM tombstones "
                     "WHERE id = $1 AND kind = $2 AND project = $3"
                   : "SELECT seq FROM tombstones "
                     "WHERE id = $1 AND kind = $2 AND parent_id = $3"}) {
    ASSIGN_OR_RETURN(
        Result result,
        connection.Exec(sql, {Text(id), Text(scope.kind), Text(owner)}));
    if (result.rows() > 0) return result.Int(0, 0);
  }
  return InvalidCursor(field, id);
}

absl::StatusOr<Page<Row>> ListRows(Connection& connection,
                                   const ListScope& scope,
                                   const ListQuery& query) {
  std::optional<int64_t> after, before;
  if (!query.after.empty()) {
    ASSIGN_OR_RETURN(after, CursorSeq(connection, "after", query.after, scope));
  }
  if (!query.before.empty()) {
    ASSIGN_OR_RETURN(before,
                     CursorSeq(connection, "before", query.before, scope));
  }
  const PageWindow w = MakePageWindow(query, after, before);
  Page<Row> page;
  if (w.lo >= w.hi) return page;
  // Fixed texts rather than one with optional clauses, so each is prepared
  // once and planned for its index.
  const char* sql;
  if (!scope.project.empty()) {
    sql = w.upward ? "SELECT seq, id, body FROM objects WHERE kind = $1 AND "
                     "project = $2 AND seq > $3 AND seq < $4 "
                     "ORDER BY seq ASC LIMIT $5"
                   : "SELECT seq, id, body FROM objects WHERE kind = $1 AND "
                     "project = $2 AND seq > $3 AND seq < $4 "
                     "ORDER BY seq DESC LIMIT $5";
  } else if (scope.run_id.empty()) {
    sql = w.upward ? "SELECT seq, id, body FROM objects WHERE kind = $1 AND "
                     "parent_id = $2 AND seq > $3 AND seq < $4 "
                     "ORDER BY seq ASC LIMIT $5"
                   : "SELECT seq, id, body FROM objects WHERE kind = $1 AND "
                     "parent_id = $2 AND seq > $3 AND seq < $4 "
                     "ORDER BY seq DESC LIMIT $5";
  } else {
    sql = w.upward ? "SELECT seq, id, body FROM objects WHERE kind = $1 AND "
                     "parent_id = $2 AND run_id = $6 AND seq > $3 AND "
                     "seq < $4 ORDER BY seq ASC LIMIT $5"
                   : "SELECT seq, id, body FROM objects WHERE kind = $1 AND "
                     "parent_id = $2 AND run_id = $6 AND seq > $3 AND "
                     "seq < $4 ORDER BY seq DESC LIMIT $5";
  }
  const int64_t limit = std::max(query.limit, 0);
  std::vector<Param> params = {
      Text(scope.kind),
      Text(scope.project.empty() ? scope.parent_id : scope.project),
      Param::Int(w.lo), Param::Int(w.hi), Param::Int(limit + 1)};
  if (scope.project.empty() && !scope.run_id.empty()) {
    params.push_back(Text(scope.run_id));
  }
  ASSIGN_OR_RETURN(Result result, connection.Exec(sql, params));
  for (int i = 0; i < result.rows(); ++i) {
    if (static_cast<int64_t>(page.items.size()) == limit) {
      page.has_more = true;
      break;
    }
    page.items.push_back(
        Row{result.Int(i, 0), result.Text(i, 1), result.Bytes(i, 2)});
  }
  if (w.reverse) std::reverse(page.items.begin(), page.items.end());
  return page;
}

// A new object for InsertObjects.
struct NewObject {
  std::string id;
  std::string run_id;
  std::string body;
  bool active = false;
};

// Inserts `objects` of `kind` under `parent_id` (empty: top-level) owned by
// `project` (empty: none) in the order given (their seqs follow it);
// ALREADY_EXISTS (naming the first) when an id is taken by any object.
absl::Status InsertObjects(Connection& connection, absl::string_view kind,
                           absl::string_view parent_id,
                           absl::string_view project,
                           const std::vector<NewObject>& objects) {
  if (objects.empty()) return absl::OkStatus();
  std::vector<Param> params;
  std::vector<std::string> ids;
  params.reserve(objects.size() * 7);
  for (const NewObject& object : objects) {
    params.push_back(Text(object.id));
    params.push_back(Text(kind));
    params.push_back(TextOrNull(parent_id));
    params.push_back(Text(object.run_id));
    params.push_back(TextOrNull(project));
    params.push_back(Bool(object.active));
    params.push_back(Param::Bytes(object.body));
    ids.push_back(object.id);
  }
  // DO NOTHING rather than failing on the unique index: the transaction
  // stays usable and the returned ids say exactly which id was taken.
  ASSIGN_OR_RETURN(
      std::vector<std::string> written,
      ExecValues(connection,
                 "INSERT INTO objects (id, kind, parent_id, run_id, project, "
                 "active, body) VALUES ",
                 {"text", "text", "text", "text", "text", "boolean", "bytea"},
                 " ON CONFLICT DO NOTHING RETURNING id", std::move(params)));
  return CheckAllWritten(kind, ids, written);
}

// A child written by CommitRunChanges: replaced in place (keeping its seq,
// hence its list position) when `id` is already a `kind` under the same
// parent, inserted otherwise.
struct Upsert {
  std::string id;
  std::string parent_id;
  std::string run_id;
  std::string body;
};

// ALREADY_EXISTS when an id is some other object. Each id at most once.
absl::Status UpsertObjects(Connection& connection, absl::string_view kind,
                           const std::vector<Upsert>& rows) {
  if (rows.empty()) return absl::OkStatus();
  std::vector<Param> params;
  std::vector<std::string> ids;
  params.reserve(rows.size() * 5);
  for (const Upsert& row : rows) {
    params.push_back(Text(row.id));
    params.push_back(Text(kind));
    params.push_back(Text(row.parent_id));
    params.push_back(Text(row.run_id));
    params.push_back(Param::Bytes(row.body));
    ids.push_back(row.id);
  }
  ASSIGN_OR_RETURN(
      std::vector<std::string> written,
      ExecValues(connection,
                 "INSERT INTO objects AS o (id, kind, parent_id, run_id, body) "
                 "VALUES ",
                 {"text", "text", "text", "text", "bytea"},
                 " ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, "
                 "run_id = EXCLUDED.run_id WHERE o.kind = EXCLUDED.kind AND "
                 "o.parent_id = EXCLUDED.parent_id RETURNING o.id",
                 std::move(params)));
  return CheckAllWritten(kind, ids, written);
}

// Deletes the row of `id` and leaves a tombstone with its position.
absl::Status DeleteRow(Connection& connection, absl::string_view id) {
  return connection
      .Exec(
          "WITH gone AS (DELETE FROM objects WHERE id = $1 "
          "RETURNING id, kind, parent_id, project, seq) "
          "INSERT INTO tombstones (id, kind, parent_id, project, seq) "
          "SELECT id, kind, parent_id, project, seq FROM gone "
          "ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, "
          "parent_id = EXCLUDED.parent_id, project = EXCLUDED.project, "
          "seq = EXCLUDED.seq",
          {Text(id)})
      .status();
}

// ABORTED (IDEMPOTENCY_CONFLICT) when the key is taken, else writes it. A
// concurrent transaction writing the same key makes this one wait for its
// outcome, then conflict if it committed.
absl::Status PutIdempotency(Connection& connection,
                            const IdempotencyRecord* record) {
  if (record == nullptr) return absl::OkStatus();
  ASSIGN_OR_RETURN(
      Result result,
      connection.Exec(
          "INSERT INTO idempotency (key, fingerprint, response, "
          "created_at_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO NOTHING",
          {Text(record->key), Param::Bytes(record->request_fingerprint),
           Param::Bytes(record->response), Param::Int(record->created_at_ms)}));
  if (result.affected() == 0) return IdempotencyConflict(record->key);
  return absl::OkStatus();
}

// An event to append: the caller has checked that the sequences continue
// each run's log.
struct NewEvent {
  absl::string_view run_id;
  int64_t sequence = 0;
  const std::string* body = nullptr;
};

absl::Status InsertEvents(Connection& connection,
                          const std::vector<NewEvent>& events) {
  if (events.empty()) return absl::OkStatus();
  std::vector<Param> params;
  params.reserve(events.size() * 3);
  for (const NewEvent& event : events) {
    params.push_back(Text(event.run_id));
    params.push_back(Param::Int(event.sequence));
    params.push_back(Param::Bytes(*event.body));
  }
  return ExecValues(connection,
                    "INSERT INTO run_events (run_id, seq, body) VALUES ",
                    {"text", "bigint", "bytea"}, "", std::move(params))
      .status();
}

// Wakes every replica streaming these runs' events; delivered at commit,
// in commit order (nothing when the transaction rolls back).
absl::Status NotifyRunEvents(Connection& connection,
                             const std::vector<std::string>& run_ids) {
  if (run_ids.empty()) return absl::OkStatus();
  return connection
      .Exec(absl::StrCat("SELECT pg_notify('", kRunEventsChannel,
                         "', r) FROM unnest($1::text[]) AS r"),
            {TextArray(run_ids)})
      .status();
}

}  // namespace

// --- Opening ---

PgStore::PgStore(const std::string& conninfo, const PgStoreOptions& options)
    : options_(options), pool_(conninfo, options.pool_size) {}

PgStore::~PgStore() = default;

absl::StatusOr<std::unique_ptr<PgStore>> PgStore::Open(
    const std::string& conninfo, PgStoreOptions options) {
  std::unique_ptr<PgStore> store(new PgStore(conninfo, options));
  RETURN_IF_ERROR(pg::Migrate(store->pool_, kPgStoreComponent, PgMigrations()));
  return store;
}

template <typename T>
absl::StatusOr<T> PgStore::UpdateObject(absl::string_view kind,
                                        absl::string_view id,
                                        absl::string_view parent_id,
                                        const Mutation<T>& mutate) {
  T updated;
  RETURN_IF_ERROR(pool_.InTransaction([&](Connection& c) -> absl::Status {
    ASSIGN_OR_RETURN(std::optional<Row> row,
                     FindRow(c, kind, id, parent_id, /*lock=*/true));
    if (!row.has_value()) {
      if (parent_id.empty()) return NotFound(kind, id);
      return ChildNotFound(c, parent_id, kind, id);
    }
    ASSIGN_OR_RETURN(const T stored, Decode<T>(id, row->body));
    updated = stored;
    RETURN_IF_ERROR(mutate(updated));
    if (updated.id() != stored.id()) return ImmutableField(kind, "id");
    if (ParentOf(updated) != ParentOf(stored)) {
      return ImmutableField(kind, "thread_id");
    }
    ASSIGN_OR_RETURN(std::string body, Encode(updated));
    return c
        .Exec("UPDATE objects SET body = $2, run_id = $3 WHERE id = $1",
              {Text(id), Param::Bytes(std::move(body)), Text(RunIdOf(updated))})
        .status();
  }));
  return updated;
}

// --- Assistants ---

absl::Status PgStore::CreateAssistant(const v1::Assistant& assistant,
                                      absl::string_view project,
                                      const IdempotencyRecord* idempotency) {
  ASSIGN_OR_RETURN(std::string body, Encode(assistant));
  return pool_.InTransaction([&](Connection& c) -> absl::Status {
    RETURN_IF_ERROR(PutIdempotency(c, idempotency));
    return InsertObjects(c, kAssistantKind, "", project,
                         {{assistant.id(), "", body}});
  });
}

absl::StatusOr<v1::Assistant> PgStore::GetAssistant(absl::string_view id) {
  std::optional<Row> row;
  RETURN_IF_ERROR(pool_.InTransaction([&](Connection& c) -> absl::Status {
    ASSIGN_OR_RETURN(row, FindRow(c, kAssistantKind, id, ""));
    return absl::OkStatus();
  }));
  if (!row.has_value()) return NotFound(kAssistantKind, id);
  return Decode<v1::Assistant>(id, row->body);
}

absl::StatusOr<Page<v1::Assistant>> PgStore::ListAssistants(
    absl::string_view project, const ListQuery& query) {
  Page<Row> rows;
  RETURN_IF_ERROR(pool_.InTransaction([&](Connection& c) -> absl::Status {
    ASSIGN_OR_RETURN(rows,
                     ListRows(c, {kAssistantKind, "", "", project}, query));
    return absl::OkStatus();
  }));
  return DecodePage<v1::Assistant>(rows);
}

absl::StatusOr<v1::Assistant> PgStore::UpdateAssistant(
    absl::string_view id, const Mutation<v1::Assistant>& mutate) {
  return UpdateObject<v1::Assistant>(kAssistantKind, id, "", mutate);
}

absl::Status PgStore::DeleteAssistant(absl::string_view id) {
  return pool_.InTransaction([&](Connection& c) -> absl::Status {
    ASSIGN_OR_RETURN(std::optional<Row> row,
                     FindRow(c, kAssistantKind, id, "", /*lock=*/true));
    if (!row.has_value()) return NotFound(kAssistantKind, id);
    return DeleteRow(c, id);
  });
}

// --- Threads ---

absl::Status PgStore::CreateThread(const v1::Thread& thread,
                                   absl::string_view project,
                                   const std::vector<v1::Message>& messages,
                                   const IdempotencyRecord* idempotency) {
  ASSIGN_OR_RETURN(std::string thread_body, Encode(thread));
  std::vector<NewObject> rows;
  rows.reserve(messages.size());
  for (const v1::Message& message : messages) {
    if (message.thread_id() != thread.id()) {
      return ThreadIdMismatch(thread.id(), message.id());
    }
    ASSIGN_OR_RETURN(std::string body, Encode(message));
    rows.push_back({message.id(), message.run_id(), std::move(body)});
  }
  if (static_cast<int64_t>(messages.size()) >
      options_.max_messages_per_thread) {
    return MessageLimit(thread.id(), options_.max_messages_per_thread);
  }
  return pool_.InTransaction([&](Connection& c) -> absl::Status {
    RETURN_IF_ERROR(PutIdempotency(c, idempotency));
    RETURN_IF_ERROR(InsertObjects(c, kThreadKind, "", project,
                                  {{thread.id(), "", thread_body}}));
    return InsertObjects(c, kMessageKind, thread.id(), "", rows);
  });
}

absl::StatusOr<v1::Thread> PgStore::GetThread(absl::string_view id) {
  std::optional<Row> row;
  RETURN_IF_ERROR(pool_.InTransaction([&](Connection& c) -> absl::Status {
    ASSIGN_OR_RETURN(row, FindRow(c, kThreadKind, id, ""));
    return absl::OkStatus();
  }));
  if (!row.has_value()) return NotFound(kThreadKind, id);
  return Decode<v1::Thread>(id, row->body);
}

absl::StatusOr<v1::Thread> PgStore::UpdateThread(
    absl::string_view id, const Mutation<v1::Thread>& mutate) {
  return UpdateObject<v1::Thread>(kThreadKind, id, "", mutate);
}

absl::Status PgStore::DeleteThread(absl::string_view id) {
  return pool_.InTransaction([&](Connection& c) -> absl::Status {
    RETURN_IF_ERROR(LockThread(c, id));
    RETURN_IF_ERROR(CheckNoActiveRun(c, id));
    // Lock the runs before deleting their logs: a CommitRunChanges holding
    // one (it locks the runs it writes) finishes first and its events are
    // then seen and deleted here, rather than appended to a deleted run.
    ASSIGN_OR_RETURN(Result runs,
                     c.Exec("SELECT id FROM objects WHERE parent_id = $1 AND "
                            "kind = 'run' ORDER BY id FOR UPDATE",
                            {Text(id)}));
    std::vector<std::string> run_ids;
    for (int i = 0; i < runs.rows(); ++i) run_ids.push_back(runs.Text(i, 0));
    if (!run_ids.empty()) {
      const Param ids = TextArray(run_ids);
      RETURN_IF_ERROR(
          c.Exec("DELETE FROM run_events WHERE run_id = ANY($1::text[])", {ids})
              .status());
      RETURN_IF_ERROR(
          c.Exec("DELETE FROM run_leases WHERE run_id = ANY($1::text[])", {ids})
              .status());
      // Tombstones of the runs' deleted steps are unreachable now.
      RETURN_IF_ERROR(
          c.Exec("DELETE FROM tombstones WHERE parent_id = ANY($1::text[])",
                 {ids})
              .status());
    }
    // Children without tombstones: they can never be listed again (listing
    // needs the thread). The foreign key's cascade takes the runs' steps.
    RETURN_IF_ERROR(
        c.Exec("DELETE FROM objects WHERE parent_id = $1", {Text(id)})
            .status());
    RETURN_IF_ERROR(
        c.Exec("DELETE FROM tombstones WHERE parent_id = $1", {Text(id)})
            .status());
    RETURN_IF_ERROR(
        c.Exec("DELETE FROM message_counts WHERE thread_id = $1", {Text(id)})
            .status());
    return DeleteRow(c, id);
  });
}

// --- Messages ---

absl::Status PgStore::CreateMessage(const v1::Message& message,
                                    const IdempotencyRecord* idempotency) {
  ASSIGN_OR_RETURN(std::string body, Encode(message));
  return pool_.InTransaction([&](Connection& c) -> absl::Status {
    RETURN_IF_ERROR(PutIdempotency(c, idempotency));
    RETURN_IF_ERROR(LockThread(c, message.thread_id()));
    RETURN_IF_ERROR(CheckNoActiveRun(c, message.thread_id()));
    RETURN_IF_ERROR(CheckMessageLimit(c, message.thread_id(), 1,
                                      options_.max_messages_per_thread));
    return InsertObjects(c, kMessageKind, message.thread_id(), "",
                         {{message.id(), message.run_id(), body}});
  });
}

absl::StatusOr<v1::Message> PgStore::GetMessage(absl::string_view thread_id,
                                                absl::string_view message_id) {
  std::optional<Row> row;
  RETURN_IF_ERROR(pool_.InTransaction([&](Connection& c) -> absl::Status {
    ASSIGN_OR_RETURN(row, FindRow(c, kMessageKind, message_id, thread_id));
    if (!row.has_value()) {
      return ChildNotFound(c, thread_id, kMessageKind, message_id);
    }
    return absl::OkStatus();
  }));
  return Decode<v1::Message>(message_id, row->body);
}

absl::StatusOr<Page<v1::Message>> PgStore::ListMessages(
    absl::string_view thread_id, absl::string_view run_id,
    const ListQuery& query) {
  Page<Row> rows;
  RETURN_IF_ERROR(pool_.InTransaction([&](Connection& c) -> absl::Status {
    ASSIGN_OR_RETURN(bool thread_exists, Exists(c, kThreadKind, thread_id));
    if (!thread_exists) return NotFound(kThreadKind, thread_id);
    ASSIGN_OR_RETURN(rows,
                     ListRows(c, {kMessageKind, thread_id, run_id, ""}, query));
    return absl::OkStatus();
  }));
  return DecodePage<v1::Message>(rows);
}

absl::StatusOr<v1::Message> PgStore::UpdateMessage(
    absl::string_view thread_id, absl::string_view message_id,
    const Mutation<v1::Message>& mutate) {
  return UpdateObject<v1::Message>(kMessageKind, message_id, thread_id, mutate);
}

absl::Status PgStore::DeleteMessage(absl::string_view thread_id,
                                    absl::string_view message_id) {
  return pool_.InTransaction([&](Connection& c) -> absl::Status {
    ASSIGN_OR_RETURN(
        std::optional<Row> row,
        FindRow(c, kMessageKind, message_id, thread_id, /*lock=*/true));
    if (!row.has_value()) {
      return ChildNotFound(c, thread_id, kMessageKind, message_id);
    }
    return DeleteRow(c, message_id);
  });
}

// --- Runs, run steps and run event logs ---

absl::Status PgStore::CreateRun(const RunCreation& creation) {
  RETURN_IF_ERROR(
      ValidateRunCreation(creation, options_.max_messages_per_thread));
  const v1::Run& run = creation.run;
  const std::string& thread_id = run.thread_id();
  std::string thread_body;
  if (creation.new_thread != nullptr) {
    ASSIGN_OR_RETURN(thread_body, Encode(*creation.new_thread));
  }
  std::vector<NewObject> messages;
  for (const v1::Message& message : creation.messages) {
    ASSIGN_OR_RETURN(std::string body, Encode(message));
    messages.push_back({message.id(), message.run_id(), std::move(body)});
  }
  ASSIGN_OR_RETURN(std::string run_body, Encode(run));
  ASSIGN_OR_RETURN(std::vector<std::string> event_bodies,
                   EncodeAll(creation.events));
  std::vector<NewEvent> events;
  for (size_t i = 0; i < creation.events.size(); ++i) {
    events.push_back(
        {run.id(), creation.events[i].sequence(), &event_bodies[i]});
  }

  return pool_.InTransaction([&](Connection& c) -> absl::Status {
    RETURN_IF_ERROR(PutIdempotency(c, creation.idempotency));
    if (creation.new_thread != nullptr) {
      RETURN_IF_ERROR(InsertObjects(c, kThreadKind, "", creation.project,
                                    {{thread_id, "", thread_body}}));
    } else {
      // The thread's lock makes the active-run check and the insert one
      // step for every replica: of two CreateRuns racing on a thread, the
      // second sees the first's run.
      RETURN_IF_ERROR(LockThread(c, thread_id));
      if (creation.reject_if_thread_active) {
        RETURN_IF_ERROR(CheckNoActiveRun(c, thread_id));
      }
      RETURN_IF_ERROR(CheckMessageLimit(c, thread_id,
                                        static_cast<int64_t>(messages.size()),
                                        options_.max_messages_per_thread));
    }
    RETURN_IF_ERROR(CheckProjectRunLimit(c, creation.project,
                                         creation.max_active_runs_in_project));
    // Messages before the run, so they list before anything the run adds.
    RETURN_IF_ERROR(InsertObjects(c, kMessageKind, thread_id, "", messages));
    RETURN_IF_ERROR(InsertObjects(
        c, kRunKind, thread_id, "",
        {{run.id(), "", run_body, IsActiveRunStatus(run.status())}}));
    RETURN_IF_ERROR(
        c.Exec("INSERT INTO run_leases (run_id, thread_id, owner, token, "
               "expires_at) VALUES ($1, $2, NULL, 0, "
               "now() + $3::bigint * interval '1 millisecond')",
               {Text(run.id()), Text(thread_id),
                Param::Int(options_.unclaimed_run_grace_ms)})
            .status());
    RETURN_IF_ERROR(InsertEvents(c, events));
    if (!events.empty()) RETURN_IF_ERROR(NotifyRunEvents(c, {run.id()}));
    return absl::OkStatus();
  });
}

absl::StatusOr<v1::Run> PgStore::GetRun(absl::string_view thread_id,
                                        absl::string_view run_id) {
  std::optional<Row> row;
  RETURN_IF_ERROR(pool_.InTransaction([&](Connection& c) -> absl::Status {
    ASSIGN_OR_RETURN(row, FindRow(c, kRunKind, run_id, thread_id));
    if (!row.has_value()) return ChildNotFound(c, thread_id, kRunKind, run_id);
    return absl::OkStatus();
  }));
  return Decode<v1::Run>(run_id, row->body);
}

absl::StatusOr<Page<v1::Run>> PgStore::ListRuns(absl::string_view thread_id,
                                                const ListQuery& query) {
  Page<Row> rows;
  RETURN_IF_ERROR(pool_.InTransaction([&](Connection& c) -> absl::Status {
    ASSIGN_OR_RETURN(bool thread_exists, Exists(c, kThreadKind, thread_id));
    if (!thread_exists) return NotFound(kThreadKind, thread_id);
    ASSIGN_OR_RETURN(rows, ListRows(c, {kRunKind, thread_id, "", ""}, query));
    return absl::OkStatus();
  }));
  return DecodePage<v1::Run>(rows);
}

absl::StatusOr<std::vector<v1::Run>> PgStore::ListActiveRuns() {
  std::vector<Row> rows;
  RETURN_IF_ERROR(pool_.InTransaction([&](Connection& c) -> absl::Status {
    rows.clear();
    ASSIGN_OR_RETURN(
        Result result,
        c.Exec("SELECT id, body FROM objects WHERE active ORDER BY seq"));
    for (int i = 0; i < result.rows(); ++i) {
      rows.push_back(Row{0, result.Text(i, 0), result.Bytes(i, 1)});
    }
    return absl::OkStatus();
  }));
  std::vector<v1::Run> runs;
  runs.reserve(rows.size());
  for (const Row& row : rows) {
    ASSIGN_OR_RETURN(v1::Run run, Decode<v1::Run>(row.id, row.body));
    runs.push_back(std::move(run));
  }
  return runs;
}

absl::Status PgStore::CommitRunChanges(
    const std::vector<const RunChanges*>& batch) {
  if (batch.empty()) return absl::OkStatus();
  // Check and encode everything before touching the database.
  struct Encoded {
    std::string run;
    std::vector<std::string> steps;
    std::vector<std::string> messages;
    std::vector<std::string> events;
  };
  std::vector<Encoded> encoded(batch.size());
  std::vector<std::string> run_ids;     // distinct, in order of appearance
  std::vector<std::string> thread_ids;  // threads that get messages
  bool fenced = false;
  {
    absl::flat_hash_set<absl::string_view> seen_runs, seen_threads;
    for (size_t i = 0; i < batch.size(); ++i) {
      const RunChanges& changes = *batch[i];
      RETURN_IF_ERROR(ValidateRunChanges(changes));
      if (changes.run.has_value()) {
        ASSIGN_OR_RETURN(encoded[i].run, Encode(*changes.run));
      }
      ASSIGN_OR_RETURN(encoded[i].steps, EncodeAll(changes.steps));
      ASSIGN_OR_RETURN(encoded[i].messages, EncodeAll(changes.messages));
      ASSIGN_OR_RETURN(encoded[i].events, EncodeAll(changes.events));
      if (seen_runs.insert(changes.run_id).second) {
        run_ids.push_back(changes.run_id);
      }
      if (!changes.messages.empty() &&
          seen_threads.insert(changes.thread_id).second) {
        thread_ids.push_back(changes.thread_id);
      }
      fenced = fenced || changes.lease_token != 0;
    }
  }
  // Locks are taken in id order so two batches never wait on each other in
  // a cycle.
  std::vector<std::string> sorted_threads = thread_ids;
  std::sort(sorted_threads.begin(), sorted_threads.end());

  return pool_.InTransaction([&](Connection& c) -> absl::Status {
    // 1. The threads that get messages, as CreateMessage and CreateRun
    // lock them.
    if (!sorted_threads.empty()) {
      RETURN_IF_ERROR(c.Exec("SELECT 1 FROM objects WHERE id = "
                             "ANY($1::text[]) AND kind = 'thread' "
                             "ORDER BY id FOR UPDATE",
                             {TextArray(sorted_threads)})
                          .status());
    }
    // 2. The runs: each must be in its change's thread; its row lock keeps
    // the log's end stable until commit (and DeleteThread waits for it).
    struct RunState {
      std::string thread_id;
      int64_t last_sequence = 0;
      bool has_lease = false;
      std::string lease_owner;
      int64_t lease_token = 0;
    };
    absl::flat_hash_map<std::string, RunState> runs;
    {
      ASSIGN_OR_RETURN(
          Result result,
          c.Exec("SELECT r.id, r.parent_id, COALESCE((SELECT max(e.seq) "
                 "FROM run_events e WHERE e.run_id = r.id), 0) "
                 "FROM objects r WHERE r.id = ANY($1::text[]) AND "
                 "r.kind = 'run' ORDER BY r.id FOR NO KEY UPDATE OF r",
                 {TextArray(run_ids)}));
      for (int i = 0; i < result.rows(); ++i) {
        RunState& state = runs[result.Text(i, 0)];
        state.thread_id = result.Text(i, 1);
        state.last_sequence = result.Int(i, 2);
      }
    }
    // 3. Fencing: the lease rows stay as read (FOR SHARE) until commit, so
    // a takeover cannot slip in between the check and the writes.
    if (fenced) {
      ASSIGN_OR_RETURN(
          Result result,
          c.Exec("SELECT run_id, owner, token FROM run_leases WHERE "
                 "run_id = ANY($1::text[]) ORDER BY run_id FOR SHARE",
                 {TextArray(run_ids)}));
      for (int i = 0; i < result.rows(); ++i) {
        auto it = runs.find(result.Text(i, 0));
        if (it == runs.end()) continue;
        it->second.has_lease = true;
        it->second.lease_owner =
            result.IsNull(i, 1) ? std::string() : result.Text(i, 1);
        it->second.lease_token = result.Int(i, 2);
      }
    }

    // 4. Every change in order: checks first, then collect rows per table.
    struct RunUpdate {
      std::string id;
      const std::string* body;
      bool active;
    };
    std::vector<RunUpdate> run_updates;
    absl::flat_hash_map<std::string, size_t> run_update_index;
    std::vector<Upsert> steps, messages;
    absl::flat_hash_map<std::string, size_t> step_index, message_index;
    std::vector<NewEvent> events;
    std::vector<std::string> notify;
    absl::flat_hash_set<std::string> notified;
    // Same id twice in the batch: one row, the last version, at the first
    // one's position; the same id under another parent is taken.
    auto add_upsert = [](std::vector<Upsert>& rows,
                         absl::flat_hash_map<std::string, size_t>& index,
                         absl::string_view kind, Upsert row) -> absl::Status {
      auto [it, inserted] = index.try_emplace(row.id, rows.size());
      if (inserted) {
        rows.push_back(std::move(row));
        return absl::OkStatus();
      }
      Upsert& existing = rows[it->second];
      if (existing.parent_id != row.parent_id) {
        return AlreadyExists(kind, row.id);
      }
      existing = std::move(row);
      return absl::OkStatus();
    };
    for (size_t i = 0; i < batch.size(); ++i) {
      const RunChanges& changes = *batch[i];
      const Encoded& bodies = encoded[i];
      auto run = runs.find(changes.run_id);
      if (run == runs.end() || run->second.thread_id != changes.thread_id) {
        return NotFound(kRunKind, changes.run_id);
      }
      RunState& state = run->second;
      if (changes.lease_token != 0 &&
          (!state.has_lease || state.lease_owner != changes.lease_owner ||
           state.lease_token != changes.lease_token)) {
        return pg::RunLeaseLost(changes.run_id, changes.lease_owner);
      }
      if (changes.run.has_value()) {
        RunUpdate update{changes.run_id, &bodies.run,
                         IsActiveRunStatus(changes.run->status())};
        auto [it, inserted] =
            run_update_index.try_emplace(changes.run_id, run_updates.size());
        if (inserted) {
          run_updates.push_back(update);
        } else {
          run_updates[it->second] = update;
        }
      }
      for (size_t j = 0; j < changes.steps.size(); ++j) {
        RETURN_IF_ERROR(add_upsert(
            steps, step_index, kRunStepKind,
            {changes.steps[j].id(), changes.run_id, "", bodies.steps[j]}));
      }
      for (size_t j = 0; j < changes.messages.size(); ++j) {
        const v1::Message& message = changes.messages[j];
        RETURN_IF_ERROR(add_upsert(messages, message_index, kMessageKind,
                                   {message.id(), changes.thread_id,
                                    message.run_id(), bodies.messages[j]}));
      }
      for (size_t j = 0; j < changes.events.size(); ++j) {
        const int64_t expected = state.last_sequence + 1;
        if (changes.events[j].sequence() != expected) {
          return RunEventSequence(changes.run_id, expected,
                                  changes.events[j].sequence());
        }
        events.push_back({changes.run_id, expected, &bodies.events[j]});
        state.last_sequence = expected;
      }
      if (!changes.events.empty() && notified.insert(changes.run_id).second) {
        notify.push_back(changes.run_id);
      }
    }

    // 5. The writes: one statement per table.
    if (!run_updates.empty()) {
      std::vector<Param> params;
      for (const RunUpdate& update : run_updates) {
        params.push_back(Text(update.id));
        params.push_back(Param::Bytes(*update.body));
        params.push_back(Bool(update.active));
      }
      RETURN_IF_ERROR(
          ExecValues(c,
                     "UPDATE objects AS o SET body = v.body, active = "
                     "v.active FROM (VALUES ",
                     {"text", "bytea", "boolean"},
                     ") AS v (id, body, active) WHERE o.id = v.id",
                     std::move(params))
              .status());
    }
    RETURN_IF_ERROR(UpsertObjects(c, kRunStepKind, steps));
    RETURN_IF_ERROR(UpsertObjects(c, kMessageKind, messages));
    RETURN_IF_ERROR(InsertEvents(c, events));
    for (const RunChanges* changes : batch) {
      RETURN_IF_ERROR(PutIdempotency(c, changes->idempotency));
    }
    return NotifyRunEvents(c, notify);
  });
}

absl::StatusOr<v1::RunStep> PgStore::GetRunStep(absl::string_view thread_id,
                                                absl::string_view run_id,
                                                absl::string_view step_id) {
  std::optional<Row> row;
  RETURN_IF_ERROR(pool_.InTransaction([&](Connection& c) -> absl::Status {
    // The step's parent is its run; the run must be the thread's.
    ASSIGN_OR_RETURN(bool run_exists,
                     ExistsUnder(c, kRunKind, run_id, thread_id));
    if (!run_exists) return ChildNotFound(c, thread_id, kRunKind, run_id);
    ASSIGN_OR_RETURN(row, FindRow(c, kRunStepKind, step_id, run_id));
    return absl::OkStatus();
  }));
  if (!row.has_value()) return NotFound(kRunStepKind, step_id);
  return Decode<v1::RunStep>(step_id, row->body);
}

absl::StatusOr<Page<v1::RunStep>> PgStore::ListRunSteps(
    absl::string_view thread_id, absl::string_view run_id,
    const ListQuery& query) {
  Page<Row> rows;
  RETURN_IF_ERROR(pool_.InTransaction([&](Connection& c) -> absl::Status {
    ASSIGN_OR_RETURN(bool run_exists,
                     ExistsUnder(c, kRunKind, run_id, thread_id));
    if (!run_exists) return ChildNotFound(c, thread_id, kRunKind, run_id);
    ASSIGN_OR_RETURN(rows, ListRows(c, {kRunStepKind, run_id, "", ""}, query));
    return absl::OkStatus();
  }));
  return DecodePage<v1::RunStep>(rows);
}

absl::StatusOr<std::vector<v1::RunEvent>> PgStore::ListRunEvents(
    absl::string_view run_id, int64_t after_sequence, int limit) {
  std::vector<v1::RunEvent> events;
  if (limit <= 0) return events;
  std::vector<std::string> bodies;
  RETURN_IF_ERROR(pool_.InTransaction([&](Connection& c) -> absl::Status {
    bodies.clear();
    ASSIGN_OR_RETURN(
        Result result,
        c.Exec("SELECT body FROM run_events WHERE run_id = $1 AND seq > $2 "
               "ORDER BY seq LIMIT $3",
               {Text(run_id), Param::Int(after_sequence), Param::Int(limit)}));
    for (int i = 0; i < result.rows(); ++i) {
      bodies.push_back(result.Bytes(i, 0));
    }
    return absl::OkStatus();
  }));
  events.reserve(bodies.size());
  for (const std::string& body : bodies) {
    ASSIGN_OR_RETURN(v1::RunEvent event, Decode<v1::RunEvent>(run_id, body));
    events.push_back(std::move(event));
  }
  return events;
}

// --- Projects ---

absl::StatusOr<std::string> PgStore::GetProject(OwnedKind kind,
                                                absl::string_view id) {
  const absl::string_view kind_name =
      kind == OwnedKind::kAssistant ? kAssistantKind : kThreadKind;
  std::optional<std::string> project;
  RETURN_IF_ERROR(pool_.InTransaction([&](Connection& c) -> absl::Status {
    ASSIGN_OR_RETURN(Result result,
                     c.Exec("SELECT project FROM objects WHERE id = $1 AND "
                            "kind = $2",
                            {Text(id), Text(kind_name)}));
    project.reset();
    if (result.rows() > 0) project = result.Text(0, 0);
    return absl::OkStatus();
  }));
  if (!project.has_value()) return NotFound(kind_name, id);
  return *project;
}

// --- Idempotency ---

absl::StatusOr<std::optional<IdempotencyRecord>> PgStore::GetIdempotencyRecord(
    absl::string_view key) {
  std::optional<IdempotencyRecord> record;
  RETURN_IF_ERROR(pool_.InTransaction([&](Connection& c) -> absl::Status {
    ASSIGN_OR_RETURN(Result result,
                     c.Exec("SELECT fingerprint, response, created_at_ms "
                            "FROM idempotency WHERE key = $1",
                            {Text(key)}));
    record.reset();
    if (result.rows() == 0) return absl::OkStatus();
    record.emplace();
    record->key = std::string(key);
    record->request_fingerprint = result.Bytes(0, 0);
    record->response = result.Bytes(0, 1);
    record->created_at_ms = result.Int(0, 2);
    return absl::OkStatus();
  }));
  return record;
}

absl::StatusOr<int64_t> PgStore::PruneIdempotencyRecords(int64_t cutoff_ms) {
  int64_t pruned = 0;
  RETURN_IF_ERROR(pool_.InTransaction([&](Connection& c) -> absl::Status {
    ASSIGN_OR_RETURN(Result result,
                     c.Exec("DELETE FROM idempotency WHERE created_at_ms < $1",
                            {Param::Int(cutoff_ms)}));
    pruned = result.affected();
    return absl::OkStatus();
  }));
  return pruned;
}

}  // namespace assistants
