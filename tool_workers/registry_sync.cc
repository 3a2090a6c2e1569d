#include "tool_workers/registry_sync.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "service/common/log.h"

namespace assistants::tool_workers {
namespace {

// The longest the thread waits without checking whether to stop.
constexpr absl::Duration kWaitSlice = absl::Milliseconds(200);

}  // namespace

RegistrySync::RegistrySync(ToolRegistry* registry,
                           WorkerRegistrationStore* store,
                           absl::Duration interval)
    : registry_(registry), store_(store), interval_(interval) {}

RegistrySync::~RegistrySync() { Stop(); }

void RegistrySync::Start() {
  SyncOnce().IgnoreError();  // logged; the thread tries again
  thread_ = std::thread([this] { Loop(); });
}

void RegistrySync::Stop() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
}

absl::Status RegistrySync::SyncOnce() {
  // Taken before reading: what this replica writes meanwhile is newer than
  // the read and must survive it.
  const uint64_t mark = registry_->SyncMark();
  absl::StatusOr<std::vector<SharedWorker>> rows = store_->ReadAll();
  if (!rows.ok()) {
    absl::MutexLock lock(&mu_);
    if (!failing_) {
      Log(LogLevel::kWarning,
          "cannot read the shared worker registry; serving the workers "
          "known so far",
          {{"error", std::string(rows.status().message())}});
    }
    failing_ = true;
    ++syncs_;
    return rows.status();
  }
  std::map<std::string, absl::Status> refused =
      registry_->Reconcile(*rows, mark);
  {
    absl::MutexLock lock(&mu_);
    if (failing_) Log(LogLevel::kInfo, "shared worker registry readable again");
    failing_ = false;
    std::map<std::string, std::string> now_refused;
    for (const SharedWorker& row : *rows) {
      auto it = refused.find(row.worker.worker_id());
      if (it == refused.end()) continue;
      now_refused[row.worker.worker_id()] = row.lease_id;
      auto before = refused_.find(row.worker.worker_id());
      if (before == refused_.end() || before->second != row.lease_id) {
        Log(LogLevel::kWarning,
            "worker registered on another replica is not served here",
            {{"worker_id", row.worker.worker_id()},
             {"endpoint", row.worker.endpoint()},
             {"error", std::string(it->second.message())}});
      }
    }
    refused_ = std::move(now_refused);
  }
  ++syncs_;
  return absl::OkStatus();
}

void RegistrySync::Loop() {
  while (!stopping_) {
    const absl::Time deadline = absl::Now() + interval_;
    bool changed = false;
    while (!changed && !stopping_) {
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) break;
      changed = store_->WaitForChange(std::min(left, kWaitSlice));
    }
    if (stopping_) break;
    SyncOnce().IgnoreError();  // logged
  }
}

}  // namespace assistants::tool_workers
