#include "service/api/server.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "service/api/access_log.h"
#include "service/api/channel_args.h"
#include "service/common/errors.h"

namespace assistants {
namespace {

// gRPC owns the factories it is given; this one lends it a shared factory.
class SharedInterceptorFactory
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit SharedInterceptorFactory(
      std::shared_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
          factory)
      : factory_(std::move(factory)) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return factory_->CreateServerInterceptor(info);
  }

 private:
  std::shared_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
      factory_;
};

}  // namespace

GatewayServer::GatewayServer(const ServerOptions& options, Store* store,
                             const Clock* clock, runs::RunEngine* engine,
                             Timers* timers)
    : resources_(store, clock),
      tenancy_(store),
      admission_(options.admission, &tenancy_),
      executor_(options.executor_threads),
      assistant_service_(&resources_, &executor_, &admission_),
      thread_service_(&resources_, &executor_, &admission_),
      message_service_(&resources_, &executor_, &admission_),
      engine_(engine),
      run_service_(engine, &executor_, timers, clock, &admission_,
                   options.streams),
      own_registry_(options.tool_registry != nullptr
                        ? nullptr
                        : std::make_unique<tool_workers::ToolRegistry>(
                              tool_workers::RegistryOptions(), clock)),
      tool_registry_service_(options.tool_registry != nullptr
                                 ? options.tool_registry
                                 : own_registry_.get(),
                             &executor_, &admission_) {}

absl::StatusOr<std::unique_ptr<GatewayServer>> GatewayServer::Start(
    const ServerOptions& options, Store* store, const Clock* clock,
    runs::RunEngine* engine, Timers* timers) {
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      tls::ServerCredentials(options.tls);
  if (!credentials.ok()) return credentials.status();
  std::unique_ptr<GatewayServer> gateway(
      new GatewayServer(options, store, clock, engine, timers));

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, *credentials, &gateway->port_);
  AddGatewayChannelArguments(&builder);
  if (options.admission.max_request_bytes > 0) {
    // Room above the limit, so requests a little over it get admission's
    // typed REQUEST_TOO_LARGE rather than the transport's bare error.
    constexpr size_t kSlack = 64 * 1024;
    builder.SetMaxReceiveMessageSize(static_cast<int>(std::min<size_t>(
        options.admission.max_request_bytes + kSlack, INT32_MAX)));
  }
  builder.RegisterService(&gateway->assistant_service_);
  builder.RegisterService(&gateway->thread_service_);
  builder.RegisterService(&gateway->message_service_);
  builder.RegisterService(&gateway->run_service_);
  builder.RegisterService(&gateway->tool_registry_service_);
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(std::make_unique<SharedInterceptorFactory>(
      MakeAccessLogInterceptorFactory()));
  for (const auto& factory : options.interceptors) {
    interceptors.push_back(std::make_unique<SharedInterceptorFactory>(factory));
  }
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  gateway->server_ = builder.BuildAndStart();
  if (gateway->server_ == nullptr || gateway->port_ == 0) {
    return MakeError(absl::StatusCode::kUnavailable, "LISTEN_FAILED",
                     absl::StrCat("cannot listen on ", options.listen),
                     {{"listen", options.listen}});
  }
  return gateway;
}

GatewayServer::~GatewayServer() {
  if (server_ != nullptr) {
    server_->Shutdown();
    server_->Wait();
  }
}

void GatewayServer::Shutdown(std::chrono::milliseconds grace) {
  if (grpc::HealthCheckServiceInterface* health =
          server_->GetHealthCheckService()) {
    health->Shutdown();
  }
  run_service_.DrainStreams();
  engine_->Stop();
  server_->Shutdown(std::chrono::system_clock::now() + grace);
}

void GatewayServer::Wait() { server_->Wait(); }

}  // namespace assistants
