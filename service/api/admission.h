// Admission: what every call of the public API passes before it reaches the
// core, in one place: authentication (an API key sent as
// `authorization: Bearer KEY` names the caller's project), the key's rate
// limit, the request size limit, the tenancy check (the request may only
// name its project's assistants and threads) and, for RunEvents, the
// project's open-stream limit. Handlers call it through HandleUnary and the
// stream reactor; they never look at metadata themselves.
#ifndef SERVICE_API_ADMISSION_H_
#define SERVICE_API_ADMISSION_H_

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/message.h"
#include "grpcpp/server_context.h"
#include "service/auth/api_keys.h"
#include "service/auth/rate_limiter.h"
#include "service/core/tenancy.h"

namespace assistants {

// The credential of `authorization: Bearer <credential>` metadata (scheme
// case-insensitive, surrounding blanks stripped): nullopt when the metadata
// is absent or has another scheme.
std::optional<absl::string_view> BearerCredential(
    const grpc::ServerContextBase& context);

struct AdmissionOptions {
  // Null: authentication is off and every caller acts for kDefaultProject
  // (a laptop or a trusted network; main warns about it).
  const auth::KeyLookup* api_keys = nullptr;
  // Null: no request rate limit.
  auth::RateLimiter* rate_limiter = nullptr;
  // Requests whose serialized size exceeds this are refused; 0 = no limit.
  size_t max_request_bytes = 0;
  // Open RunEvents streams per project; 0 = no limit.
  int max_streams_per_project = 0;
  // Full method names ("/assistants.v1.ToolRegistryService/ListTools") or
  // prefixes of them ("/assistants.v1.ToolRegistryService/") served
  // without a key; such callers act for kDefaultProject. Health and
  // reflection never pass admission: they are always open.
  std::vector<std::string> open_methods;
};

class Admission {
 public:
  // `tenancy` and everything `options` points to must outlive this object.
  Admission(const AdmissionOptions& options, Tenancy* tenancy)
      : options_(options), tenancy_(tenancy) {}

  // The caller of `method` ("/package.Service/Method"), from the call's
  // `authorization` metadata, after taking a token from its key's rate
  // limit; an open method's caller without a key is kDefaultProject.
  // UNAUTHENTICATED (API_KEY_MISSING, API_KEY_MALFORMED, API_KEY_INVALID;
  // metadata field "authorization"); RESOURCE_EXHAUSTED (RATE_LIMITED, with
  // RetryInfo). Never blocks.
  absl::StatusOr<auth::Principal> Authenticate(
      const grpc::ServerContextBase& context, absl::string_view method);
  // The request checks: RESOURCE_EXHAUSTED (REQUEST_TOO_LARGE, field
  // "request"), NOT_FOUND for another project's objects. May block on the
  // store.
  absl::Status CheckRequest(const auth::Principal& caller,
                            const google::protobuf::Message& request);
  // Holds one of the project's stream slots until ReleaseStream:
  // RESOURCE_EXHAUSTED (PROJECT_STREAM_LIMIT, with RetryInfo) when none is
  // free.
  absl::Status AcquireStream(const std::string& project);
  void ReleaseStream(const std::string& project);

  bool authenticating() const { return options_.api_keys != nullptr; }

 private:
  const AdmissionOptions options_;
  Tenancy* const tenancy_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, int> open_streams_ ABSL_GUARDED_BY(mu_);
};

}  // namespace assistants

#endif  // SERVICE_API_ADMISSION_H_
