#include "tool_workers/worker_transport.h"

#include <chrono>
#include <utility>

#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "service/common/errors.h"

namespace assistants::tool_workers {
namespace {

// The worker's status, keeping its ErrorInfo reason (CALL_NOT_STARTED tells
// the dispatcher a retry cannot run the tool twice).
absl::Status FromGrpc(const grpc::Status& status) {
  const auto code = static_cast<absl::StatusCode>(status.error_code());
  google::rpc::Status details;
  if (!status.error_details().empty() &&
      details.ParseFromString(status.error_details())) {
    for (const google::protobuf::Any& any : details.details()) {
      google::rpc::ErrorInfo info;
      if (any.UnpackTo(&info) && !info.reason().empty()) {
        return MakeError(code, info.reason(), status.error_message());
      }
    }
  }
  return absl::Status(code, status.error_message());
}

struct Attempt {
  grpc::ClientContext context;
  v1::InvokeToolRequest request;
  v1::InvokeToolResponse response;
  WorkerTransport::Done done;
};

}  // namespace

std::shared_ptr<v1::ToolWorkerService::Stub> GrpcWorkerTransport::StubFor(
    const std::string& endpoint) {
  absl::MutexLock lock(&mu_);
  auto& stub = stubs_[endpoint];
  if (stub == nullptr) {
    grpc::ChannelArguments args;
    // Replies larger than the output limit are refused by the dispatcher;
    // this only keeps a broken worker from costing unbounded memory.
    args.SetMaxReceiveMessageSize(8 * 1024 * 1024);
    // Notice a silently dead worker host between calls.
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
    stub = v1::ToolWorkerService::NewStub(
        grpc::CreateCustomChannel(endpoint, credentials_, args));
  }
  return stub;
}

std::function<void()> GrpcWorkerTransport::Invoke(
    const std::string& endpoint, const v1::InvokeToolRequest& request,
    int64_t deadline_ms, Done done) {
  auto attempt = std::make_shared<Attempt>();
  attempt->request = request;
  attempt->done = std::move(done);
  attempt->context.set_deadline(
      std::chrono::system_clock::now() +
      std::chrono::milliseconds(deadline_ms - clock_->NowMillis()));
  std::shared_ptr<v1::ToolWorkerService::Stub> stub = StubFor(endpoint);
  stub->async()->InvokeTool(
      &attempt->context, &attempt->request, &attempt->response,
      [attempt, stub](grpc::Status status) {
        absl::Status result = FromGrpc(status);
        std::string output =
            result.ok() ? std::move(*attempt->response.mutable_output()) : "";
        attempt->done(result, std::move(output));
      });
  return [attempt] { attempt->context.TryCancel(); };
}

}  // namespace assistants::tool_workers
