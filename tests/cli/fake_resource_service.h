// In-process fakes for the CLI's resource commands: AssistantService,
// ThreadService and ToolRegistryService answering canned objects and
// remembering each request, plus a server interceptor that records the
// metadata every call arrived with (authorization, x-request-id), so tests
// can check what assistantsctl sends without a gateway.
#ifndef TESTS_CLI_FAKE_RESOURCE_SERVICE_H_
#define TESTS_CLI_FAKE_RESOURCE_SERVICE_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "assistants/v1/assistant.grpc.pb.h"
#include "assistants/v1/thread.grpc.pb.h"
#include "assistants/v1/tool_worker.grpc.pb.h"
#include "tests/cli/fake_run_service.h"

namespace assistants::cli::cli_test {

// What one call carried in its initial metadata ("" when absent).
struct CallMetadata {
  std::string method;  // "/assistants.v1.RunService/GetRun"
  std::string authorization;
  std::string request_id;
};

// Records every call's metadata; install with Factory() on the server.
class MetadataRecorder {
 public:
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
  Factory() {
    return std::make_unique<InterceptorFactory>(this);
  }

  std::vector<CallMetadata> calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }

 private:
  class Interceptor final : public grpc::experimental::Interceptor {
   public:
    Interceptor(MetadataRecorder* recorder, std::string method)
        : recorder_(recorder), method_(std::move(method)) {}

    void Intercept(
        grpc::experimental::InterceptorBatchMethods* methods) override {
      if (methods->QueryInterceptionHookPoint(
              grpc::experimental::InterceptionHookPoints::
                  POST_RECV_INITIAL_METADATA)) {
        CallMetadata call;
        call.method = method_;
        for (const auto& [key, value] : *methods->GetRecvInitialMetadata()) {
          const std::string name(key.data(), key.size());
          if (name == "authorization") {
            call.authorization.assign(value.data(), value.size());
          } else if (name == "x-request-id") {
            call.request_id.assign(value.data(), value.size());
          }
        }
        std::lock_guard<std::mutex> lock(recorder_->mu_);
        recorder_->calls_.push_back(std::move(call));
      }
      methods->Proceed();
    }

   private:
    MetadataRecorder* recorder_;
    std::string method_;
  };

  class InterceptorFactory final
      : public grpc::experimental::ServerInterceptorFactoryInterface {
   public:
    explicit InterceptorFactory(MetadataRecorder* recorder)
        : recorder_(recorder) {}
    grpc::experimental::Interceptor* CreateServerInterceptor(
        grpc::experimental::ServerRpcInfo* info) override {
      return new Interceptor(recorder_, info->method());
    }

   private:
    MetadataRecorder* recorder_;
  };

  std::mutex mu_;
  std::vector<CallMetadata> calls_;
};

// Assistants, threads and the tool registry with canned answers. Each
// request is kept by method name ("UpdateThread") for the test to inspect.
class FakeResourceService final : public v1::AssistantService::Service,
                                  public v1::ThreadService::Service,
                                  public v1::ToolRegistryService::Service {
 public:
  // The request last received by `method`, or a default message.
  template <typename Request>
  Request last(const std::string& method) {
    std::lock_guard<std::mutex> lock(mu_);
    Request request;
    auto it = requests_.find(method);
    if (it != requests_.end()) request.ParseFromString(it->second);
    return request;
  }

  grpc::Status GetAssistant(grpc::ServerContext*,
                            const v1::GetAssistantRequest* request,
                            v1::GetAssistantResponse* response) override {
    Keep("GetAssistant", *request);
    v1::Assistant* assistant = response->mutable_assistant();
    assistant->set_id(request->assistant_id());
    assistant->set_object("assistant");
    assistant->set_model("gpt-4o");
    return grpc::Status::OK;
  }

  grpc::Status CreateAssistant(grpc::ServerContext*,
                               const v1::CreateAssistantRequest* request,
                               v1::CreateAssistantResponse* response) override {
    Keep("CreateAssistant", *request);
    v1::Assistant* assistant = response->mutable_assistant();
    assistant->set_id("asst_1");
    assistant->set_object("assistant");
    assistant->set_model(request->model());
    return grpc::Status::OK;
  }

  grpc::Status UpdateAssistant(grpc::ServerContext*,
                               const v1::UpdateAssistantRequest* request,
                               v1::UpdateAssistantResponse* response) override {
    Keep("UpdateAssistant", *request);
    v1::Assistant* assistant = response->mutable_assistant();
    assistant->set_id(request->assistant_id());
    assistant->set_object("assistant");
    assistant->set_model(request->model());
    return grpc::Status::OK;
  }

  grpc::Status CreateThread(grpc::ServerContext*,
                            const v1::CreateThreadRequest* request,
                            v1::CreateThreadResponse* response) override {
    Keep("CreateThread", *request);
    v1::Thread* thread = response->mutable_thread();
    thread->set_id("thread_1");
    thread->set_object("thread");
    thread->set_created_at(1700000000);
    *thread->mutable_metadata() = request->metadata();
    return grpc::Status::OK;
  }

  grpc::Status UpdateThread(grpc::ServerContext*,
                            const v1::UpdateThreadRequest* request,
                            v1::UpdateThreadResponse* response) override {
    Keep("UpdateThread", *request);
    v1::Thread* thread = response->mutable_thread();
    thread->set_id(request->thread_id());
    thread->set_object("thread");
    thread->set_created_at(1700000000);
    *thread->mutable_metadata() = request->metadata();
    return grpc::Status::OK;
  }

  grpc::Status ListWorkers(grpc::ServerContext*,
                           const v1::ListWorkersRequest* request,
                           v1::ListWorkersResponse* response) override {
    Keep("ListWorkers", *request);
    v1::Worker* worker = response->add_workers();
    worker->set_worker_id("stock-1");
    worker->set_endpoint("127.0.0.1:50061");
    worker->set_health(v1::WORKER_HEALTH_SERVING);
    worker->set_in_flight(2);
    *worker->add_tools() = StockTool();
    return grpc::Status::OK;
  }

  grpc::Status ListTools(grpc::ServerContext*,
                         const v1::ListToolsRequest* request,
                         v1::ListToolsResponse* response) override {
    Keep("ListTools", *request);
    v1::RegisteredTool* tool = response->add_tools();
    *tool->mutable_tool() = StockTool();
    tool->add_worker_ids("stock-1");
    return grpc::Status::OK;
  }

 private:
  static v1::WorkerTool StockTool() {
    v1::WorkerTool tool;
    tool.mutable_function()->set_name("get_stock_price");
    tool.mutable_function()->set_description("Latest price");
    tool.set_timeout_ms(5000);
    tool.set_max_concurrency(4);
    return tool;
  }

  void Keep(const std::string& method,
            const google::protobuf::Message& request) {
    std::lock_guard<std::mutex> lock(mu_);
    requests_[method] = request.SerializeAsString();
  }

  std::mutex mu_;
  std::map<std::string, std::string> requests_;
};

// Serves `runs` (RunService, MessageService) and `resources` on 127.0.0.1
// with `recorder` seeing every call; *target is set to the address.
inline std::unique_ptr<grpc::Server> ServeAll(FakeRunService* runs,
                                              FakeResourceService* resources,
                                              MetadataRecorder* recorder,
                                              std::string* target) {
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(static_cast<v1::RunService::Service*>(runs));
  builder.RegisterService(static_cast<v1::MessageService::Service*>(runs));
  builder.RegisterService(
      static_cast<v1::AssistantService::Service*>(resources));
  builder.RegisterService(static_cast<v1::ThreadService::Service*>(resources));
  builder.RegisterService(
      static_cast<v1::ToolRegistryService::Service*>(resources));
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(recorder->Factory());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  *target = absl::StrCat("127.0.0.1:", port);
  return server;
}

}  // namespace assistants::cli::cli_test

#endif  // TESTS_CLI_FAKE_RESOURCE_SERVICE_H_
