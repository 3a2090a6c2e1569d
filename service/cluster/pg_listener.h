// PgListener: one thread with its own PostgreSQL connection LISTENing on a
// few channels, handing each notification to a callback. A lost connection
// is reopened (with backoff) and `on_reconnect` runs after every (re)LISTEN:
// notifications sent while it was down are lost, so listeners re-read what
// they watch.
#ifndef SERVICE_CLUSTER_PG_LISTENER_H_
#define SERVICE_CLUSTER_PG_LISTENER_H_

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "service/store/pg/pg_client.h"

namespace assistants::cluster {

class PgListener {
 public:
  using Handler = std::function<void(const pg::Notification&)>;

  // Starts listening at once. Callbacks run on the listener's thread.
  PgListener(std::string conninfo, std::vector<std::string> channels,
             Handler on_notification, std::function<void()> on_reconnect);
  // Stops and joins (within about one poll interval).
  ~PgListener();

  // Whether the connection is up and listening (tests).
  bool listening() const;

 private:
  void Loop();

  const std::string conninfo_;
  const std::vector<std::string> channels_;
  const Handler on_notification_;
  const std::function<void()> on_reconnect_;
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool listening_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace assistants::cluster

#endif  // SERVICE_CLUSTER_PG_LISTENER_H_
