#include "service/api/status_mapping.h"

#include <string>

#include "absl/strings/ascii.h"
#include "google/rpc/status.pb.h"
#include "service/common/errors.h"

namespace assistants {
namespace {

// Errors raised without a reason (a bug, or a library's own status) still
// carry one on the wire, named after their code.
std::string DefaultReason(absl::StatusCode code) {
  return absl::AsciiStrToUpper(absl::StatusCodeToString(code));
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::StatusCode and grpc::StatusCode share the canonical numbering.
  auto code = static_cast<grpc::StatusCode>(status.code());
  std::string message(status.message());

  google::rpc::Status rich;
  rich.set_code(static_cast<int>(status.code()));
  rich.set_message(message);

  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  if (!info.has_value()) info.emplace();
  if (info->reason().empty()) info->set_reason(DefaultReason(status.code()));
  if (info->domain().empty()) info->set_domain(std::string(kErrorDomain));
  rich.add_details()->PackFrom(*info);
  if (std::optional<google::rpc::BadRequest> bad = GetBadRequest(status)) {
    rich.add_details()->PackFrom(*bad);
  }
  if (std::optional<google::rpc::RetryInfo> retry = GetRetryInfo(status)) {
    rich.add_details()->PackFrom(*retry);
  }
  return grpc::Status(code, message, rich.SerializeAsString());
}

}  // namespace assistants
