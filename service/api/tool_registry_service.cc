// ToolRegistryService: the registration token comes from the
// `authorization: Bearer <token>` metadata; everything else is the
// registry's.
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

}  // namespace

grpc::ServerUnaryReactor* ToolRegistryServiceImpl::RegisterWorker(
    grpc::CallbackServerContext* context,
    const v1::RegisterWorkerRequest* request,
    v1::RegisterWorkerResponse* response) {
  return Answer(context, registry_->Register(BearerToken(context), *request),
                response);
}

grpc::ServerUnaryReactor* ToolRegistryServiceImpl::Heartbeat(
    grpc::CallbackServerContext* context, const v1::HeartbeatRequest* request,
    v1::HeartbeatResponse* response) {
  return Answer(context, registry_->Heartbeat(BearerToken(context), *request),
                response);
}

grpc::ServerUnaryReactor* ToolRegistryServiceImpl::UnregisterWorker(
    grpc::CallbackServerContext* context,
    const v1::UnregisterWorkerRequest* request,
    v1::UnregisterWorkerResponse* response) {
  absl::Status status = registry_->Unregister(BearerToken(context), *request);
  absl::StatusOr<v1::UnregisterWorkerResponse> result =
      status.ok() ? absl::StatusOr<v1::UnregisterWorkerResponse>(
                        v1::UnregisterWorkerResponse())
                  : absl::StatusOr<v1::UnregisterWorkerResponse>(status);
  return Answer(context, std::move(result), response);
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
