#include "service/cluster/pg_listener.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "service/common/log.h"

namespace assistants::cluster {

PgListener::PgListener(std::string conninfo, std::vector<std::string> channels,
                       Handler on_notification,
                       std::function<void()> on_reconnect)
    : conninfo_(std::move(conninfo)),
      channels_(std::move(channels)),
      on_notification_(std::move(on_notification)),
      on_reconnect_(std::move(on_reconnect)),
      thread_([this] { Loop(); }) {}

PgListener::~PgListener() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

bool PgListener::listening() const {
  absl::MutexLock lock(&mu_);
  return listening_;
}

void PgListener::Loop() {
  absl::Duration backoff = absl::Milliseconds(50);
  auto stopping = [this] {
    absl::MutexLock lock(&mu_);
    return stopping_;
  };
  while (!stopping()) {
    absl::StatusOr<std::unique_ptr<pg::Connection>> connection =
        pg::Connection::Open(conninfo_);
    absl::Status status =
        connection.ok() ? absl::OkStatus() : connection.status();
    for (const std::string& channel : channels_) {
      if (!status.ok()) break;
      // Channel names are our constants (identifiers), never user input.
      status = (*connection)->Exec(absl::StrCat("LISTEN ", channel)).status();
    }
    if (status.ok()) {
      {
        absl::MutexLock lock(&mu_);
        listening_ = true;
      }
      backoff = absl::Milliseconds(50);
      on_reconnect_();
      while (!stopping()) {
        // Short waits so a stop is noticed quickly.
        absl::StatusOr<std::vector<pg::Notification>> received =
            (*connection)->WaitForNotifications(absl::Milliseconds(200));
        if (!received.ok()) {
          status = received.status();
          break;
        }
        for (const pg::Notification& notification : *received) {
          on_notification_(notification);
        }
      }
      absl::MutexLock lock(&mu_);
      listening_ = false;
    }
    if (stopping()) break;
    Log(LogLevel::kWarning, "cluster notification listener reconnecting",
        {{"error", status.message()}});
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(2));
  }
}

}  // namespace assistants::cluster
