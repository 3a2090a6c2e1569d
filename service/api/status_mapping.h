// The one place where internal errors become wire errors: an absl::Status
// (with ErrorInfo / BadRequest / RetryInfo payloads from errors.h) turns into
// a grpc::Status whose binary details are a google.rpc.Status holding exactly
// one ErrorInfo, plus BadRequest and RetryInfo when present.
#ifndef SERVICE_API_STATUS_MAPPING_H_
#define SERVICE_API_STATUS_MAPPING_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace assistants {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace assistants

#endif  // SERVICE_API_STATUS_MAPPING_H_
