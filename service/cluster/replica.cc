#include "service/cluster/replica.h"

#include <unistd.h>

#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace assistants::cluster {

std::string DefaultReplicaId() {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  absl::BitGen random;
  return absl::StrFormat("%s-%d-%06x", host[0] != '\0' ? host : "gateway",
                         getpid(),
                         absl::Uniform<uint32_t>(random, 0, 1u << 24));
}

absl::StatusOr<std::unique_ptr<Replica>> Replica::Open(
    const std::string& postgres_url, std::string replica_id,
    int64_t lease_ttl_ms) {
  std::unique_ptr<Replica> replica(new Replica());
  replica->postgres_url_ = postgres_url;
  // Lease upkeep and commands are a handful of short statements.
  replica->pool_ = std::make_unique<pg::Pool>(postgres_url, 4);
  replica->leases_ = std::make_unique<PgRunLeases>(
      replica->pool_.get(), std::move(replica_id), lease_ttl_ms);
  absl::StatusOr<pg::Pool::Lease> connection = replica->pool_->Acquire();
  if (!connection.ok()) return connection.status();
  return replica;
}

std::unique_ptr<PgListener> Replica::Listen(runs::RunEngine* engine) const {
  return std::make_unique<PgListener>(
      postgres_url_,
      std::vector<std::string>{assistants::kRunEventsChannel,
                               kRunCommandsChannel},
      [engine](const pg::Notification& notification) {
        if (notification.channel == assistants::kRunEventsChannel) {
          engine->hub()->NotifyRemote(notification.payload);
          return;
        }
        RunCommand command;
        std::string run_id;
        if (ParseRunCommand(notification.payload, &command, &run_id)) {
          engine->OnRunCommand(command, run_id);
        }
      },
      // Whatever was notified while the listener was down: re-read.
      [engine] { engine->hub()->WakeAllRemote(); });
}

}  // namespace assistants::cluster
