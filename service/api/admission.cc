#include "service/api/admission.h"

#include <chrono>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "service/common/errors.h"
#include "service/common/status_macros.h"
#include "service/store/store.h"

namespace assistants {
namespace {

absl::Status Unauthenticated(absl::string_view reason,
                             absl::string_view message) {
  return MakeError(absl::StatusCode::kUnauthenticated, reason, message,
                   {{"field", "authorization"}});
}

}  // namespace

std::optional<absl::string_view> BearerCredential(
    const grpc::ServerContextBase& context) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) return std::nullopt;
  const absl::string_view value(it->second.data(), it->second.size());
  constexpr absl::string_view kBearer = "Bearer ";
  if (value.size() < kBearer.size() ||
      !absl::EqualsIgnoreCase(value.substr(0, kBearer.size()), kBearer)) {
    return std::nullopt;
  }
  return absl::StripAsciiWhitespace(value.substr(kBearer.size()));
}

absl::StatusOr<auth::Principal> Admission::Authenticate(
    const grpc::ServerContextBase& context, absl::string_view method) {
  auth::Principal caller;
  const bool has_key = context.client_metadata().count("authorization") > 0;
  auto open = [&] {
    for (const std::string& prefix : options_.open_methods) {
      if (absl::StartsWith(method, prefix)) return true;
    }
    return false;
  };
  if (options_.api_keys == nullptr || (!has_key && open())) {
    caller.project = kDefaultProject;
  } else {
    if (!has_key) {
      return Unauthenticated("API_KEY_MISSING",
                             "This gateway requires an API key: send metadata "
                             "`authorization: Bearer <key>`");
    }
    std::optional<absl::string_view> key = BearerCredential(context);
    if (!key.has_value() || key->empty()) {
      return Unauthenticated(
          "API_KEY_MALFORMED",
          "The authorization metadata must be `Bearer <key>`");
    }
    std::optional<auth::Principal> found = options_.api_keys->Find(*key);
    // The key itself is never echoed: it may be a real key sent to the
    // wrong gateway.
    if (!found.has_value()) {
      return Unauthenticated("API_KEY_INVALID", "The API key is not valid");
    }
    caller = *std::move(found);
  }
  if (options_.rate_limiter != nullptr) {
    RETURN_IF_ERROR(options_.rate_limiter->Acquire(
        absl::StrCat(caller.project, "/", caller.key_name)));
  }
  return caller;
}

absl::Status Admission::CheckRequest(const auth::Principal& caller,
                                     const google::protobuf::Message& request) {
  if (options_.max_request_bytes > 0) {
    const size_t size = request.ByteSizeLong();
    if (size > options_.max_request_bytes) {
      return MakeError(
          absl::StatusCode::kResourceExhausted, "REQUEST_TOO_LARGE",
          absl::StrCat("The request is ", size, " bytes; this gateway takes ",
                       options_.max_request_bytes, " at most"),
          {{"field", "request"},
           {"max_bytes", absl::StrCat(options_.max_request_bytes)}});
    }
  }
  return tenancy_->CheckAccess(caller.project, request);
}

absl::Status Admission::AcquireStream(const std::string& project) {
  const int limit = options_.max_streams_per_project;
  absl::MutexLock lock(&mu_);
  int& open = open_streams_[project];
  if (limit > 0 && open >= limit) {
    absl::Status error =
        MakeError(absl::StatusCode::kResourceExhausted, "PROJECT_STREAM_LIMIT",
                  absl::StrCat("The project has ", limit,
                               " open RunEvents streams, its limit"),
                  {{"project", project}, {"limit", absl::StrCat(limit)}});
    SetRetryDelay(error, std::chrono::seconds(1));
    return error;
  }
  ++open;
  return absl::OkStatus();
}

void Admission::ReleaseStream(const std::string& project) {
  absl::MutexLock lock(&mu_);
  auto it = open_streams_.find(project);
  if (it != open_streams_.end() && --it->second <= 0) open_streams_.erase(it);
}

}  // namespace assistants
