#include "service/api/server.h"

#include "absl/strings/str_cat.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "service/api/channel_args.h"
#include "service/common/errors.h"

namespace assistants {

GatewayServer::GatewayServer(const ServerOptions& options, Store* store,
                             const Clock* clock, runs::RunEngine* engine,
                             Timers* timers)
    : resources_(store, clock),
      executor_(options.executor_threads),
      assistant_service_(&resources_, &executor_),
      thread_service_(&resources_, &executor_),
      message_service_(&resources_, &executor_),
      engine_(engine),
      run_service_(engine, &executor_, timers, clock, options.streams),
      own_registry_(options.tool_registry != nullptr
                        ? nullptr
                        : std::make_unique<tool_workers::ToolRegistry>(
                              tool_workers::RegistryOptions(), clock)),
      tool_registry_service_(options.tool_registry != nullptr
                                 ? options.tool_registry
                                 : own_registry_.get()) {}

absl::StatusOr<std::unique_ptr<GatewayServer>> GatewayServer::Start(
    const ServerOptions& options, Store* store, const Clock* clock,
    runs::RunEngine* engine, Timers* timers) {
  std::unique_ptr<GatewayServer> gateway(
      new GatewayServer(options, store, clock, engine, timers));

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, grpc::InsecureServerCredentials(),
                           &gateway->port_);
  AddGatewayChannelArguments(&builder);
  if (!options.interceptors.empty()) {
    std::vector<
        std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
        interceptors;
    for (const auto& make : options.interceptors)
      interceptors.push_back(make());
    builder.experimental().SetInterceptorCreators(std::move(interceptors));
  }
  builder.RegisterService(&gateway->assistant_service_);
  builder.RegisterService(&gateway->thread_service_);
  builder.RegisterService(&gateway->message_service_);
  builder.RegisterService(&gateway->run_service_);
  builder.RegisterService(&gateway->tool_registry_service_);
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
