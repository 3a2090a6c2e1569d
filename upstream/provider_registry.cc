#include "upstream/provider_registry.h"

#include "absl/strings/str_cat.h"
#include "service/common/errors.h"
#include "upstream/chat_completions_provider.h"
#include "upstream/responses_provider.h"

namespace assistants::upstream {

absl::StatusOr<std::unique_ptr<ProviderRegistry>> ProviderRegistry::Create(
    const std::vector<BackendConfig>& backends,
    absl::string_view default_backend, HttpClient* http) {
  auto registry = std::unique_ptr<ProviderRegistry>(new ProviderRegistry());
  for (const BackendConfig& backend : backends) {
    const std::string& name = backend.provider.name;
    if (name.empty() || registry->providers_.count(name) > 0) {
      return MakeError(absl::StatusCode::kInvalidArgument,
                       "INVALID_UPSTREAM_CONFIG",
                       absl::StrCat("upstream backend names must be unique "
                                    "and non-empty: '",
                                    name, "'"),
                       {{"upstream", name}});
    }
    std::unique_ptr<Provider> provider;
    if (backend.api == WireApi::kResponses) {
      provider = std::make_unique<ResponsesProvider>(backend.provider, http);
    } else {
      provider =
          std::make_unique<ChatCompletionsProvider>(backend.provider, http);
    }
    registry->providers_.emplace(name, std::move(provider));
  }
  if (registry->providers_.count(default_backend) == 0) {
    return MakeError(absl::StatusCode::kInvalidArgument,
                     "INVALID_UPSTREAM_CONFIG",
                     absl::StrCat("the default upstream '", default_backend,
                                  "' is not configured"),
                     {{"upstream", std::string(default_backend)}});
  }
  registry->default_backend_ = std::string(default_backend);
  return registry;
}

absl::StatusOr<Provider*> ProviderRegistry::Resolve(
    absl::string_view name) const {
  auto it = providers_.find(name.empty() ? absl::string_view(default_backend_)
                                         : name);
  if (it == providers_.end()) {
    return FieldError(
        "upstream", "UNKNOWN_UPSTREAM",
        absl::StrCat("no upstream backend named '", name, "' is configured"));
  }
  return it->second.get();
}

std::vector<std::string> ProviderRegistry::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, provider] : providers_) names.push_back(name);
  return names;
}

}  // namespace assistants::upstream
