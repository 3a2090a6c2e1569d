#include "tool_workers/registry.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/message_differencer.h"
#include "service/common/errors.h"
#include "service/common/ids.h"
#include "service/common/log.h"
#include "service/common/status_macros.h"
#include "service/core/validation.h"

namespace assistants::tool_workers {
namespace {

constexpr int kMaxWorkerTools = 128;
constexpr size_t kMaxWorkerIdChars = 128;

// Compares without an early exit, so the time taken does not reveal how
// much of a guessed token was right.
bool SameSecret(absl::string_view presented, absl::string_view expected) {
  if (expected.empty()) return false;
  unsigned char diff = presented.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < presented.size(); ++i) {
    diff |= static_cast<unsigned char>(presented[i] ^
                                       expected[i % expected.size()]);
  }
  return diff == 0;
}

absl::Status CheckWorkerId(absl::string_view id) {
  if (id.empty()) return FieldError("worker_id", kFieldRequired, "is required");
  if (id.size() > kMaxWorkerIdChars) {
    return FieldError("worker_id", kFieldTooLong,
                      "must be at most 128 characters long");
  }
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' &&
        c != '_' && c != '-' && c != ':') {
      return FieldError("worker_id", kInvalidFormat,
                        "must match ^[a-zA-Z0-9._:-]{1,128}$");
    }
  }
  return absl::OkStatus();
}

// What must agree between replicas of one tool: what the model sees and
// whether a call may run twice.
bool SameDefinition(const v1::WorkerTool& a, const v1::WorkerTool& b) {
  return a.idempotent() == b.idempotent() &&
         google::protobuf::util::MessageDifferencer::Equals(a.function(),
                                                            b.function());
}

absl::Status DefinitionConflict(const std::string& tool,
                                const std::string& worker_id) {
  return MakeError(
      absl::StatusCode::kAlreadyExists, "TOOL_DEFINITION_CONFLICT",
      absl::StrCat("tool '", tool, "' is already served by worker ", worker_id,
                   " with a different definition (description, "
                   "parameters, strict or idempotent); one tool name has "
                   "one definition"),
      {{"tool", tool}, {"worker_id", worker_id}});
}

absl::Status StaticWorkerId(const std::string& worker_id) {
  return MakeError(absl::StatusCode::kAlreadyExists, "WORKER_ID_TAKEN",
                   absl::StrCat("worker id ", worker_id,
                                " belongs to a statically configured "
                                "worker; register with another id"),
                   {{"worker_id", worker_id}});
}

absl::Status LeaseNotFound(const std::string& worker_id,
                           const std::string& lease_id) {
  return MakeError(
      absl::StatusCode::kNotFound, "LEASE_NOT_FOUND",
      absl::StrCat("worker ", worker_id, " has no live lease ", lease_id,
                   " (expired or replaced); register "
                   "again"),
      {{"worker_id", worker_id}});
}

// The shared store could not be written: the RPC fails as retryable and
// nothing changed (the local view changes only after the write).
absl::Status SharedWriteFailed(absl::string_view what,
                               const std::string& worker_id,
                               const absl::Status& status) {
  Log(LogLevel::kWarning, "shared worker registry write failed",
      {{"op", what},
       {"worker_id", worker_id},
       {"error", std::string(status.message())}});
  return StoreUnavailable(
      absl::StrCat("the shared worker registry cannot be written (", what,
                   " of worker ", worker_id, "): ", status.message()));
}

}  // namespace

ToolRegistry::ToolRegistry(RegistryOptions options, const Clock* clock,
                           WorkerRegistrationStore* shared)
    : options_(std::move(options)), clock_(clock), shared_(shared) {}

absl::Status ToolRegistry::CheckToken(absl::string_view token) const {
  if (options_.registration_token.empty()) {
    return MakeError(absl::StatusCode::kPermissionDenied,
                     "REGISTRATION_DISABLED",
                     "this gateway accepts no worker registrations: it has no "
                     "registration token configured (--worker_token_file)");
  }
  if (!SameSecret(token, options_.registration_token)) {
    return MakeError(absl::StatusCode::kUnauthenticated,
                     "BAD_REGISTRATION_TOKEN",
                     token.empty() ? "send the registration token as "
                                     "authorization: Bearer <token>"
                                   : "the registration token is not valid");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, ToolRegistry::ToolState>>
ToolRegistry::ValidateTools(
    const google::protobuf::RepeatedPtrField<v1::WorkerTool>& tools) const {
  if (tools.empty()) {
    return FieldError("tools", kFieldRequired,
                      "a worker must serve at least one tool");
  }
  if (tools.size() > kMaxWorkerTools) {
    return FieldError("tools", kValueOutOfRange,
                      "a worker may serve at most 128 tools");
  }
  std::map<std::string, ToolState> out;
  for (int i = 0; i < tools.size(); ++i) {
    const std::string field = absl::StrCat("tools[", i, "]");
    const v1::WorkerTool& tool = tools[i];
    RETURN_IF_ERROR(
        ValidateFunction(tool.function(), absl::StrCat(field, ".function")));
    if (tool.timeout_ms() < 0 || tool.timeout_ms() > options_.max_timeout_ms) {
      return FieldError(absl::StrCat(field, ".timeout_ms"), kValueOutOfRange,
                        absl::StrCat("must be between 0 (the default) and ",
                                     options_.max_timeout_ms));
    }
    if (tool.max_concurrency() < 0 ||
        tool.max_concurrency() > options_.max_max_concurrency) {
      return FieldError(absl::StrCat(field, ".max_concurrency"),
                        kValueOutOfRange,
                        absl::StrCat("must be between 0 (the default) and ",
                                     options_.max_max_concurrency));
    }
    ToolState state;
    state.tool = tool;
    if (state.tool.timeout_ms() == 0) {
      state.tool.set_timeout_ms(options_.default_timeout_ms);
    }
    if (state.tool.max_concurrency() == 0) {
      state.tool.set_max_concurrency(options_.default_max_concurrency);
    }
    if (!out.emplace(tool.function().name(), std::move(state)).second) {
      return FieldError(
          absl::StrCat(field, ".function.name"), kDuplicateValue,
          absl::StrCat("tool '", tool.function().name(), "' is listed twice"));
    }
  }
  return out;
}

absl::Status ToolRegistry::CheckConflicts(
    const std::string& worker_id,
    const std::map<std::string, ToolState>& tools) const {
  for (const auto& [id, worker] : workers_) {
    if (id == worker_id || !Live(worker)) continue;
    for (const auto& [name, state] : tools) {
      auto other = worker.tools.find(name);
      if (other == worker.tools.end() ||
          SameDefinition(other->second.tool, state.tool)) {
        continue;
      }
      return DefinitionConflict(name, id);
    }
  }
  return absl::OkStatus();
}

void ToolRegistry::Put(WorkerState state) {
  auto it = workers_.find(state.worker_id);
  if (it != workers_.end()) {
    // The same registration continues (its calls still count).
    state.registration = it->second.registration;
    for (auto& [name, tool] : state.tools) {
      auto old = it->second.tools.find(name);
      if (old != it->second.tools.end()) tool.in_flight = old->second.in_flight;
    }
    it->second = std::move(state);
  } else {
    state.registration = next_registration_++;
    std::string id = state.worker_id;
    workers_.emplace(std::move(id), std::move(state));
  }
}

absl::Status ToolRegistry::CheckEndpoint(absl::string_view endpoint) const {
  ASSIGN_OR_RETURN(HostPort parsed, ParseEndpoint(endpoint, "endpoint"));
  if (options_.allowlist.Allows(parsed)) return absl::OkStatus();
  return MakeError(absl::StatusCode::kPermissionDenied, "ENDPOINT_NOT_ALLOWED",
                   absl::StrCat("endpoint ", endpoint,
                                " is not in this gateway's worker allow-list (",
                                options_.allowlist.description(), ")"),
                   {{"endpoint", std::string(endpoint)}});
}

absl::StatusOr<v1::RegisterWorkerResponse> ToolRegistry::Register(
    absl::string_view token, const v1::RegisterWorkerRequest& request) {
  RETURN_IF_ERROR(CheckToken(token));
  RETURN_IF_ERROR(CheckWorkerId(request.worker_id()));
  RETURN_IF_ERROR(CheckEndpoint(request.endpoint()));
  if (request.lease_ttl_ms() < 0) {
    return FieldError("lease_ttl_ms", kValueOutOfRange,
                      "must be 0 (the default) or positive");
  }
  ASSIGN_OR_RETURN(auto tools, ValidateTools(request.tools()));
  const int64_t ttl = request.lease_ttl_ms() == 0
                          ? options_.default_lease_ttl_ms
                          : std::clamp<int64_t>(request.lease_ttl_ms(),
                                                options_.min_lease_ttl_ms,
                                                options_.max_lease_ttl_ms);
  const int64_t now = clock_->NowMillis();
  WorkerState state;
  state.worker_id = request.worker_id();
  state.endpoint = request.endpoint();
  state.lease_id = NewId("lease_");
  state.lease_ttl_ms = ttl;
  state.lease_expires_at_ms = now + ttl;
  state.heartbeat_interval_ms = std::max<int64_t>(ttl / 3, 1);
  state.last_heartbeat_ms = now;
  state.tools = std::move(tools);
  v1::RegisterWorkerResponse response;
  response.set_lease_id(state.lease_id);
  response.set_lease_ttl_ms(static_cast<int32_t>(ttl));
  response.set_heartbeat_interval_ms(
      static_cast<int32_t>(state.heartbeat_interval_ms));
  if (shared_ != nullptr) {
    return RegisterShared(std::move(state), std::move(response));
  }
  {
    absl::MutexLock lock(&mu_);
    Prune();
    auto existing = workers_.find(state.worker_id);
    if (existing != workers_.end() && existing->second.is_static) {
      return StaticWorkerId(state.worker_id);
    }
    RETURN_IF_ERROR(CheckConflicts(state.worker_id, state.tools));
    Put(std::move(state));
  }
  NotifyCapacity();
  return response;
}

absl::StatusOr<v1::RegisterWorkerResponse> ToolRegistry::RegisterShared(
    WorkerState state, v1::RegisterWorkerResponse response) {
  {
    // What this replica knows refuses early; the store's check below sees
    // the registrations it has not mirrored yet.
    absl::MutexLock lock(&mu_);
    Prune();
    auto existing = workers_.find(state.worker_id);
    if (existing != workers_.end() && existing->second.is_static) {
      return StaticWorkerId(state.worker_id);
    }
    RETURN_IF_ERROR(CheckConflicts(state.worker_id, state.tools));
  }
  SharedWorker row;
  row.worker.set_worker_id(state.worker_id);
  row.worker.set_endpoint(state.endpoint);
  for (const auto& [name, tool] : state.tools) {
    *row.worker.add_tools() = tool.tool;
  }
  row.lease_id = state.lease_id;
  row.lease_ttl_ms = state.lease_ttl_ms;
  absl::Status refused;
  absl::Status written = shared_->Put(
      row, [&state, &refused](const std::vector<SharedWorker>& others) {
        refused = absl::OkStatus();
        for (const SharedWorker& other : others) {
          for (const v1::WorkerTool& tool : other.worker.tools()) {
            auto mine = state.tools.find(tool.function().name());
            if (mine != state.tools.end() &&
                !SameDefinition(mine->second.tool, tool)) {
              refused =
                  DefinitionConflict(mine->first, other.worker.worker_id());
              return refused;
            }
          }
        }
        return absl::OkStatus();
      });
  if (!refused.ok()) return refused;
  if (!written.ok()) {
    return SharedWriteFailed("register", state.worker_id, written);
  }
  {
    absl::MutexLock lock(&mu_);
    Prune();
    // The store accepted it and is the authority: a worker this replica
    // still lists with a conflicting definition is gone from the store
    // (expired or replaced), so let it go now rather than at the next sync.
    for (auto& [id, worker] : workers_) {
      if (id == state.worker_id || worker.is_static || !Live(worker)) continue;
      for (const auto& [name, tool] : state.tools) {
        auto other = worker.tools.find(name);
        if (other != worker.tools.end() &&
            !SameDefinition(other->second.tool, tool.tool)) {
          worker.draining = true;
          break;
        }
      }
    }
    state.changed = ++change_seq_;
    Put(std::move(state));
    Prune();
  }
  NotifyCapacity();
  return response;
}

absl::StatusOr<v1::HeartbeatResponse> ToolRegistry::Heartbeat(
    absl::string_view token, const v1::HeartbeatRequest& request) {
  RETURN_IF_ERROR(CheckToken(token));
  if (shared_ != nullptr) return HeartbeatShared(request);
  absl::MutexLock lock(&mu_);
  Prune();
  auto it = workers_.find(request.worker_id());
  if (it == workers_.end() || it->second.is_static || it->second.draining ||
      it->second.lease_id != request.lease_id()) {
    return LeaseNotFound(request.worker_id(), request.lease_id());
  }
  const int64_t now = clock_->NowMillis();
  it->second.last_heartbeat_ms = now;
  it->second.lease_expires_at_ms = now + it->second.lease_ttl_ms;
  v1::HeartbeatResponse response;
  response.set_lease_expires_at_ms(it->second.lease_expires_at_ms);
  return response;
}

absl::StatusOr<v1::HeartbeatResponse> ToolRegistry::HeartbeatShared(
    const v1::HeartbeatRequest& request) {
  // The store holds the lease: a heartbeat renews it there whichever
  // replica registered the worker, even one this replica has not mirrored
  // yet.
  absl::StatusOr<std::optional<SharedWorker>> renewed =
      shared_->Renew(request.worker_id(), request.lease_id());
  if (!renewed.ok()) {
    return SharedWriteFailed("heartbeat", request.worker_id(),
                             renewed.status());
  }
  if (!renewed->has_value()) {
    return LeaseNotFound(request.worker_id(), request.lease_id());
  }
  const SharedWorker& row = **renewed;
  const int64_t now = clock_->NowMillis();
  bool added = false;
  {
    absl::MutexLock lock(&mu_);
    Prune();
    absl::Status mirrored = MirrorLocked(row, now, &added);
    if (mirrored.ok()) {
      workers_.find(row.worker.worker_id())->second.changed = ++change_seq_;
    } else {
      // The lease is renewed for the replicas that can serve the worker;
      // this one cannot (see Reconcile), which RegistrySync logs.
      Log(LogLevel::kDebug, "renewed worker not mirrored here",
          {{"worker_id", row.worker.worker_id()},
           {"error", std::string(mirrored.message())}});
    }
  }
  if (added) NotifyCapacity();
  v1::HeartbeatResponse response;
  response.set_lease_expires_at_ms(now + row.remaining_ms);
  return response;
}

absl::Status ToolRegistry::Unregister(
    absl::string_view token, const v1::UnregisterWorkerRequest& request) {
  RETURN_IF_ERROR(CheckToken(token));
  if (shared_ != nullptr) {
    absl::Status deleted =
        shared_->Delete(request.worker_id(), request.lease_id());
    if (!deleted.ok()) {
      return SharedWriteFailed("unregister", request.worker_id(), deleted);
    }
  }
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(request.worker_id());
  // Unknown or replaced: that lease is gone already, which is what the
  // caller asked for.
  if (it == workers_.end() || it->second.is_static ||
      it->second.lease_id != request.lease_id()) {
    return absl::OkStatus();
  }
  it->second.draining = true;  // calls in flight finish; Prune drops it
  if (shared_ != nullptr) {
    it->second.changed = ++change_seq_;
    removed_[request.worker_id()] = change_seq_;
  }
  Prune();
  return absl::OkStatus();
}

void ToolRegistry::SetLease(WorkerState& state, int64_t ttl_ms,
                            int64_t remaining_ms, int64_t now) const {
  state.lease_ttl_ms = ttl_ms;
  state.lease_expires_at_ms = now + remaining_ms;
  state.heartbeat_interval_ms = std::max<int64_t>(ttl_ms / 3, 1);
  // When the store last renewed it, by this replica's clock.
  state.last_heartbeat_ms = state.lease_expires_at_ms - ttl_ms;
}

absl::StatusOr<ToolRegistry::WorkerState> ToolRegistry::FromShared(
    const SharedWorker& row, int64_t now) const {
  const v1::Worker& worker = row.worker;
  RETURN_IF_ERROR(CheckWorkerId(worker.worker_id()));
  // Every replica applies its own allow-list: a replica never dials an
  // endpoint its configuration refuses, whoever accepted the registration.
  RETURN_IF_ERROR(CheckEndpoint(worker.endpoint()));
  if (row.lease_ttl_ms <= 0 || row.lease_id.empty()) {
    return absl::InvalidArgumentError("stored registration has no lease");
  }
  ASSIGN_OR_RETURN(auto tools, ValidateTools(worker.tools()));
  WorkerState state;
  state.worker_id = worker.worker_id();
  state.endpoint = worker.endpoint();
  state.lease_id = row.lease_id;
  state.tools = std::move(tools);
  SetLease(state, row.lease_ttl_ms, row.remaining_ms, now);
  return state;
}

absl::Status ToolRegistry::MirrorLocked(const SharedWorker& row, int64_t now,
                                        bool* added) {
  auto it = workers_.find(row.worker.worker_id());
  if (it != workers_.end()) {
    WorkerState& known = it->second;
    if (known.is_static) return StaticWorkerId(known.worker_id);
    if (!known.draining && known.lease_id == row.lease_id) {
      // The same registration (a lease never changes its tools): only the
      // lease moves; suspect marks and calls in flight stay.
      SetLease(known, row.lease_ttl_ms, row.remaining_ms, now);
      return absl::OkStatus();
    }
  }
  ASSIGN_OR_RETURN(WorkerState state, FromShared(row, now));
  RETURN_IF_ERROR(CheckConflicts(state.worker_id, state.tools));
  Put(std::move(state));
  *added = true;
  return absl::OkStatus();
}

uint64_t ToolRegistry::SyncMark() const {
  absl::MutexLock lock(&mu_);
  return change_seq_;
}

std::map<std::string, absl::Status> ToolRegistry::Reconcile(
    const std::vector<SharedWorker>& rows, uint64_t mark) {
  std::map<std::string, absl::Status> refused;
  bool added = false;
  {
    absl::MutexLock lock(&mu_);
    const int64_t now = clock_->NowMillis();
    std::set<std::string> stored;
    for (const SharedWorker& row : rows) stored.insert(row.worker.worker_id());
    // Registered workers without a row were unregistered or replaced by
    // another replica, or expired there: let them go as Unregister does.
    for (auto& [id, worker] : workers_) {
      if (!worker.is_static && !worker.draining && worker.changed <= mark &&
          stored.count(id) == 0) {
        worker.draining = true;
      }
    }
    Prune();
    for (const SharedWorker& row : rows) {
      const std::string& id = row.worker.worker_id();
      auto it = workers_.find(id);
      if (it != workers_.end() && it->second.changed > mark) continue;
      auto removed = removed_.find(id);
      if (removed != removed_.end() && removed->second > mark) continue;
      absl::Status mirrored = MirrorLocked(row, now, &added);
      if (!mirrored.ok()) refused.emplace(id, std::move(mirrored));
    }
    // Reads after the mark already reflect those removals.
    for (auto it = removed_.begin(); it != removed_.end();) {
      if (it->second <= mark) {
        removed_.erase(it++);
      } else {
        ++it;
      }
    }
    Prune();
  }
  if (added) NotifyCapacity();
  return refused;
}

absl::Status ToolRegistry::Mirror(const SharedWorker& row) {
  bool added = false;
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    Prune();
    status = MirrorLocked(row, clock_->NowMillis(), &added);
  }
  if (added) NotifyCapacity();
  return status;
}

void ToolRegistry::Forget(absl::string_view worker_id) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(std::string(worker_id));
  if (it == workers_.end() || it->second.is_static) return;
  it->second.draining = true;
  Prune();
}

absl::Status ToolRegistry::AddStatic(const v1::Worker& worker) {
  RETURN_IF_ERROR(CheckWorkerId(worker.worker_id()));
  RETURN_IF_ERROR(ParseEndpoint(worker.endpoint(), "endpoint").status());
  ASSIGN_OR_RETURN(auto tools, ValidateTools(worker.tools()));
  WorkerState state;
  state.worker_id = worker.worker_id();
  state.endpoint = worker.endpoint();
  state.is_static = true;
  state.tools = std::move(tools);
  {
    absl::MutexLock lock(&mu_);
    if (workers_.contains(state.worker_id)) {
      return MakeError(
          absl::StatusCode::kAlreadyExists, "WORKER_ID_TAKEN",
          absl::StrCat("worker id ", state.worker_id, " is configured twice"),
          {{"worker_id", state.worker_id}});
    }
    RETURN_IF_ERROR(CheckConflicts(state.worker_id, state.tools));
    Put(std::move(state));
  }
  NotifyCapacity();
  return absl::OkStatus();
}

bool ToolRegistry::Live(const WorkerState& worker) const {
  return !worker.draining &&
         (worker.is_static || worker.lease_expires_at_ms > clock_->NowMillis());
}

void ToolRegistry::Prune() const {
  const int64_t now = clock_->NowMillis();
  for (auto it = workers_.begin(); it != workers_.end();) {
    const WorkerState& worker = it->second;
    bool busy = false;
    for (const auto& [name, tool] : worker.tools) busy |= tool.in_flight > 0;
    const bool expired = !worker.is_static && worker.lease_expires_at_ms <= now;
    // An expired worker goes at once (its calls fail on their own); one
    // that unregistered stays listed as draining until its calls end.
    if (expired || (worker.draining && !busy)) {
      workers_.erase(it++);
    } else {
      ++it;
    }
  }
}

v1::WorkerHealth ToolRegistry::Health(const WorkerState& worker,
                                      int64_t now) const {
  if (worker.draining) return v1::WORKER_HEALTH_DRAINING;
  if (now < worker.suspect_until_ms) return v1::WORKER_HEALTH_SUSPECT;
  if (!worker.is_static &&
      now > worker.last_heartbeat_ms + 2 * worker.heartbeat_interval_ms) {
    return v1::WORKER_HEALTH_SUSPECT;
  }
  return v1::WORKER_HEALTH_SERVING;
}

v1::ListToolsResponse ToolRegistry::ListTools() const {
  std::map<std::string, v1::RegisteredTool> tools;
  {
    absl::MutexLock lock(&mu_);
    Prune();
    for (const auto& [id, worker] : workers_) {
      if (!Live(worker)) continue;
      for (const auto& [name, state] : worker.tools) {
        auto [it, created] = tools.emplace(name, v1::RegisteredTool());
        if (created) *it->second.mutable_tool() = state.tool;
        it->second.add_worker_ids(id);
      }
    }
  }
  v1::ListToolsResponse response;
  for (auto& [name, tool] : tools) {
    std::sort(tool.mutable_worker_ids()->begin(),
              tool.mutable_worker_ids()->end());
    *response.add_tools() = std::move(tool);
  }
  return response;
}

v1::ListWorkersResponse ToolRegistry::ListWorkers() const {
  std::vector<v1::Worker> workers;
  {
    absl::MutexLock lock(&mu_);
    Prune();
    const int64_t now = clock_->NowMillis();
    for (const auto& [id, state] : workers_) {
      v1::Worker& worker = workers.emplace_back();
      worker.set_worker_id(id);
      worker.set_endpoint(state.endpoint);
      worker.set_health(Health(state, now));
      worker.set_lease_expires_at_ms(
          state.is_static ? 0 : state.lease_expires_at_ms);
      worker.set_static_(state.is_static);
      int in_flight = 0;
      for (const auto& [name, tool] : state.tools) {
        *worker.add_tools() = tool.tool;
        in_flight += tool.in_flight;
      }
      worker.set_in_flight(in_flight);
    }
  }
  std::sort(workers.begin(), workers.end(),
            [](const v1::Worker& a, const v1::Worker& b) {
              return a.worker_id() < b.worker_id();
            });
  v1::ListWorkersResponse response;
  for (v1::Worker& worker : workers) *response.add_workers() = worker;
  return response;
}

bool ToolRegistry::Serves(absl::string_view tool) const {
  return Tool(tool).has_value();
}

std::optional<v1::WorkerTool> ToolRegistry::Tool(absl::string_view tool) const {
  absl::MutexLock lock(&mu_);
  for (const auto& [id, worker] : workers_) {
    if (!Live(worker)) continue;
    auto it = worker.tools.find(std::string(tool));
    if (it != worker.tools.end()) return it->second.tool;
  }
  return std::nullopt;
}

AcquireResult ToolRegistry::Acquire(absl::string_view tool,
                                    const std::set<std::string>& exclude,
                                    WorkerSlot* slot) {
  absl::MutexLock lock(&mu_);
  Prune();
  const int64_t now = clock_->NowMillis();
  const std::string name(tool);
  // The best candidate so far: healthy first, then the lowest load.
  WorkerState* best = nullptr;
  ToolState* best_tool = nullptr;
  bool best_healthy = false;
  double best_load = 0;
  bool any = false;
  std::vector<WorkerState*> ties;
  for (auto& [id, worker] : workers_) {
    if (!Live(worker) || exclude.count(id) > 0) continue;
    auto it = worker.tools.find(name);
    if (it == worker.tools.end()) continue;
    any = true;
    ToolState& state = it->second;
    if (state.in_flight >= state.tool.max_concurrency()) continue;
    const bool healthy = Health(worker, now) == v1::WORKER_HEALTH_SERVING;
    const double load =
        static_cast<double>(state.in_flight) / state.tool.max_concurrency();
    if (best == nullptr || (healthy && !best_healthy) ||
        (healthy == best_healthy && load < best_load)) {
      best = &worker;
      best_tool = &state;
      best_healthy = healthy;
      best_load = load;
      ties.assign(1, &worker);
    } else if (healthy == best_healthy && load == best_load) {
      ties.push_back(&worker);
    }
  }
  if (best == nullptr) {
    return any ? AcquireResult::kAllBusy : AcquireResult::kNoWorker;
  }
  if (ties.size() > 1) {
    // Equal candidates take turns (the map's order is arbitrary but
    // stable, so sort by id to make the rotation fair).
    std::sort(ties.begin(), ties.end(),
              [](const WorkerState* a, const WorkerState* b) {
                return a->worker_id < b->worker_id;
              });
    best = ties[turn_++ % ties.size()];
    best_tool = &best->tools.find(name)->second;
  }
  ++best_tool->in_flight;
  slot->worker_id = best->worker_id;
  slot->registration = best->registration;
  slot->endpoint = best->endpoint;
  slot->tool = name;
  slot->timeout_ms = best_tool->tool.timeout_ms();
  slot->idempotent = best_tool->tool.idempotent();
  return AcquireResult::kAcquired;
}

void ToolRegistry::Release(const WorkerSlot& slot, CallOutcome outcome) {
  {
    absl::MutexLock lock(&mu_);
    auto it = workers_.find(slot.worker_id);
    if (it != workers_.end() && it->second.registration == slot.registration) {
      auto tool = it->second.tools.find(slot.tool);
      if (tool != it->second.tools.end() && tool->second.in_flight > 0) {
        --tool->second.in_flight;
      }
      if (outcome == CallOutcome::kUnavailable) {
        it->second.suspect_until_ms = clock_->NowMillis() + options_.suspect_ms;
      } else if (outcome == CallOutcome::kOk) {
        it->second.suspect_until_ms = 0;
      }
    }
    Prune();
  }
  NotifyCapacity();
}

void ToolRegistry::NotifyCapacity() {
  std::function<void()> listener;
  {
    absl::MutexLock lock(&mu_);
    listener = capacity_listener_;
  }
  if (listener) listener();
}

}  // namespace assistants::tool_workers
