// The WorkerTransport seam: one InvokeTool call to one worker replica. The
// dispatcher decides where and whether to call; the transport only calls.
// GrpcWorkerTransport is the real one; tests use a scripted fake.
#ifndef TOOL_WORKERS_WORKER_TRANSPORT_H_
#define TOOL_WORKERS_WORKER_TRANSPORT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "assistants/v1/tool_worker.grpc.pb.h"
#include "grpcpp/security/credentials.h"
#include "service/common/clock.h"

namespace assistants::tool_workers {

// Reason a worker puts in its UNAVAILABLE answer when it refused a call
// without running it (draining): safe to retry elsewhere for any tool.
inline constexpr absl::string_view kCallNotStarted = "CALL_NOT_STARTED";

class WorkerTransport {
 public:
  // `status` carries the worker's code and message (and its ErrorInfo
  // reason, when it sent one); `output` is set when status is OK.
  using Done =
      std::function<void(const absl::Status& status, std::string output)>;
  virtual ~WorkerTransport() = default;
  // Starts the call; `done` runs exactly once on any thread (possibly
  // before Invoke returns). `deadline_ms` is on the transport's Clock.
  // Returns a function that cancels the call (safe to call any time).
  virtual std::function<void()> Invoke(const std::string& endpoint,
                                       const v1::InvokeToolRequest& request,
                                       int64_t deadline_ms, Done done) = 0;
};

// InvokeTool over gRPC (callback API), one channel per endpoint.
class GrpcWorkerTransport : public WorkerTransport {
 public:
  // Every worker is dialled with `credentials` (TLS, with a client
  // certificate for workers that demand one; see service/common/tls.h).
  explicit GrpcWorkerTransport(
      const Clock* clock,
      std::shared_ptr<grpc::ChannelCredentials> credentials =
          grpc::InsecureChannelCredentials())
      : clock_(clock), credentials_(std::move(credentials)) {}
  std::function<void()> Invoke(const std::string& endpoint,
                               const v1::InvokeToolRequest& request,
                               int64_t deadline_ms, Done done) override;

 private:
  std::shared_ptr<v1::ToolWorkerService::Stub> StubFor(
      const std::string& endpoint);

  const Clock* clock_;
  const std::shared_ptr<grpc::ChannelCredentials> credentials_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<v1::ToolWorkerService::Stub>>
      stubs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace assistants::tool_workers

#endif  // TOOL_WORKERS_WORKER_TRANSPORT_H_
