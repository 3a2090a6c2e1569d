// ToolRegistryService: the registration token comes from the
// `authorization: Bearer <token>` metadata; everything else is the
// registry's. Worker RPCs on a shared registry run on the executor.
#include "absl/strings/str_cat.h"
#include "service/api/services.h"
#include "service/api/status_mapping.h"

namespace assistants {
namespace {

std::string BearerToken(const grpc::CallbackServerContext* context) {
  return std::string(BearerCredential(*context).value_or(""));
}

template <typename Response>
grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* context,
                                 absl::StatusOr<Response> result,
                                 Response* response) {
  if (result.ok()) *response = *std::move(result);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(result.status()));
  return reactor;
}

// Runs `call` (a registry method returning StatusOr<Response>) and
// answers with its result: inline when the registry is this process's
// alone, on `executor` when it writes to the shared store (blocking I/O
// never runs on a callback thread).
template <typename Response, typename Call>
grpc::ServerUnaryReactor* Run(const tool_workers::ToolRegistry& registry,
                              Executor* executor,
                              grpc::CallbackServerContext* context,
                              Response* response, Call call) {
  if (!registry.shared()) return Answer(context, call(), response);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  executor->Schedule([reactor, response, call = std::move(call)]() mutable {
    absl::StatusOr<Response> result = call();
    if (result.ok()) *response = *std::move(result);
    reactor->Finish(ToGrpcStatus(result.status()));
  });
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* ToolRegistryServiceImpl::RegisterWorker(
    grpc::CallbackServerContext* context,
    const v1::RegisterWorkerRequest* request,
    v1::RegisterWorkerResponse* response) {
  return Run(*registry_, executor_, context, response,
             [registry = registry_, token = BearerToken(context), request] {
               return registry->Register(token, *request);
             });
}

grpc::ServerUnaryReactor* ToolRegistryServiceImpl::Heartbeat(
    grpc::CallbackServerContext* context, const v1::HeartbeatRequest* request,
    v1::HeartbeatResponse* response) {
  return Run(*registry_, executor_, context, response,
             [registry = registry_, token = BearerToken(context), request] {
               return registry->Heartbeat(token, *request);
             });
}

grpc::ServerUnaryReactor* ToolRegistryServiceImpl::UnregisterWorker(
    grpc::CallbackServerContext* context,
    const v1::UnregisterWorkerRequest* request,
    v1::UnregisterWorkerResponse* response) {
  return Run(*registry_, executor_, context, response,
             [registry = registry_, token = BearerToken(context),
              request]() -> absl::StatusOr<v1::UnregisterWorkerResponse> {
               absl::Status status = registry->Unregister(token, *request);
               if (!status.ok()) return status;
               return v1::UnregisterWorkerResponse();
             });
}

grpc::ServerUnaryReactor* ToolRegistryServiceImpl::ListTools(
    grpc::CallbackServerContext* context, const v1::ListToolsRequest*,
    v1::ListToolsResponse* response) {
  static const std::string* const kMethod = new std::string(
      absl::StrCat("/", Proto::service_full_name(), "/ListTools"));
  if (absl::Status admitted =
          admission_->Authenticate(*context, *kMethod).status();
      !admitted.ok()) {
    return Answer(context, absl::StatusOr<v1::ListToolsResponse>(admitted),
                  response);
  }
  return Answer(context,
                absl::StatusOr<v1::ListToolsResponse>(registry_->ListTools()),
                response);
}

grpc::ServerUnaryReactor* ToolRegistryServiceImpl::ListWorkers(
    grpc::CallbackServerContext* context, const v1::ListWorkersRequest*,
    v1::ListWorkersResponse* response) {
  static const std::string* const kMethod = new std::string(
      absl::StrCat("/", Proto::service_full_name(), "/ListWorkers"));
  if (absl::Status admitted =
          admission_->Authenticate(*context, *kMethod).status();
      !admitted.ok()) {
    return Answer(context, absl::StatusOr<v1::ListWorkersResponse>(admitted),
                  response);
  }
  return Answer(
      context,
      absl::StatusOr<v1::ListWorkersResponse>(registry_->ListWorkers()),
      response);
}

}  // namespace assistants
