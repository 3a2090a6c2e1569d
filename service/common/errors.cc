#include "service/common/errors.h"

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace assistants {
namespace {

template <typename Proto>
std::optional<Proto> GetPayload(const absl::Status& status,
                                absl::string_view url) {
  auto payload = status.GetPayload(url);  // absl::optional in Debian's Abseil
  if (!payload.has_value()) return std::nullopt;
  Proto proto;
  if (!proto.ParseFromString(std::string(*payload))) return std::nullopt;
  return proto;
}

template <typename Proto>
void SetPayload(absl::Status& status, absl::string_view url,
                const Proto& proto) {
  status.SetPayload(url, absl::Cord(proto.SerializeAsString()));
}

}  // namespace

absl::Status MakeError(absl::StatusCode code, absl::string_view reason,
                       absl::string_view message, ErrorMetadata metadata) {
  absl::Status status(code, message);
  google::rpc::ErrorInfo info;
  info.set_reason(std::string(reason));
  info.set_domain(std::string(kErrorDomain));
  for (auto& [key, value] : metadata) {
    (*info.mutable_metadata())[key] = std::move(value);
  }
  SetPayload(status, kErrorInfoUrl, info);
  return status;
}

absl::Status FieldError(absl::string_view field, absl::string_view reason,
                        absl::string_view description) {
  absl::Status status = MakeError(absl::StatusCode::kInvalidArgument, reason,
                                  absl::StrCat(field, ": ", description),
                                  {{"field", std::string(field)}});
  google::rpc::BadRequest bad_request;
  auto* violation = bad_request.add_field_violations();
  violation->set_field(std::string(field));
  violation->set_description(std::string(description));
  SetPayload(status, kBadRequestUrl, bad_request);
  return status;
}

absl::Status NotFound(absl::string_view kind, absl::string_view id) {
  std::string upper = absl::AsciiStrToUpper(kind);
  return MakeError(absl::StatusCode::kNotFound,
                   absl::StrCat(upper, "_NOT_FOUND"),
                   absl::StrCat("No ", kind, " found with id '", id, "'."),
                   {{absl::StrCat(kind, "_id"), std::string(id)}});
}

absl::Status StoreUnavailable(absl::string_view detail) {
  absl::Status status =
      MakeError(absl::StatusCode::kUnavailable, "STORE_UNAVAILABLE",
                absl::StrCat("The store is unavailable: ", detail));
  SetRetryDelay(status, std::chrono::milliseconds(100));
  return status;
}

void SetRetryDelay(absl::Status& status, std::chrono::milliseconds delay) {
  google::rpc::RetryInfo retry;
  retry.mutable_retry_delay()->set_seconds(delay.count() / 1000);
  retry.mutable_retry_delay()->set_nanos(
      static_cast<int32_t>((delay.count() % 1000) * 1000000));
  SetPayload(status, kRetryInfoUrl, retry);
}

std::string ErrorReason(const absl::Status& status) {
  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  return info.has_value() ? info->reason() : std::string();
}

std::optional<google::rpc::ErrorInfo> GetErrorInfo(const absl::Status& status) {
  return GetPayload<google::rpc::ErrorInfo>(status, kErrorInfoUrl);
}

std::optional<google::rpc::BadRequest> GetBadRequest(
    const absl::Status& status) {
  return GetPayload<google::rpc::BadRequest>(status, kBadRequestUrl);
}

std::optional<google::rpc::RetryInfo> GetRetryInfo(const absl::Status& status) {
  return GetPayload<google::rpc::RetryInfo>(status, kRetryInfoUrl);
}

}  // namespace assistants
