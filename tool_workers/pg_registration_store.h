// PgWorkerRegistrationStore: the WorkerRegistrationStore of gateway replicas
// sharing one PostgreSQL database (doc/adr/0011-shared-worker-registry.md).
// Table tool_workers (migrations of component "tool_workers"): one row per
// registered worker, the registration as a serialized v1::Worker, its lease
// and expires_at in database time. Every write runs
// pg_notify('assistants_workers', worker_id) in its transaction;
// WaitForChange LISTENs on its own connection and reopens it when lost.
#ifndef TOOL_WORKERS_PG_REGISTRATION_STORE_H_
#define TOOL_WORKERS_PG_REGISTRATION_STORE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "service/store/pg/pg_client.h"
#include "tool_workers/registration_store.h"

namespace assistants::tool_workers {

// The channel every registration change is announced on (payload: the
// worker id).
inline constexpr char kWorkersChannel[] = "assistants_workers";

class PgWorkerRegistrationStore final : public WorkerRegistrationStore {
 public:
  // Migrates the "tool_workers" component of `pool`'s database, then
  // serves from it; `pool` (shared with the store) must outlive this.
  // UNAVAILABLE when the database cannot be reached.
  static absl::StatusOr<std::unique_ptr<PgWorkerRegistrationStore>> Open(
      pg::Pool* pool);
  // The migrations of component "tool_workers".
  static const std::vector<pg::Migration>& Migrations();

  absl::Status Put(const SharedWorker& registration,
                   const Check& check) override;
  absl::StatusOr<std::optional<SharedWorker>> Renew(
      absl::string_view worker_id, absl::string_view lease_id) override;
  absl::Status Delete(absl::string_view worker_id,
                      absl::string_view lease_id) override;
  absl::StatusOr<std::vector<SharedWorker>> ReadAll() override;
  bool WaitForChange(absl::Duration timeout) override;

  // LISTEN connections opened so far (tests see a lost one reopened).
  int64_t listens_opened() const { return listens_opened_.load(); }

 private:
  explicit PgWorkerRegistrationStore(pg::Pool* pool) : pool_(pool) {}

  pg::Pool* const pool_;
  // The LISTEN connection; only WaitForChange's one caller touches it.
  std::unique_ptr<pg::Connection> listener_;
  // Whether the last attempt to listen failed (logged once per outage).
  bool listen_failing_ = false;
  std::atomic<int64_t> listens_opened_{0};
};

}  // namespace assistants::tool_workers

#endif  // TOOL_WORKERS_PG_REGISTRATION_STORE_H_
