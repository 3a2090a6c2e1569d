#include "tool_workers/memory_registration_store.h"

#include <utility>

#include "service/common/errors.h"

namespace assistants::tool_workers {

absl::Status MemoryWorkerRegistrationStore::Available() const {
  if (unavailable_) return StoreUnavailable("memory registration store down");
  return absl::OkStatus();
}

SharedWorker MemoryWorkerRegistrationStore::Read(const Row& row,
                                                 int64_t now) const {
  SharedWorker out = row.registration;
  out.remaining_ms = row.expires_at_ms - now;
  return out;
}

absl::Status MemoryWorkerRegistrationStore::Put(
    const SharedWorker& registration, const Check& check) {
  absl::MutexLock lock(&mu_);
  if (absl::Status status = Available(); !status.ok()) return status;
  const int64_t now = clock_->NowMillis();
  std::vector<SharedWorker> others;
  for (const auto& [id, row] : rows_) {
    if (id != registration.worker.worker_id() && row.expires_at_ms > now) {
      others.push_back(Read(row, now));
    }
  }
  if (absl::Status status = check(others); !status.ok()) return status;
  Row& row = rows_[registration.worker.worker_id()];
  row.registration = registration;
  row.registration.remaining_ms = 0;
  row.expires_at_ms = now + registration.lease_ttl_ms;
  Changed();
  return absl::OkStatus();
}

absl::StatusOr<std::optional<SharedWorker>>
MemoryWorkerRegistrationStore::Renew(absl::string_view worker_id,
                                     absl::string_view lease_id) {
  absl::MutexLock lock(&mu_);
  if (absl::Status status = Available(); !status.ok()) return status;
  const int64_t now = clock_->NowMillis();
  auto it = rows_.find(std::string(worker_id));
  if (it == rows_.end() || it->second.registration.lease_id != lease_id ||
      it->second.expires_at_ms <= now) {
    return std::optional<SharedWorker>();
  }
  it->second.expires_at_ms = now + it->second.registration.lease_ttl_ms;
  Changed();
  return std::optional<SharedWorker>(Read(it->second, now));
}

absl::Status MemoryWorkerRegistrationStore::Delete(absl::string_view worker_id,
                                                   absl::string_view lease_id) {
  absl::MutexLock lock(&mu_);
  if (absl::Status status = Available(); !status.ok()) return status;
  auto it = rows_.find(std::string(worker_id));
  if (it != rows_.end() && it->second.registration.lease_id == lease_id) {
    rows_.erase(it);
    Changed();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SharedWorker>>
MemoryWorkerRegistrationStore::ReadAll() {
  absl::MutexLock lock(&mu_);
  if (absl::Status status = Available(); !status.ok()) return status;
  const int64_t now = clock_->NowMillis();
  std::vector<SharedWorker> out;
  for (const auto& [id, row] : rows_) {
    if (row.expires_at_ms > now) out.push_back(Read(row, now));
  }
  return out;
}

bool MemoryWorkerRegistrationStore::WaitForChange(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto [seen, first] = seen_.emplace(std::this_thread::get_id(), 0);
  if (first) {
    seen->second = changes_;
    return true;
  }
  const uint64_t last = seen->second;
  auto changed = [this, last]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return changes_ != last;
  };
  mu_.AwaitWithTimeout(absl::Condition(&changed), timeout);
  seen->second = changes_;
  return changes_ != last;
}

void MemoryWorkerRegistrationStore::set_unavailable(bool unavailable) {
  absl::MutexLock lock(&mu_);
  unavailable_ = unavailable;
}

}  // namespace assistants::tool_workers
