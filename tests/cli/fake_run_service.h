// An in-process RunService (and MessageService.ListMessages) that speaks the
// proto contract for one scripted run, for the CLI's tests: RunEvents replays
// the run's log from `after_sequence`, holds back everything after
// requires_action until SubmitToolOutputs arrives (as the run engine does), and
// can end a connection early (UNAVAILABLE, draining, silence) to exercise
// resumption.
#ifndef TESTS_CLI_FAKE_RUN_SERVICE_H_
#define TESTS_CLI_FAKE_RUN_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "assistants/v1/message.grpc.pb.h"
#include "assistants/v1/run_service.grpc.pb.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "tests/cli/seed_events.h"

namespace assistants::cli::cli_test {

// How one RunEvents call of the fake ends after `events` events.
struct Connection {
  // kClose ends the call with OK, even before `done`.
  // kCancelled: what a shutting-down gateway does to calls still open.
  enum class Ending { kUnavailable, kDraining, kSilence, kClose, kCancelled };
  int events = -1;  // -1: the whole log
  Ending ending = Ending::kClose;
};

// A RunService (plus ListMessages) serving one scripted run. RunEvents
// replays the log after `after_sequence` and holds back everything after
// requires_action until SubmitToolOutputs arrives, as the real engine would.
class FakeRunService final : public v1::RunService::Service,
                             public v1::MessageService::Service {
 public:
  // Serves `service` on 127.0.0.1 and returns the server; *target is set to
  // its address.
  static std::unique_ptr<grpc::Server> Serve(FakeRunService* service,
                                             std::string* target) {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(static_cast<v1::RunService::Service*>(service));
    builder.RegisterService(static_cast<v1::MessageService::Service*>(service));
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    *target = absl::StrCat("127.0.0.1:", port);
    return server;
  }

  explicit FakeRunService(std::vector<v1::RunEvent> log)
      : log_(std::move(log)) {}

  // Scripts how the n-th RunEvents call ends (later calls serve everything).
  void SetConnections(std::vector<Connection> connections) {
    connections_ = std::move(connections);
  }
  // The runs GetRun returns in turn (the last one repeats); GetRun does not
  // move past a requires_action run before the outputs are submitted.
  void SetPolledRuns(std::vector<v1::Run> runs) {
    polled_runs_ = std::move(runs);
  }
  // Whether events after requires_action wait for the submission (false:
  // the run is history).
  void set_gate(bool gate) { gate_ = gate; }
  void set_submit_status(grpc::Status status) {
    submit_status_ = std::move(status);
  }

  std::vector<v1::RunEventsRequest> stream_requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return stream_requests_;
  }
  std::vector<v1::SubmitToolOutputsRequest> submissions() {
    std::lock_guard<std::mutex> lock(mu_);
    return submissions_;
  }
  int get_run_calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return get_run_calls_;
  }
  // The request last received by a unary `method` ("CreateRun") that the
  // accessors above do not cover, or a default message.
  template <typename Request>
  Request last(const std::string& method) {
    std::lock_guard<std::mutex> lock(mu_);
    Request request;
    auto it = requests_.find(method);
    if (it != requests_.end()) request.ParseFromString(it->second);
    return request;
  }

  grpc::Status RunEvents(
      grpc::ServerContext* context, const v1::RunEventsRequest* request,
      grpc::ServerWriter<v1::RunEventsResponse>* writer) override {
    Connection connection;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const size_t n = stream_requests_.size();
      stream_requests_.push_back(*request);
      if (n < connections_.size()) connection = connections_[n];
    }
    int sent = 0;
    int64_t last = request->after_sequence();
    for (const v1::RunEvent& event : log_) {
      if (event.sequence() <= request->after_sequence()) continue;
      if (sent == connection.events) break;
      if (gate_ && event.sequence() > kSeedRequiresActionSequence &&
          !WaitForOutputs(context)) {
        return grpc::Status::CANCELLED;
      }
      v1::RunEventsResponse response;
      *response.mutable_event() = event;
      if (!writer->Write(response)) return grpc::Status::CANCELLED;
      last = event.sequence();
      ++sent;
    }
    if (sent != connection.events) return grpc::Status::OK;
    switch (connection.ending) {
      case Connection::Ending::kUnavailable:
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection reset");
      case Connection::Ending::kDraining: {
        // As the gateway: the event, then UNAVAILABLE with a RetryInfo.
        v1::RunEventsResponse response;
        response.mutable_event()->set_sequence(last);
        response.mutable_event()->set_event("draining");
        response.mutable_event()->mutable_draining();
        writer->Write(response);
        google::rpc::RetryInfo retry;
        retry.mutable_retry_delay()->set_nanos(5'000'000);
        google::rpc::Status details;
        details.set_code(grpc::StatusCode::UNAVAILABLE);
        details.set_message("The gateway is shutting down");
        details.add_details()->PackFrom(retry);
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, details.message(),
                            details.SerializeAsString());
      }
      case Connection::Ending::kSilence:
        while (!context->IsCancelled()) {
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        return grpc::Status::CANCELLED;
      case Connection::Ending::kClose:
        return grpc::Status::OK;
      case Connection::Ending::kCancelled:
        return grpc::Status::CANCELLED;
    }
    return grpc::Status::OK;
  }

  // Waits until outputs are submitted; false when the client went away (or
  // never answers), so a handler never outlives its test.
  bool WaitForOutputs(grpc::ServerContext* context) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(10);
    std::unique_lock<std::mutex> lock(mu_);
    while (submissions_.empty()) {
      // Cancellation is not signalled on cv_: look at it every few ms.
      if (context->IsCancelled() ||
          std::chrono::steady_clock::now() >= deadline) {
        return false;
      }
      cv_.wait_for(lock, std::chrono::milliseconds(10));
    }
    return true;
  }

  grpc::Status SubmitToolOutputs(
      grpc::ServerContext*, const v1::SubmitToolOutputsRequest* request,
      v1::SubmitToolOutputsResponse* response) override {
    if (!submit_status_.ok()) return submit_status_;
    {
      std::lock_guard<std::mutex> lock(mu_);
      submissions_.push_back(*request);
    }
    cv_.notify_all();
    *response->mutable_run() = SeedRun(v1::RUN_STATUS_QUEUED);
    return grpc::Status::OK;
  }

  grpc::Status GetRun(grpc::ServerContext*, const v1::GetRunRequest* request,
                      v1::GetRunResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++get_run_calls_;
    if (polled_runs_.empty()) {
      // Attach tests: the run is long over.
      *response->mutable_run() = SeedRun(v1::RUN_STATUS_COMPLETED);
      return grpc::Status::OK;
    }
    const size_t last = polled_runs_.size() - 1;
    // The run leaves requires_action once the outputs are in.
    if (polled_runs_[std::min(poll_index_, last)].status() ==
            v1::RUN_STATUS_REQUIRES_ACTION &&
        !submissions_.empty()) {
      ++poll_index_;
    }
    const v1::Run& run = polled_runs_[std::min(poll_index_, last)];
    *response->mutable_run() = run;
    if (run.status() != v1::RUN_STATUS_REQUIRES_ACTION) ++poll_index_;
    return grpc::Status::OK;
  }

  grpc::Status ListRuns(grpc::ServerContext*, const v1::ListRunsRequest*,
                        v1::ListRunsResponse* response) override {
    response->set_object("list");
    *response->add_data() = SeedRun(v1::RUN_STATUS_COMPLETED);
    return grpc::Status::OK;
  }

  grpc::Status CancelRun(grpc::ServerContext*, const v1::CancelRunRequest*,
                         v1::CancelRunResponse* response) override {
    *response->mutable_run() = SeedRun(v1::RUN_STATUS_CANCELLING);
    return grpc::Status::OK;
  }

  grpc::Status ListRunSteps(grpc::ServerContext*,
                            const v1::ListRunStepsRequest*,
                            v1::ListRunStepsResponse* response) override {
    response->set_object("list");
    for (const v1::RunEvent& event : log_) {
      if (event.event() == "thread.run.step.completed") {
        *response->add_data() = event.step();
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status CreateThreadAndRun(
      grpc::ServerContext*, const v1::CreateThreadAndRunRequest* request,
      v1::CreateThreadAndRunResponse* response) override {
    Keep("CreateThreadAndRun", *request);
    *response->mutable_run() = SeedRun(v1::RUN_STATUS_QUEUED);
    return grpc::Status::OK;
  }

  grpc::Status CreateRun(grpc::ServerContext*,
                         const v1::CreateRunRequest* request,
                         v1::CreateRunResponse* response) override {
    Keep("CreateRun", *request);
    *response->mutable_run() = SeedRun(v1::RUN_STATUS_QUEUED);
    return grpc::Status::OK;
  }

  grpc::Status UpdateRun(grpc::ServerContext*,
                         const v1::UpdateRunRequest* request,
                         v1::UpdateRunResponse* response) override {
    Keep("UpdateRun", *request);
    *response->mutable_run() = SeedRun(v1::RUN_STATUS_COMPLETED);
    *response->mutable_run()->mutable_metadata() = request->metadata();
    return grpc::Status::OK;
  }

  grpc::Status GetRunStep(grpc::ServerContext*,
                          const v1::GetRunStepRequest* request,
                          v1::GetRunStepResponse* response) override {
    Keep("GetRunStep", *request);
    for (const v1::RunEvent& event : log_) {
      if (event.event() == "thread.run.step.completed" &&
          event.step().id() == request->step_id()) {
        *response->mutable_step() = event.step();
        return grpc::Status::OK;
      }
    }
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such step");
  }

  grpc::Status GetMessage(grpc::ServerContext*,
                          const v1::GetMessageRequest* request,
                          v1::GetMessageResponse* response) override {
    Keep("GetMessage", *request);
    *response->mutable_message() =
        AssistantMessage(request->message_id(), kSeedAnswer);
    return grpc::Status::OK;
  }

  grpc::Status UpdateMessage(grpc::ServerContext*,
                             const v1::UpdateMessageRequest* request,
                             v1::UpdateMessageResponse* response) override {
    Keep("UpdateMessage", *request);
    *response->mutable_message() =
        AssistantMessage(request->message_id(), kSeedAnswer);
    *response->mutable_message()->mutable_metadata() = request->metadata();
    return grpc::Status::OK;
  }

  grpc::Status CreateMessage(grpc::ServerContext*,
                             const v1::CreateMessageRequest* request,
                             v1::CreateMessageResponse* response) override {
    Keep("CreateMessage", *request);
    v1::Message* message = response->mutable_message();
    message->set_id("msg_9");
    message->set_object("thread.message");
    message->set_thread_id(request->thread_id());
    message->set_role(request->message().role());
    message->add_content()->mutable_text()->set_value(
        request->message().text());
    return grpc::Status::OK;
  }

  grpc::Status DeleteMessage(grpc::ServerContext*,
                             const v1::DeleteMessageRequest* request,
                             v1::DeleteMessageResponse* response) override {
    Keep("DeleteMessage", *request);
    response->set_id(request->message_id());
    response->set_object("thread.message.deleted");
    response->set_deleted(true);
    return grpc::Status::OK;
  }

  grpc::Status ListMessages(grpc::ServerContext*,
                            const v1::ListMessagesRequest* request,
                            v1::ListMessagesResponse* response) override {
    // Newest first, as the default order: the answer, then the question.
    *response->add_data() = AssistantMessage("msg_2", kSeedAnswer);
    v1::Message* question = response->add_data();
    question->set_id("msg_1");
    question->set_role(v1::MESSAGE_ROLE_USER);
    question->add_content()->mutable_text()->set_value("What's AAPL at?");
    return grpc::Status::OK;
  }

 private:
  void Keep(const std::string& method,
            const google::protobuf::Message& request) {
    std::lock_guard<std::mutex> lock(mu_);
    requests_[method] = request.SerializeAsString();
  }

  const std::vector<v1::RunEvent> log_;
  std::vector<Connection> connections_;
  std::vector<v1::Run> polled_runs_;
  bool gate_ = true;
  grpc::Status submit_status_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<v1::RunEventsRequest> stream_requests_;
  std::vector<v1::SubmitToolOutputsRequest> submissions_;
  int get_run_calls_ = 0;
  size_t poll_index_ = 0;
  std::map<std::string, std::string> requests_;
};

}  // namespace assistants::cli::cli_test

#endif  // TESTS_CLI_FAKE_RUN_SERVICE_H_
