// RunLeases on PostgreSQL: the run_leases table of the PostgreSQL store
// (service/store/pg/pg_schema.cc) and the 'assistants_run_commands'
// notification channel. Lease times are the database's (now()), so replicas'
// clocks are never compared.
#ifndef SERVICE_CLUSTER_PG_RUN_LEASES_H_
#define SERVICE_CLUSTER_PG_RUN_LEASES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "service/cluster/run_leases.h"
#include "service/store/pg/pg_client.h"

namespace assistants::cluster {

// The channel RunLeases::Send notifies on; payload "<command>:<run_id>".
inline constexpr char kRunCommandsChannel[] = "assistants_run_commands";

// Parses a command notification's payload; false when malformed.
bool ParseRunCommand(const std::string& payload, RunCommand* command,
                     std::string* run_id);

class PgRunLeases : public RunLeases {
 public:
  // `pool` must outlive this; leases last `ttl_ms` after each renewal.
  PgRunLeases(pg::Pool* pool, std::string replica_id, int64_t ttl_ms);

  const std::string& replica_id() const override { return replica_id_; }
  absl::StatusOr<RunLease> Acquire(const std::string& run_id) override;
  absl::StatusOr<std::vector<RunLease>> ClaimExpired(int limit) override;
  absl::StatusOr<std::vector<std::string>> Renew(
      const std::vector<RunLease>& held) override;
  absl::Status Release(const RunLease& lease, int64_t claim_after_ms) override;
  absl::Status Finish(const RunLease& lease) override;
  absl::StatusOr<std::vector<RunLease>> ThreadRuns(
      const std::string& thread_id, const std::string& run_id) override;
  absl::Status Send(RunCommand command, const std::string& run_id) override;

 private:
  absl::StatusOr<pg::Result> Exec(const char* sql,
                                  const std::vector<pg::Param>& params);

  pg::Pool* const pool_;
  const std::string replica_id_;
  const int64_t ttl_ms_;
};

}  // namespace assistants::cluster

#endif  // SERVICE_CLUSTER_PG_RUN_LEASES_H_
