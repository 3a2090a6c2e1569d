#include "tool_workers/pg_registration_store.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "service/common/errors.h"
#include "service/common/log.h"
#include "service/common/status_macros.h"
#include "service/store/pg/pg_errors.h"

namespace assistants::tool_workers {
namespace {

// The columns every read returns, in this order; remaining_ms is the lease
// time left by the database's clock.
constexpr char kColumns[] =
    "worker_id, registration, lease_id, lease_ttl_ms, "
    "(extract(epoch FROM expires_at - now()) * 1000)::bigint";

absl::StatusOr<SharedWorker> RowAt(const pg::Result& result, int row) {
  SharedWorker out;
  if (!out.worker.ParseFromString(result.Bytes(row, 1)) ||
      out.worker.worker_id() != result.Text(row, 0)) {
    return MakeError(absl::StatusCode::kInternal, pg::kStoreError,
                     absl::StrCat("tool_workers row ", result.Text(row, 0),
                                  " holds no valid registration"),
                     {{"worker_id", result.Text(row, 0)}});
  }
  out.lease_id = result.Text(row, 2);
  out.lease_ttl_ms = result.Int(row, 3);
  out.remaining_ms = result.Int(row, 4);
  return out;
}

absl::StatusOr<std::vector<SharedWorker>> Rows(const pg::Result& result) {
  std::vector<SharedWorker> rows;
  rows.reserve(result.rows());
  for (int i = 0; i < result.rows(); ++i) {
    ASSIGN_OR_RETURN(SharedWorker row, RowAt(result, i));
    rows.push_back(std::move(row));
  }
  return rows;
}

absl::Status Notify(pg::Connection& connection, absl::string_view worker_id) {
  return connection
      .Exec("SELECT pg_notify($1, $2)",
            {pg::Param::Text(kWorkersChannel),
             pg::Param::Text(std::string(worker_id))})
      .status();
}

}  // namespace

const std::vector<pg::Migration>& PgWorkerRegistrationStore::Migrations() {
  static const auto* migrations = new std::vector<pg::Migration>{
      {1,
       "CREATE TABLE tool_workers ("
       "  worker_id text PRIMARY KEY,"
       "  registration bytea NOT NULL,"
       "  lease_id text NOT NULL,"
       "  lease_ttl_ms bigint NOT NULL,"
       "  expires_at timestamptz NOT NULL,"
       "  updated_at timestamptz NOT NULL DEFAULT now());"
       "CREATE INDEX tool_workers_by_expiry ON tool_workers (expires_at);"},
  };
  return *migrations;
}

absl::StatusOr<std::unique_ptr<PgWorkerRegistrationStore>>
PgWorkerRegistrationStore::Open(pg::Pool* pool) {
  RETURN_IF_ERROR(pg::Migrate(*pool, "tool_workers", Migrations()));
  return std::unique_ptr<PgWorkerRegistrationStore>(
      new PgWorkerRegistrationStore(pool));
}

absl::Status PgWorkerRegistrationStore::Put(const SharedWorker& registration,
                                            const Check& check) {
  const std::string& worker_id = registration.worker.worker_id();
  return pool_->InTransaction([&](pg::Connection& connection) -> absl::Status {
    // Registrations take turns (heartbeats and reads do not wait), so two
    // replicas cannot both accept conflicting definitions. The keys: the
    // gateway's "ASST" and "WRKR".
    RETURN_IF_ERROR(
        connection.Exec("SELECT pg_advisory_xact_lock(1095980884, 1465011026)")
            .status());
    RETURN_IF_ERROR(
        connection.Exec("DELETE FROM tool_workers WHERE expires_at <= now()")
            .status());
    ASSIGN_OR_RETURN(
        pg::Result others,
        connection.Exec(
            absl::StrCat("SELECT ", kColumns,
                         " FROM tool_workers WHERE worker_id <> $1"),
            {pg::Param::Text(worker_id)}));
    ASSIGN_OR_RETURN(std::vector<SharedWorker> live, Rows(others));
    RETURN_IF_ERROR(check(live));
    RETURN_IF_ERROR(
        connection
            .Exec("INSERT INTO tool_workers (worker_id, registration, "
                  "lease_id, lease_ttl_ms, expires_at, updated_at) "
                  "VALUES ($1, $2, $3, $4::bigint, "
                  "now() + $4::bigint * interval '1 millisecond', now()) "
                  "ON CONFLICT (worker_id) DO UPDATE SET "
                  "registration = excluded.registration, "
                  "lease_id = excluded.lease_id, "
                  "lease_ttl_ms = excluded.lease_ttl_ms, "
                  "expires_at = excluded.expires_at, "
                  "updated_at = excluded.updated_at",
                  {pg::Param::Text(worker_id),
                   pg::Param::Bytes(registration.worker.SerializeAsString()),
                   pg::Param::Text(registration.lease_id),
                   pg::Param::Int(registration.lease_ttl_ms)})
            .status());
    return Notify(connection, worker_id);
  });
}

absl::StatusOr<std::optional<SharedWorker>> PgWorkerRegistrationStore::Renew(
    absl::string_view worker_id, absl::string_view lease_id) {
  std::optional<SharedWorker> renewed;
  absl::Status status =
      pool_->InTransaction([&](pg::Connection& connection) -> absl::Status {
        renewed.reset();
        ASSIGN_OR_RETURN(
            pg::Result result,
            connection.Exec(
                absl::StrCat(
                    "UPDATE tool_workers SET expires_at = now() + "
                    "lease_ttl_ms * interval '1 millisecond', updated_at = "
                    "now() WHERE worker_id = $1 AND lease_id = $2 AND "
                    "expires_at > now() RETURNING ",
                    kColumns),
                {pg::Param::Text(std::string(worker_id)),
                 pg::Param::Text(std::string(lease_id))}));
        if (result.rows() == 0) return absl::OkStatus();
        ASSIGN_OR_RETURN(SharedWorker row, RowAt(result, 0));
        renewed = std::move(row);
        return Notify(connection, worker_id);
      });
  if (!status.ok()) return status;
  return renewed;
}

absl::Status PgWorkerRegistrationStore::Delete(absl::string_view worker_id,
                                               absl::string_view lease_id) {
  return pool_->InTransaction([&](pg::Connection& connection) -> absl::Status {
    ASSIGN_OR_RETURN(
        pg::Result result,
        connection.Exec(
            "DELETE FROM tool_workers WHERE worker_id = $1 AND lease_id = $2",
            {pg::Param::Text(std::string(worker_id)),
             pg::Param::Text(std::string(lease_id))}));
    if (result.affected() == 0) return absl::OkStatus();
    return Notify(connection, worker_id);
  });
}

absl::StatusOr<std::vector<SharedWorker>> PgWorkerRegistrationStore::ReadAll() {
  ASSIGN_OR_RETURN(pg::Pool::Lease connection, pool_->Acquire());
  ASSIGN_OR_RETURN(
      pg::Result result,
      connection->Exec(absl::StrCat("SELECT ", kColumns,
                                    " FROM tool_workers WHERE expires_at > "
                                    "now() ORDER BY worker_id")));
  return Rows(result);
}

bool PgWorkerRegistrationStore::WaitForChange(absl::Duration timeout) {
  if (listener_ == nullptr || !listener_->healthy()) {
    listener_.reset();
    absl::StatusOr<std::unique_ptr<pg::Connection>> opened =
        pg::Connection::Open(pool_->conninfo());
    absl::Status status = opened.status();
    if (status.ok()) {
      status =
          (*opened)->Exec(absl::StrCat("LISTEN ", kWorkersChannel)).status();
    }
    if (!status.ok()) {
      if (!listen_failing_) {
        Log(LogLevel::kWarning,
            "cannot listen for worker registry changes; retrying",
            {{"error", std::string(status.message())}});
      }
      listen_failing_ = true;
      absl::SleepFor(timeout);  // the database may be restarting
      return false;
    }
    if (listen_failing_) {
      Log(LogLevel::kInfo, "listening for worker registry changes again");
    }
    listen_failing_ = false;
    listener_ = *std::move(opened);
    ++listens_opened_;
    // Changes announced while nobody listened are lost: read everything.
    return true;
  }
  absl::StatusOr<std::vector<pg::Notification>> notifications =
      listener_->WaitForNotifications(timeout);
  if (!notifications.ok()) {
    Log(LogLevel::kWarning,
        "lost the connection listening for worker registry changes; "
        "reopening",
        {{"error", std::string(notifications.status().message())}});
    listener_.reset();
    return false;  // the reopened connection reports a change
  }
  return !notifications->empty();
}

}  // namespace assistants::tool_workers
