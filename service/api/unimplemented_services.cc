// ToolRegistryService until the tool-worker registry lands: every RPC answers
// UNIMPLEMENTED with reason NOT_IMPLEMENTED and a message naming the missing
// capability, so clients generated from the full contract get a clear answer
// instead of a hang or a generic error.
#include "absl/strings/str_cat.h"
#include "service/api/services.h"
#include "service/api/status_mapping.h"
#include "service/common/errors.h"

namespace assistants {
namespace {

grpc::Status NotImplemented(absl::string_view method,
                            absl::string_view capability) {
  return ToGrpcStatus(MakeError(
      absl::StatusCode::kUnimplemented, "NOT_IMPLEMENTED",
      absl::StrCat(method, " is not implemented yet: it needs the ", capability,
                   ", which this gateway version does not have."),
      {{"method", std::string(method)}}));
}

grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* context,
                                      absl::string_view method,
                                      absl::string_view capability) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(NotImplemented(method, capability));
  return reactor;
}

constexpr absl::string_view kRegistry = "tool-worker registry";

}  // namespace

#define NOT_IMPLEMENTED(Service, Method, capability)                    \
  grpc::ServerUnaryReactor* Service::Method(                            \
      grpc::CallbackServerContext* context, const v1::Method##Request*, \
      v1::Method##Response*) {                                          \
    return FinishUnary(context, #Method, capability);                   \
  }

NOT_IMPLEMENTED(ToolRegistryServiceUnimplemented, RegisterWorker, kRegistry)
NOT_IMPLEMENTED(ToolRegistryServiceUnimplemented, Heartbeat, kRegistry)
NOT_IMPLEMENTED(ToolRegistryServiceUnimplemented, UnregisterWorker, kRegistry)
NOT_IMPLEMENTED(ToolRegistryServiceUnimplemented, ListTools, kRegistry)
NOT_IMPLEMENTED(ToolRegistryServiceUnimplemented, ListWorkers, kRegistry)

#undef NOT_IMPLEMENTED

}  // namespace assistants
