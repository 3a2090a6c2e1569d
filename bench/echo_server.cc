// bench-echo-server: the baseline of loadgen's unary figures. It serves
// assistants.v1.AssistantService/GetAssistant and
// assistants.v1.MessageService/CreateMessage with the gRPC callback API and
// answers on the callback thread with a fixed object of the shape the gateway
// returns (no storage, no validation, no executor hop), so
// "gateway - echo" is what the gateway adds to a unary call.
//
// Its server builder mirrors the gateway's (service/api/server.cc): the same
// channel arguments (keepalive, connection age), the health service and
// reflection. Like every server of the project it prints
// "bench-echo-server listening on HOST:PORT" once it serves, so
// test_support::ServerProcess can start it, and it exits on SIGTERM/SIGINT.
//
//   bench-echo-server [--listen=127.0.0.1:0]
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>

#include <cstdint>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "assistants/v1/assistant.grpc.pb.h"
#include "assistants/v1/message.grpc.pb.h"
#include "bench/weather_assistant.h"
#include "google/protobuf/util/json_util.h"
#include "service/api/channel_args.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:0",
          "host:port to serve gRPC on; port 0 picks a free port");

namespace {

namespace v1 = assistants::v1;

v1::Assistant TemplateAssistant() {
  v1::Assistant assistant;
  assistant.set_object("assistant");
  assistant.set_created_at(static_cast<int64_t>(std::time(nullptr)));
  if (!assistants::bench::FillWeatherAssistant(&assistant)) {
    std::abort();  // A constant: cannot happen.
  }
  return assistant;
}

// "<prefix>" + 24 hex digits (96 random bits), as the gateway's ids.
std::string NewId(const char* prefix) {
  thread_local std::mt19937_64 random(std::random_device{}());
  char digits[32];
  std::snprintf(digits, sizeof(digits), "%016llx%08llx",
                static_cast<unsigned long long>(random()),
                static_cast<unsigned long long>(random() & 0xffffffffULL));
  return std::string(prefix) + digits;
}

class EchoAssistants final : public v1::AssistantService::CallbackService {
 public:
  grpc::ServerUnaryReactor* GetAssistant(
      grpc::CallbackServerContext* context,
      const v1::GetAssistantRequest* request,
      v1::GetAssistantResponse* response) override {
    v1::Assistant* assistant = response->mutable_assistant();
    *assistant = template_;
    assistant->set_id(request->assistant_id());
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  const v1::Assistant template_ = TemplateAssistant();
};

class EchoMessages final : public v1::MessageService::CallbackService {
 public:
  grpc::ServerUnaryReactor* CreateMessage(
      grpc::CallbackServerContext* context,
      const v1::CreateMessageRequest* request,
      v1::CreateMessageResponse* response) override {
    v1::Message* message = response->mutable_message();
    message->set_id(NewId("msg_"));
    message->set_object("thread.message");
    message->set_created_at(static_cast<int64_t>(std::time(nullptr)));
    message->set_thread_id(request->thread_id());
    message->set_status(v1::MESSAGE_STATUS_COMPLETED);
    message->set_role(request->message().role());
    message->add_content()->mutable_text()->set_value(
        request->message().text());
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Baseline for loadgen: GetAssistant and CreateMessage answered with a "
      "fixed object.\nUsage: bench-echo-server [--listen=HOST:PORT]");
  absl::ParseCommandLine(argc, argv);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  EchoAssistants assistants;
  EchoMessages messages;
  const std::string listen = absl::GetFlag(FLAGS_listen);
  int port = 0;
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  assistants::AddGatewayChannelArguments(&builder);  // as the gateway
  builder.RegisterService(&assistants);
  builder.RegisterService(&messages);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::cerr << "bench-echo-server: cannot listen on " << listen << "\n";
    return 1;
  }
  std::cerr << "bench-echo-server listening on "
            << listen.substr(0, listen.rfind(':')) << ":" << port << std::endl;

  std::thread signal_waiter([&] {
    int signal_number = 0;
    sigwait(&signals, &signal_number);
    server->Shutdown(std::chrono::system_clock::now() +
                     std::chrono::seconds(1));
  });
  server->Wait();
  signal_waiter.join();
  return 0;
}
