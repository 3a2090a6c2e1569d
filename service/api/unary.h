// The shape of every unary handler: admit the call (admission.h), hop off
// the gRPC callback thread onto the executor (store calls block), honour
// cancellation and the deadline, call the core, and finish with the mapped
// status. Handlers stay one line.
#ifndef SERVICE_API_UNARY_H_
#define SERVICE_API_UNARY_H_

#include <chrono>
#include <utility>

#include "absl/status/statusor.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/server_callback.h"
#include "service/api/admission.h"
#include "service/api/status_mapping.h"
#include "service/common/errors.h"
#include "service/common/executor.h"

namespace assistants {

// Admits the call of `method` (authentication and rate limit on the
// callback thread, where a refusal costs no hop; the request checks on the
// executor), then runs `call(caller)` (returning absl::StatusOr<Response>)
// on `executor` and answers the RPC with its result moved into `response`.
template <typename Request, typename Response, typename Call>
grpc::ServerUnaryReactor* HandleUnary(grpc::CallbackServerContext* context,
                                      absl::string_view method,
                                      Executor* executor, Admission* admission,
                                      const Request* request,
                                      Response* response, Call call) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<auth::Principal> caller =
      admission->Authenticate(*context, method);
  if (!caller.ok()) {
    reactor->Finish(ToGrpcStatus(caller.status()));
    return reactor;
  }
  executor->Schedule([context, reactor, admission, request, response,
                      caller = *std::move(caller),
                      call = std::move(call)]() mutable {
    if (context->IsCancelled()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::CANCELLED,
                                   "the client cancelled the call"));
      return;
    }
    if (context->deadline() <= std::chrono::system_clock::now()) {
      reactor->Finish(ToGrpcStatus(
          MakeError(absl::StatusCode::kDeadlineExceeded, "DEADLINE_EXCEEDED",
                    "the call's deadline passed before it could be served")));
      return;
    }
    if (absl::Status admitted = admission->CheckRequest(caller, *request);
        !admitted.ok()) {
      reactor->Finish(ToGrpcStatus(admitted));
      return;
    }
    absl::StatusOr<Response> result = call(caller);
    if (result.ok()) *response = *std::move(result);
    reactor->Finish(ToGrpcStatus(result.status()));
  });
  return reactor;
}

}  // namespace assistants

#endif  // SERVICE_API_UNARY_H_
