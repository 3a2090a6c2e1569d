// The gateway's two roles, faked for the SDK's tests: a ToolRegistryService
// (serves on 127.0.0.1:0, checks the bearer token, records what workers send,
// answers scripted errors) and the InvokeTool client.
#ifndef TESTS_TOOL_WORKERS_SDK_FAKE_GATEWAY_H_
#define TESTS_TOOL_WORKERS_SDK_FAKE_GATEWAY_H_

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "assistants/v1/tool_worker.grpc.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"

namespace assistants::worker_sdk::fakes {

inline constexpr char kToken[] = "s3cret";
// Generous bound for things that happen in milliseconds; only reached when
// a test fails.
inline constexpr std::chrono::milliseconds kPatience{5000};

// A ToolRegistryService that records what workers send, checks their token
// and answers scripted errors. Heartbeats are asked for every 50 ms.
class FakeRegistry final
    : public assistants::v1::ToolRegistryService::CallbackService {
 public:
  FakeRegistry() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ~FakeRegistry() override { server_->Shutdown(); }

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  // The next RegisterWorker calls get these answers, in order; later ones
  // succeed.
  void FailRegistrations(std::vector<grpc::Status> answers) {
    std::lock_guard<std::mutex> lock(mu_);
    register_failures_ = std::move(answers);
  }
  // The next Heartbeat gets `answer`.
  void FailNextHeartbeat(grpc::Status answer) {
    std::lock_guard<std::mutex> lock(mu_);
    heartbeat_failure_ = std::move(answer);
  }

  std::vector<assistants::v1::RegisterWorkerRequest> registrations() const {
    std::lock_guard<std::mutex> lock(mu_);
    return registrations_;
  }
  std::vector<assistants::v1::HeartbeatRequest> heartbeats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return heartbeats_;
  }
  std::vector<assistants::v1::UnregisterWorkerRequest> unregistrations() const {
    std::lock_guard<std::mutex> lock(mu_);
    return unregistrations_;
  }

  // Waits until `done` holds. It runs with the registry locked, so it may use
  // the *_count() and last_heartbeat() accessors, which only it may use.
  bool WaitUntil(const std::function<bool()>& done) {
    std::unique_lock<std::mutex> lock(mu_);
    return changed_.wait_for(lock, kPatience, done);
  }
  size_t registration_count() const { return registrations_.size(); }
  size_t heartbeat_count() const { return heartbeats_.size(); }
  size_t unregistration_count() const { return unregistrations_.size(); }
  const assistants::v1::HeartbeatRequest& last_heartbeat() const {
    return heartbeats_.back();
  }

  grpc::ServerUnaryReactor* RegisterWorker(
      grpc::CallbackServerContext* context,
      const assistants::v1::RegisterWorkerRequest* request,
      assistants::v1::RegisterWorkerResponse* response) override {
    return Answer(context, [&] {
      registrations_.push_back(*request);
      if (!register_failures_.empty()) {
        grpc::Status failure = register_failures_.front();
        register_failures_.erase(register_failures_.begin());
        return failure;
      }
      response->set_lease_id("lease-" + std::to_string(registrations_.size()));
      response->set_lease_ttl_ms(1000);
      response->set_heartbeat_interval_ms(50);
      return grpc::Status::OK;
    });
  }

  grpc::ServerUnaryReactor* Heartbeat(
      grpc::CallbackServerContext* context,
      const assistants::v1::HeartbeatRequest* request,
      assistants::v1::HeartbeatResponse*) override {
    return Answer(context, [&] {
      heartbeats_.push_back(*request);
      grpc::Status answer = heartbeat_failure_.value_or(grpc::Status::OK);
      heartbeat_failure_.reset();
      return answer;
    });
  }

  grpc::ServerUnaryReactor* UnregisterWorker(
      grpc::CallbackServerContext* context,
      const assistants::v1::UnregisterWorkerRequest* request,
      assistants::v1::UnregisterWorkerResponse*) override {
    return Answer(context, [&] {
      unregistrations_.push_back(*request);
      return grpc::Status::OK;
    });
  }

 private:
  // Checks the token, then records and answers under the lock.
  template <typename Handle>
  grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* context,
                                   Handle handle) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    const auto& metadata = context->client_metadata();
    auto authorization = metadata.find("authorization");
    if (authorization == metadata.end() ||
        std::string(authorization->second.data(),
                    authorization->second.size()) !=
            std::string("Bearer ") + kToken) {
      reactor->Finish(
          grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "bad token"));
      return reactor;
    }
    grpc::Status status;
    {
      std::lock_guard<std::mutex> lock(mu_);
      status = handle();
    }
    changed_.notify_all();
    reactor->Finish(status);
    return reactor;
  }

  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::vector<grpc::Status> register_failures_;
  std::optional<grpc::Status> heartbeat_failure_;
  std::vector<assistants::v1::RegisterWorkerRequest> registrations_;
  std::vector<assistants::v1::HeartbeatRequest> heartbeats_;
  std::vector<assistants::v1::UnregisterWorkerRequest> unregistrations_;
};

// What an InvokeTool call got back.
struct Invocation {
  grpc::Status status;
  std::string output;
};

// Calls InvokeTool on the worker at 127.0.0.1:`port`, as the gateway does.
inline Invocation Invoke(int port, const std::string& tool,
                         const std::string& arguments,
                         const std::string& key = "",
                         std::chrono::milliseconds timeout = kPatience) {
  auto stub = assistants::v1::ToolWorkerService::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  assistants::v1::InvokeToolRequest request;
  request.set_tool_name(tool);
  request.set_arguments(arguments);
  request.set_idempotency_key(key);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  assistants::v1::InvokeToolResponse response;
  Invocation result;
  result.status = stub->InvokeTool(&context, request, &response);
  result.output = response.output();
  return result;
}

// The google.rpc.ErrorInfo in a status's grpc-status-details-bin, if any.
inline std::optional<google::rpc::ErrorInfo> ErrorInfoOf(
    const grpc::Status& status) {
  google::rpc::Status details;
  if (!details.ParseFromString(status.error_details())) return std::nullopt;
  for (const google::protobuf::Any& detail : details.details()) {
    google::rpc::ErrorInfo info;
    if (detail.UnpackTo(&info)) return info;
  }
  return std::nullopt;
}

// A registered schema back as JSON.
inline nlohmann::json StructToJson(const google::protobuf::Struct& value) {
  std::string text;
  if (!google::protobuf::util::MessageToJsonString(value, &text).ok()) {
    return nullptr;
  }
  return nlohmann::json::parse(text);
}

}  // namespace assistants::worker_sdk::fakes

#endif  // TESTS_TOOL_WORKERS_SDK_FAKE_GATEWAY_H_
