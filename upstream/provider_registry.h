// The configured upstream backends by name, and the one that serves an
// assistant: its `upstream` field when set, else the gateway's default. The
// backends themselves come from the gateway's configuration (upstream.* keys,
// service/config/config.h).
#ifndef UPSTREAM_PROVIDER_REGISTRY_H_
#define UPSTREAM_PROVIDER_REGISTRY_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "upstream/http/http_client.h"
#include "upstream/provider.h"
#include "upstream/provider_config.h"

namespace assistants::upstream {

// Which wire API a backend speaks.
enum class WireApi { kResponses, kChatCompletions };

struct BackendConfig {
  WireApi api = WireApi::kResponses;
  ProviderConfig provider;
};

class ProviderRegistry {
 public:
  // Builds one provider per backend over `http` (which must outlive the
  // registry). `default_backend` must name one of them. Backend names must
  // be unique and non-empty.
  static absl::StatusOr<std::unique_ptr<ProviderRegistry>> Create(
      const std::vector<BackendConfig>& backends,
      absl::string_view default_backend, HttpClient* http);

  // The provider for an assistant whose upstream field is `name` (empty:
  // the default). Unknown names: INVALID_ARGUMENT (UNKNOWN_UPSTREAM, field
  // "upstream").
  absl::StatusOr<Provider*> Resolve(absl::string_view name) const;

  // Names of the configured backends.
  std::vector<std::string> Names() const;
  const std::string& default_backend() const { return default_backend_; }

 private:
  std::map<std::string, std::unique_ptr<Provider>, std::less<>> providers_;
  std::string default_backend_;
};

}  // namespace assistants::upstream

#endif  // UPSTREAM_PROVIDER_REGISTRY_H_
