// GatewayServer: assembles the store, the core and the gRPC services into a
// running server (health and reflection included). Used by main and by the
// in-process service tests, so both run exactly the same wiring.
#ifndef SERVICE_API_SERVER_H_
#define SERVICE_API_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/server.h"
#include "grpcpp/support/server_interceptor.h"
#include "service/api/services.h"
#include "service/common/clock.h"
#include "service/common/executor.h"
#include "service/common/tls.h"
#include "service/core/resources.h"
#include "service/store/store.h"

namespace assistants {

struct ServerOptions {
  // host:port; port 0 picks a free port (see GatewayServer::port()).
  std::string listen = "127.0.0.1:50051";
  // TLS for the listening port (cert_file, key_file; ca_file set: clients
  // must present a certificate signed by it). Empty: plaintext.
  tls::ServerTlsOptions tls;
  // Threads for blocking work (store calls).
  size_t executor_threads = 4;
  // RunEvents stream settings (heartbeat interval, read-ahead).
  StreamOptions streams;
  // The tool-worker registry served by ToolRegistryService; null serves a
  // private one that accepts no registrations.
  tool_workers::ToolRegistry* tool_registry = nullptr;
  // Authentication, rate and size limits (see admission.h); the defaults
  // admit everyone as the default project.
  AdmissionOptions admission;
  // Server interceptors (one concern each: metrics, auth, ...), run in this
  // order after the built-in access log (access_log.h). Shared so the
  // options stay copyable; gRPC gets a forwarding factory for each.
  std::vector<
      std::shared_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
};

class GatewayServer {
 public:
  // Starts serving. Every pointer must outlive the server.
  static absl::StatusOr<std::unique_ptr<GatewayServer>> Start(
      const ServerOptions& options, Store* store, const Clock* clock,
      runs::RunEngine* engine, Timers* timers);
  ~GatewayServer();

  // The port actually bound.
  int port() const { return port_; }
  // Sampled by the metrics: RunEvents streams open now, and tasks waiting
  // for a thread of the blocking-work executor.
  size_t open_streams() const { return run_service_.open_streams(); }
  size_t executor_queue_depth() const { return executor_.queue_depth(); }
  // Flips health to NOT_SERVING, ends every RunEvents stream with a
  // `draining` event, stops the engine (runs stay resumable in the store),
  // stops accepting calls and waits up to `grace` for calls in flight
  // before cancelling them.
  void Shutdown(std::chrono::milliseconds grace);
  // Blocks until the server has shut down.
  void Wait();

 private:
  GatewayServer(const ServerOptions& options, Store* store, const Clock* clock,
                runs::RunEngine* engine, Timers* timers);

  Resources resources_;
  // Before the executor: its destructor runs the tasks still queued, and a
  // RunEvents open task reaches admission.
  Tenancy tenancy_;
  Admission admission_;
  Executor executor_;
  AssistantServiceImpl assistant_service_;
  ThreadServiceImpl thread_service_;
  MessageServiceImpl message_service_;
  runs::RunEngine* engine_;
  RunServiceImpl run_service_;
  // Used when ServerOptions names no registry.
  std::unique_ptr<tool_workers::ToolRegistry> own_registry_;
  ToolRegistryServiceImpl tool_registry_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace assistants

#endif  // SERVICE_API_SERVER_H_
