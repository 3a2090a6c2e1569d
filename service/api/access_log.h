// The RPC access log: a gRPC server interceptor that gives every call a
// request id (the client's `x-request-id` metadata, or a generated one),
// echoes it in the response's initial metadata, and logs one line per
// finished call with method, code, duration_ms, request_id and, when the
// request message has them, thread_id / run_id. Successful and caller-error
// calls log at debug; INTERNAL, UNKNOWN and DATA_LOSS at warning.
#ifndef SERVICE_API_ACCESS_LOG_H_
#define SERVICE_API_ACCESS_LOG_H_

#include <memory>

#include "grpcpp/support/server_interceptor.h"

namespace assistants {

// Metadata key of the request id, in both directions.
inline constexpr char kRequestIdMetadata[] = "x-request-id";

// Factory for ServerOptions::interceptors.
std::shared_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeAccessLogInterceptorFactory();

}  // namespace assistants

#endif  // SERVICE_API_ACCESS_LOG_H_
