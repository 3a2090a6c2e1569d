#include "service/cluster/pg_run_leases.h"

#include <iterator>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "service/common/errors.h"
#include "service/common/status_macros.h"

namespace assistants::cluster {
namespace {

constexpr absl::string_view kCommandNames[] = {"cancel", "park"};

std::vector<RunLease> Leases(const pg::Result& rows) {
  std::vector<RunLease> leases;
  leases.reserve(rows.rows());
  for (int i = 0; i < rows.rows(); ++i) {
    leases.push_back({rows.Text(i, 0), rows.Text(i, 1), rows.Int(i, 2)});
  }
  return leases;
}

}  // namespace

bool ParseRunCommand(const std::string& payload, RunCommand* command,
                     std::string* run_id) {
  const size_t colon = payload.find(':');
  if (colon == std::string::npos || colon + 1 == payload.size()) return false;
  const absl::string_view name(payload.data(), colon);
  for (size_t i = 0; i < std::size(kCommandNames); ++i) {
    if (name == kCommandNames[i]) {
      *command = static_cast<RunCommand>(i);
      *run_id = payload.substr(colon + 1);
      return true;
    }
  }
  return false;
}

PgRunLeases::PgRunLeases(pg::Pool* pool, std::string replica_id, int64_t ttl_ms)
    : pool_(pool), replica_id_(std::move(replica_id)), ttl_ms_(ttl_ms) {}

absl::StatusOr<pg::Result> PgRunLeases::Exec(
    const char* sql, const std::vector<pg::Param>& params) {
  ASSIGN_OR_RETURN(pg::Pool::Lease connection, pool_->Acquire());
  return connection->Exec(sql, params);
}

absl::StatusOr<RunLease> PgRunLeases::Acquire(const std::string& run_id) {
  ASSIGN_OR_RETURN(
      pg::Result taken,
      Exec("UPDATE run_leases SET owner = $2, token = token + 1, "
           "expires_at = now() + $3 * interval '1 millisecond' "
           "WHERE run_id = $1 AND (owner IS NULL OR expires_at < now()) "
           "RETURNING run_id, thread_id, token",
           {pg::Param::Text(run_id), pg::Param::Text(replica_id_),
            pg::Param::Int(ttl_ms_)}));
  if (taken.rows() == 1) return Leases(taken).front();
  ASSIGN_OR_RETURN(pg::Result held,
                   Exec("SELECT owner FROM run_leases WHERE run_id = $1",
                        {pg::Param::Text(run_id)}));
  if (held.rows() == 0) return NotFound("run", run_id);
  return MakeError(absl::StatusCode::kFailedPrecondition, "RUN_OWNED_ELSEWHERE",
                   absl::StrCat("Run ", run_id,
                                " is being driven by another gateway replica"),
                   {{"run_id", run_id}});
}

absl::StatusOr<std::vector<RunLease>> PgRunLeases::ClaimExpired(int limit) {
  // SKIP LOCKED: replicas sweeping at once split the expired leases instead
  // of queueing on each other's row locks.
  ASSIGN_OR_RETURN(pg::Result claimed,
                   Exec("UPDATE run_leases SET owner = $1, token = token + 1, "
                        "expires_at = now() + $2 * interval '1 millisecond' "
                        "WHERE run_id IN (SELECT run_id FROM run_leases "
                        "WHERE expires_at < now() ORDER BY expires_at LIMIT $3 "
                        "FOR UPDATE SKIP LOCKED) "
                        "RETURNING run_id, thread_id, token",
                        {pg::Param::Text(replica_id_), pg::Param::Int(ttl_ms_),
                         pg::Param::Int(limit)}));
  return Leases(claimed);
}

absl::StatusOr<std::vector<std::string>> PgRunLeases::Renew(
    const std::vector<RunLease>& held) {
  std::vector<std::string> lost;
  if (held.empty()) return lost;
  std::vector<std::string> ids;
  std::vector<std::string> tokens;
  for (const RunLease& lease : held) {
    ids.push_back(lease.run_id);
    tokens.push_back(absl::StrCat(lease.token));
  }
  // Run ids are [a-z0-9_] (service/common/ids.h): safe in an array literal.
  ASSIGN_OR_RETURN(
      pg::Result renewed,
      Exec("UPDATE run_leases AS l SET expires_at = now() + "
           "$2 * interval '1 millisecond' "
           "FROM unnest($3::text[], $4::bigint[]) AS h(run_id, token) "
           "WHERE l.run_id = h.run_id AND l.token = h.token AND l.owner = $1 "
           "RETURNING l.run_id",
           {pg::Param::Text(replica_id_), pg::Param::Int(ttl_ms_),
            pg::Param::Text(absl::StrCat("{", absl::StrJoin(ids, ","), "}")),
            pg::Param::Text(
                absl::StrCat("{", absl::StrJoin(tokens, ","), "}"))}));
  absl::flat_hash_set<std::string> kept;
  for (int i = 0; i < renewed.rows(); ++i) kept.insert(renewed.Text(i, 0));
  for (const RunLease& lease : held) {
    if (!kept.contains(lease.run_id)) lost.push_back(lease.run_id);
  }
  return lost;
}

absl::Status PgRunLeases::Release(const RunLease& lease,
                                  int64_t claim_after_ms) {
  return Exec(
             "UPDATE run_leases SET owner = NULL, "
             "expires_at = now() + $4 * interval '1 millisecond' "
             "WHERE run_id = $1 AND owner = $2 AND token = $3",
             {pg::Param::Text(lease.run_id), pg::Param::Text(replica_id_),
              pg::Param::Int(lease.token), pg::Param::Int(claim_after_ms)})
      .status();
}

absl::Status PgRunLeases::Finish(const RunLease& lease) {
  return Exec("DELETE FROM run_leases WHERE run_id = $1 AND token = $2",
              {pg::Param::Text(lease.run_id), pg::Param::Int(lease.token)})
      .status();
}

absl::StatusOr<std::vector<RunLease>> PgRunLeases::ThreadRuns(
    const std::string& thread_id, const std::string& run_id) {
  ASSIGN_OR_RETURN(
      pg::Result runs,
      Exec("SELECT run_id, thread_id, token FROM run_leases "
           "WHERE thread_id = $1 AND ($2 = '' OR seq < "
           "(SELECT seq FROM run_leases WHERE run_id = $2)) ORDER BY seq",
           {pg::Param::Text(thread_id), pg::Param::Text(run_id)}));
  return Leases(runs);
}

absl::Status PgRunLeases::Send(RunCommand command, const std::string& run_id) {
  return Exec("SELECT pg_notify($1, $2)",
              {pg::Param::Text(kRunCommandsChannel),
               pg::Param::Text(absl::StrCat(
                   kCommandNames[static_cast<int>(command)], ":", run_id))})
      .status();
}

}  // namespace assistants::cluster
