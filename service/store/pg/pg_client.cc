// The libpq client: statements run with PQexecParams/PQexecPrepared (one
// round trip each, parameters never spliced into SQL text), a pool of
// lazily opened connections, transactions retried on conflicts, and
// per-component migrations under advisory locks.
#include "service/store/pg/pg_client.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <random>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "service/common/errors.h"
#include "service/common/status_macros.h"
#include "service/store/pg/pg_errors.h"

namespace assistants::pg {
namespace {

// Bounds the per-connection prepared statement cache: callers normally pass
// string literals, but a caller building SQL text (multi-row VALUES lists)
// must not grow it without bound; texts beyond the cap run unprepared.
constexpr size_t kMaxPreparedStatements = 256;

// How many times InTransaction runs a body whose attempt failed in a way a
// rerun may fix (conflict, connection lost before COMMIT).
constexpr int kTransactionAttempts = 5;

// First key of every advisory lock the migrations take (ASCII "ASST"), so
// they cannot collide with locks of other applications on the database.
constexpr int64_t kMigrationLockKey = 0x41535354;
// Second key of the lock that serializes creating schema_versions itself.
constexpr int64_t kBootstrapLockKey = 0;

// The error of a failed statement or connection. `result` may be null (no
// result at all: the connection is gone or out of memory).
absl::Status ErrorFrom(PGconn* conn, const PGresult* result,
                       absl::string_view what) {
  const char* sqlstate_field =
      result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE)
                        : nullptr;
  const std::string sqlstate = sqlstate_field ? sqlstate_field : "";
  const char* primary =
      result != nullptr ? PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY)
                        : nullptr;
  std::string message(primary != nullptr ? primary : PQerrorMessage(conn));
  absl::StripAsciiWhitespace(&message);
  const std::string detail = absl::StrCat(what, ": ", message);

  const bool connection_lost =
      PQstatus(conn) == CONNECTION_BAD || absl::StartsWith(sqlstate, "08") ||
      sqlstate == "57P01" || sqlstate == "57P02" || sqlstate == "57P03" ||
      (result == nullptr && sqlstate.empty());
  if (connection_lost) return StoreUnavailable(detail);
  if (sqlstate == "40001" || sqlstate == "40P01") {
    return MakeError(
        absl::StatusCode::kAborted, kStoreConflict,
        absl::StrCat("Conflicting concurrent transaction: ", detail),
        {{"sqlstate", sqlstate}});
  }
  if (sqlstate == "23505") {
    const char* constraint =
        PQresultErrorField(result, PG_DIAG_CONSTRAINT_NAME);
    return MakeError(absl::StatusCode::kAlreadyExists, kStoreUniqueViolation,
                     absl::StrCat("Unique constraint violated: ", detail),
                     {{"constraint", constraint ? constraint : ""}});
  }
  return MakeError(absl::StatusCode::kInternal, kStoreError,
                   absl::StrCat("Database error: ", detail),
                   {{"sqlstate", sqlstate}});
}

// libpq prints NOTICEs (e.g. "relation already exists, skipping") to stderr
// by default; they are not errors and would only clutter the gateway's
// JSON log.
void IgnoreNotice(void*, const char*) {}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool IsRetryable(const absl::Status& status, const Connection& connection) {
  if (status.code() == absl::StatusCode::kAborted &&
      ErrorReason(status) == kStoreConflict) {
    return true;
  }
  // Only a connection that actually broke: the body may return UNAVAILABLE
  // for reasons of its own.
  return status.code() == absl::StatusCode::kUnavailable &&
         !connection.healthy();
}

// Short, jittered, growing waits between transaction attempts so replicas
// that conflicted do not collide again in lockstep.
void Backoff(int attempt) {
  thread_local std::minstd_rand random(std::random_device{}());
  const int base_ms = 5 << std::min(attempt, 5);
  std::uniform_int_distribution<int> jitter(base_ms / 2, base_ms);
  std::this_thread::sleep_for(std::chrono::milliseconds(jitter(random)));
}

}  // namespace

// --- Param ---

Param Param::Text(std::string value) {
  Param param;
  param.value = std::move(value);
  return param;
}

Param Param::Int(int64_t value) {
  Param param;
  param.value = absl::StrCat(value);
  return param;
}

Param Param::Bytes(std::string value) {
  Param param;
  param.value = std::move(value);
  param.binary = true;
  return param;
}

Param Param::Null() {
  Param param;
  param.is_null = true;
  return param;
}

// --- Result ---

Result::Result(pg_result* result) : result_(result) {}

Result::Result(Result&& other) noexcept
    : result_(std::exchange(other.result_, nullptr)) {}

Result& Result::operator=(Result&& other) noexcept {
  if (this != &other) {
    if (result_ != nullptr) PQclear(result_);
    result_ = std::exchange(other.result_, nullptr);
  }
  return *this;
}

Result::~Result() {
  if (result_ != nullptr) PQclear(result_);
}

int Result::rows() const { return result_ ? PQntuples(result_) : 0; }

int64_t Result::affected() const {
  if (result_ == nullptr) return 0;
  int64_t count = 0;
  return absl::SimpleAtoi(PQcmdTuples(result_), &count) ? count : 0;
}

bool Result::IsNull(int row, int column) const {
  return PQgetisnull(result_, row, column) != 0;
}

std::string Result::Text(int row, int column) const {
  return std::string(PQgetvalue(result_, row, column),
                     static_cast<size_t>(PQgetlength(result_, row, column)));
}

int64_t Result::Int(int row, int column) const {
  int64_t value = 0;
  return absl::SimpleAtoi(PQgetvalue(result_, row, column), &value) ? value : 0;
}

bool Result::Bool(int row, int column) const {
  const char* value = PQgetvalue(result_, row, column);
  return value[0] == 't';
}

std::string Result::Bytes(int row, int column) const {
  const char* text = PQgetvalue(result_, row, column);
  const size_t length = static_cast<size_t>(PQgetlength(result_, row, column));
  // bytea_output = hex (the default since PostgreSQL 9.0): "\x" + 2 digits
  // per byte; decoded here without the copy PQunescapeBytea makes.
  if (length >= 2 && text[0] == '\\' && text[1] == 'x') {
    std::string bytes;
    bytes.resize((length - 2) / 2);
    for (size_t i = 0; i < bytes.size(); ++i) {
      const int high = HexValue(text[2 + 2 * i]);
      const int low = HexValue(text[3 + 2 * i]);
      if (high < 0 || low < 0) return std::string();
      bytes[i] = static_cast<char>((high << 4) | low);
    }
    return bytes;
  }
  size_t size = 0;
  unsigned char* decoded =
      PQunescapeBytea(reinterpret_cast<const unsigned char*>(text), &size);
  if (decoded == nullptr) return std::string();
  std::string bytes(reinterpret_cast<const char*>(decoded), size);
  PQfreemem(decoded);
  return bytes;
}

// --- Connection ---

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(
    const std::string& conninfo) {
  // The conninfo's own settings win over these defaults (expand_dbname: the
  // keywords it holds override earlier ones).
  const char* const keywords[] = {
      "connect_timeout", "fallback_application_name", "dbname", nullptr};
  const char* const values[] = {"10", "assistants-gateway", conninfo.c_str(),
                                nullptr};
  PGconn* conn = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
  if (conn == nullptr) return StoreUnavailable("out of memory connecting");
  if (PQstatus(conn) != CONNECTION_OK) {
    absl::Status status = ErrorFrom(conn, nullptr, "connecting to PostgreSQL");
    PQfinish(conn);
    return status;
  }
  PQsetNoticeProcessor(conn, &IgnoreNotice, nullptr);
  return std::unique_ptr<Connection>(new Connection(conn));
}

Connection::~Connection() { PQfinish(conn_); }

bool Connection::healthy() const { return PQstatus(conn_) == CONNECTION_OK; }

bool Connection::idle() const {
  return healthy() && PQtransactionStatus(conn_) == PQTRANS_IDLE;
}

absl::StatusOr<Result> Connection::Exec(absl::string_view sql,
                                        const std::vector<Param>& params) {
  PGresult* raw = nullptr;
  if (params.empty()) {
    // The simple protocol: the only one that runs several statements in one
    // text (migrations, scripts).
    raw = PQexec(conn_, std::string(sql).c_str());
  } else {
    std::vector<const char*> values(params.size());
    std::vector<int> lengths(params.size());
    std::vector<int> formats(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      values[i] = params[i].is_null ? nullptr : params[i].value.data();
      lengths[i] = static_cast<int>(params[i].value.size());
      formats[i] = params[i].binary ? 1 : 0;
    }
    const int count = static_cast<int>(params.size());
    std::string text(sql);
    auto prepared = prepared_.find(text);
    if (prepared == prepared_.end() &&
        prepared_.size() < kMaxPreparedStatements) {
      std::string name = absl::StrCat("s", prepared_.size());
      PGresult* prepare = PQprepare(conn_, name.c_str(), text.c_str(), count,
                                    /*paramTypes=*/nullptr);
      Result owned(prepare);  // frees it
      if (prepare == nullptr || PQresultStatus(prepare) != PGRES_COMMAND_OK) {
        return ErrorFrom(conn_, prepare, "preparing a statement");
      }
      prepared = prepared_.emplace(std::move(text), std::move(name)).first;
    }
    if (prepared != prepared_.end()) {
      raw = PQexecPrepared(conn_, prepared->second.c_str(), count,
                           values.data(), lengths.data(), formats.data(),
                           /*resultFormat=*/0);
    } else {
      raw = PQexecParams(conn_, text.c_str(), count, /*paramTypes=*/nullptr,
                         values.data(), lengths.data(), formats.data(),
                         /*resultFormat=*/0);
    }
  }
  Result result(raw);
  if (raw == nullptr) return ErrorFrom(conn_, nullptr, "running a statement");
  switch (PQresultStatus(raw)) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
    case PGRES_EMPTY_QUERY:
      return result;
    default:
      return ErrorFrom(conn_, raw, "running a statement");
  }
}

absl::StatusOr<std::vector<Notification>> Connection::WaitForNotifications(
    absl::Duration timeout) {
  auto drain = [this] {
    std::vector<Notification> notifications;
    while (PGnotify* notify = PQnotifies(conn_)) {
      notifications.push_back(
          Notification{notify->relname, notify->extra ? notify->extra : ""});
      PQfreemem(notify);
    }
    return notifications;
  };
  if (PQconsumeInput(conn_) == 0 || !healthy()) {
    return ErrorFrom(conn_, nullptr, "waiting for notifications");
  }
  std::vector<Notification> notifications = drain();
  if (!notifications.empty() || timeout <= absl::ZeroDuration()) {
    return notifications;
  }
  pollfd fd{};
  fd.fd = PQsocket(conn_);
  fd.events = POLLIN;
  const int64_t timeout_ms = absl::ToInt64Milliseconds(timeout);
  const int ready =
      poll(&fd, 1,
           static_cast<int>(std::min<int64_t>(timeout_ms, 24 * 3600 * 1000)));
  if (ready < 0 && errno != EINTR) {
    return StoreUnavailable("waiting for notifications: poll failed");
  }
  if (PQconsumeInput(conn_) == 0 || !healthy()) {
    return ErrorFrom(conn_, nullptr, "waiting for notifications");
  }
  return drain();
}

// --- Pool ---

struct Pool::State {
  explicit State(int size) : size(std::max(size, 1)) {}
  const int size;
  absl::Mutex mu;
  std::vector<std::unique_ptr<Connection>> idle ABSL_GUARDED_BY(mu);
  // Connections in `idle` plus those on loan or being opened.
  int open ABSL_GUARDED_BY(mu) = 0;
};

Pool::Pool(std::string conninfo, int size)
    : conninfo_(std::move(conninfo)), state_(std::make_unique<State>(size)) {}

Pool::~Pool() = default;

Pool::Lease::Lease(Pool* pool, std::unique_ptr<Connection> connection)
    : pool_(pool), connection_(std::move(connection)) {}

Pool::Lease::Lease(Lease&& other) noexcept
    : pool_(other.pool_), connection_(std::move(other.connection_)) {}

Pool::Lease::~Lease() {
  if (connection_ != nullptr) pool_->Return(std::move(connection_));
}

absl::StatusOr<Pool::Lease> Pool::Acquire() {
  State& state = *state_;
  {
    absl::MutexLock lock(&state.mu);
    auto available = [&state]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state.mu) {
      return !state.idle.empty() || state.open < state.size;
    };
    state.mu.Await(absl::Condition(&available));
    if (!state.idle.empty()) {
      std::unique_ptr<Connection> connection = std::move(state.idle.back());
      state.idle.pop_back();
      return Lease(this, std::move(connection));
    }
    ++state.open;  // reserve the slot while connecting unlocked
  }
  absl::StatusOr<std::unique_ptr<Connection>> connection =
      Connection::Open(conninfo_);
  if (!connection.ok()) {
    absl::MutexLock lock(&state.mu);
    --state.open;
    return connection.status();
  }
  return Lease(this, *std::move(connection));
}

void Pool::Return(std::unique_ptr<Connection> connection) {
  // A broken connection, or one left inside a transaction, is closed; the
  // next Acquire opens a fresh one in its slot.
  const bool reusable = connection->idle();
  if (!reusable) connection.reset();
  absl::MutexLock lock(&state_->mu);
  if (reusable) {
    state_->idle.push_back(std::move(connection));
  } else {
    --state_->open;
  }
}

void Pool::DropIdle() {
  std::vector<std::unique_ptr<Connection>> idle;
  {
    absl::MutexLock lock(&state_->mu);
    idle.swap(state_->idle);
    state_->open -= static_cast<int>(idle.size());
  }
  // Closed outside the lock.
}

absl::Status Pool::InTransaction(
    const std::function<absl::Status(Connection&)>& body) {
  absl::Status status;
  for (int attempt = 0; attempt < kTransactionAttempts; ++attempt) {
    if (attempt > 0) Backoff(attempt);
    absl::StatusOr<Lease> lease = Acquire();
    if (!lease.ok()) {
      status = lease.status();
      // The database may be restarting: a later attempt may connect.
      if (status.code() == absl::StatusCode::kUnavailable) continue;
      return status;
    }
    Connection& connection = **lease;
    status = connection.Exec("BEGIN").status();
    if (status.ok()) status = body(connection);
    if (!status.ok()) {
      if (connection.healthy()) connection.Exec("ROLLBACK").IgnoreError();
      if (IsRetryable(status, connection)) {
        if (!connection.healthy()) DropIdle();
        continue;
      }
      return status;
    }
    status = connection.Exec("COMMIT").status();
    if (status.ok()) return status;
    // A conflict detected at COMMIT (SERIALIZABLE) rolled everything back:
    // safe to rerun. A connection lost during COMMIT leaves the outcome
    // unknown, so that is returned as it is.
    if (status.code() == absl::StatusCode::kAborted &&
        ErrorReason(status) == kStoreConflict) {
      continue;
    }
    return status;
  }
  return status;
}

std::string DescribeConninfo(const std::string& conninfo) {
  PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), nullptr);
  if (options == nullptr) return "";
  std::string host, port, dbname;
  for (PQconninfoOption* option = options; option->keyword != nullptr;
       ++option) {
    if (option->val == nullptr) continue;
    const absl::string_view keyword = option->keyword;
    if (keyword == "host" || (keyword == "hostaddr" && host.empty())) {
      host = option->val;
    } else if (keyword == "port") {
      port = option->val;
    } else if (keyword == "dbname") {
      dbname = option->val;
    }
  }
  PQconninfoFree(options);
  return absl::StrCat(host.empty() ? "localhost" : host,
                      port.empty() ? "" : ":", port, "/", dbname);
}

// --- Migrations ---

namespace {

absl::StatusOr<int> ReadVersion(Connection& connection,
                                absl::string_view component) {
  ASSIGN_OR_RETURN(
      Result result,
      connection.Exec(
          "SELECT version FROM schema_versions WHERE component = $1",
          {Param::Text(std::string(component))}));
  return result.rows() == 0 ? 0 : static_cast<int>(result.Int(0, 0));
}

absl::Status SchemaTooNew(absl::string_view component, int version,
                          int supported) {
  return MakeError(
      absl::StatusCode::kFailedPrecondition, kStoreSchemaTooNew,
      absl::StrCat("The database has version ", version, " of the '", component,
                   "' schema but this build supports at most ", supported,
                   "; it was written by a newer gateway. Upgrade the gateway "
                   "or use another database."),
      {{"component", std::string(component)},
       {"schema_version", absl::StrCat(version)},
       {"supported_schema_version", absl::StrCat(supported)}});
}

}  // namespace

absl::Status Migrate(Pool& pool, absl::string_view component,
                     const std::vector<Migration>& migrations) {
  std::vector<const Migration*> ordered;
  for (const Migration& migration : migrations) ordered.push_back(&migration);
  std::sort(ordered.begin(), ordered.end(),
            [](const Migration* a, const Migration* b) {
              return a->version < b->version;
            });
  const int supported = ordered.empty() ? 0 : ordered.back()->version;
  const Param lock_key = Param::Int(kMigrationLockKey);
  const Param component_param = Param::Text(std::string(component));

  // CREATE TABLE IF NOT EXISTS is not safe against a concurrent twin (both
  // may pass the check and one fails on the catalog's unique index), hence
  // the lock.
  RETURN_IF_ERROR(pool.InTransaction([&](Connection& connection) {
    RETURN_IF_ERROR(connection
                        .Exec("SELECT pg_advisory_xact_lock($1::int, $2::int)",
                              {lock_key, Param::Int(kBootstrapLockKey)})
                        .status());
    return connection
        .Exec(
            "CREATE TABLE IF NOT EXISTS schema_versions ("
            "component text PRIMARY KEY, version int NOT NULL)")
        .status();
  }));

  int current = 0;
  {
    ASSIGN_OR_RETURN(Pool::Lease lease, pool.Acquire());
    ASSIGN_OR_RETURN(current, ReadVersion(*lease, component));
  }
  if (current > supported) return SchemaTooNew(component, current, supported);

  for (const Migration* migration : ordered) {
    if (migration->version <= current) continue;
    RETURN_IF_ERROR(pool.InTransaction([&](Connection& connection) {
      // Replicas starting at once queue here; each sees the version the
      // previous holder wrote and skips what is applied.
      RETURN_IF_ERROR(
          connection
              .Exec("SELECT pg_advisory_xact_lock($1::int, hashtext($2))",
                    {lock_key, component_param})
              .status());
      ASSIGN_OR_RETURN(int version, ReadVersion(connection, component));
      if (version > supported) {
        return SchemaTooNew(component, version, supported);
      }
      if (version >= migration->version) return absl::OkStatus();
      absl::Status applied = connection.Exec(migration->sql).status();
      if (!applied.ok()) {
        // Says which migration failed, keeping the typed details.
        absl::Status named(
            applied.code(),
            absl::StrCat("Applying migration ", migration->version, " of '",
                         component, "': ", applied.message()));
        applied.ForEachPayload(
            [&named](absl::string_view url, const absl::Cord& payload) {
              named.SetPayload(url, payload);
            });
        return named;
      }
      return connection
          .Exec(
              "INSERT INTO schema_versions (component, version) "
              "VALUES ($1, $2) ON CONFLICT (component) DO UPDATE "
              "SET version = EXCLUDED.version",
              {component_param, Param::Int(migration->version)})
          .status();
    }));
  }
  return absl::OkStatus();
}

}  // namespace assistants::pg
