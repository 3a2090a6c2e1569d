// RunService and ToolRegistryService until the run engine and the tool-worker
// registry land: every RPC answers UNIMPLEMENTED with reason NOT_IMPLEMENTED
// and a message naming the missing capability, so clients generated from the
// full contract get a clear answer instead of a hang or a generic error.
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

constexpr absl::string_view kRunEngine = "run engine";
constexpr absl::string_view kRegistry = "tool-worker registry";

// A stream that ends at once with `status`.
class FinishedWriter final
    : public grpc::ServerWriteReactor<v1::RunEventsResponse> {
 public:
  explicit FinishedWriter(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

#define NOT_IMPLEMENTED(Service, Method, capability)                    \
  grpc::ServerUnaryReactor* Service::Method(                            \
      grpc::CallbackServerContext* context, const v1::Method##Request*, \
      v1::Method##Response*) {                                          \
    return FinishUnary(context, #Method, capability);                   \
  }

NOT_IMPLEMENTED(RunServiceUnimplemented, CreateRun, kRunEngine)
NOT_IMPLEMENTED(RunServiceUnimplemented, CreateThreadAndRun, kRunEngine)
NOT_IMPLEMENTED(RunServiceUnimplemented, GetRun, kRunEngine)
NOT_IMPLEMENTED(RunServiceUnimplemented, ListRuns, kRunEngine)
NOT_IMPLEMENTED(RunServiceUnimplemented, UpdateRun, kRunEngine)
NOT_IMPLEMENTED(RunServiceUnimplemented, CancelRun, kRunEngine)
NOT_IMPLEMENTED(RunServiceUnimplemented, SubmitToolOutputs, kRunEngine)
NOT_IMPLEMENTED(RunServiceUnimplemented, GetRunStep, kRunEngine)
NOT_IMPLEMENTED(RunServiceUnimplemented, ListRunSteps, kRunEngine)
NOT_IMPLEMENTED(ToolRegistryServiceUnimplemented, RegisterWorker, kRegistry)
NOT_IMPLEMENTED(ToolRegistryServiceUnimplemented, Heartbeat, kRegistry)
NOT_IMPLEMENTED(ToolRegistryServiceUnimplemented, UnregisterWorker, kRegistry)
NOT_IMPLEMENTED(ToolRegistryServiceUnimplemented, ListTools, kRegistry)
NOT_IMPLEMENTED(ToolRegistryServiceUnimplemented, ListWorkers, kRegistry)

#undef NOT_IMPLEMENTED

grpc::ServerWriteReactor<v1::RunEventsResponse>*
RunServiceUnimplemented::RunEvents(grpc::CallbackServerContext* context,
                                   const v1::RunEventsRequest*) {
  return new FinishedWriter(NotImplemented("RunEvents", kRunEngine));
}

}  // namespace assistants
