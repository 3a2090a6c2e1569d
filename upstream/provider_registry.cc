#include "upstream/provider_registry.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "service/common/errors.h"
#include "upstream/chat_completions_provider.h"
#include "upstream/responses_provider.h"

namespace assistants::upstream {
namespace {

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

absl::StatusOr<std::string> ReadKeyFile(const std::string& path,
                                        const char* variable) {
  std::ifstream file(path);
  if (!file) {
    return MakeError(
        absl::StatusCode::kFailedPrecondition, "UPSTREAM_KEY_UNREADABLE",
        absl::StrCat("cannot read the API key file named by ", variable),
        {{"variable", variable}});
  }
  std::stringstream contents;
  contents << file.rdbuf();
  return std::string(absl::StripAsciiWhitespace(contents.str()));
}

}  // namespace

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

namespace {

// A positive integer from `name`, if set; an error naming it otherwise.
absl::Status ReadPositive(const char* name, int64_t* value) {
  const std::string text = Env(name);
  if (text.empty()) return absl::OkStatus();
  int64_t parsed = 0;
  if (!absl::SimpleAtoi(text, &parsed) || parsed <= 0) {
    return MakeError(
        absl::StatusCode::kInvalidArgument, "INVALID_CONFIG",
        absl::StrCat(name, " must be a positive integer, not \"", text, "\""),
        {{"variable", name}});
  }
  *value = parsed;
  return absl::OkStatus();
}

// Timeouts and retries shared by every backend:
// ASSISTANTS_UPSTREAM_{CONNECT,FIRST_BYTE,IDLE,TOTAL}_TIMEOUT_MS and
// ASSISTANTS_UPSTREAM_MAX_ATTEMPTS.
absl::Status ApplyTransportEnvironment(ProviderConfig& config) {
  struct Timeout {
    const char* name;
    std::chrono::milliseconds* field;
  };
  for (const Timeout& t :
       {Timeout{"ASSISTANTS_UPSTREAM_CONNECT_TIMEOUT_MS",
                &config.timeouts.connect},
        Timeout{"ASSISTANTS_UPSTREAM_FIRST_BYTE_TIMEOUT_MS",
                &config.timeouts.first_byte},
        Timeout{"ASSISTANTS_UPSTREAM_IDLE_TIMEOUT_MS", &config.timeouts.idle},
        Timeout{"ASSISTANTS_UPSTREAM_TOTAL_TIMEOUT_MS",
                &config.timeouts.total}}) {
    int64_t ms = t.field->count();
    if (absl::Status s = ReadPositive(t.name, &ms); !s.ok()) return s;
    *t.field = std::chrono::milliseconds(ms);
  }
  int64_t attempts = config.retry.max_attempts;
  if (absl::Status s =
          ReadPositive("ASSISTANTS_UPSTREAM_MAX_ATTEMPTS", &attempts);
      !s.ok()) {
    return s;
  }
  config.retry.max_attempts = static_cast<int>(attempts);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<BackendConfig>> BackendsFromEnvironment(
    std::string* default_backend) {
  std::vector<BackendConfig> backends;
  ProviderConfig openai;
  openai.name = "openai";
  if (absl::Status s = ApplyTransportEnvironment(openai); !s.ok()) return s;
  if (std::string url = Env("OPENAI_BASE_URL"); !url.empty()) {
    openai.base_url = std::string(absl::StripSuffix(url, "/"));
  }
  openai.api_key = Env("OPENAI_API_KEY");
  if (std::string path = Env("OPENAI_API_KEY_FILE"); !path.empty()) {
    auto key = ReadKeyFile(path, "OPENAI_API_KEY_FILE");
    if (!key.ok()) return key.status();
    openai.api_key = *key;
  }
  openai.organization = Env("OPENAI_ORGANIZATION");
  openai.project = Env("OPENAI_PROJECT");
  backends.push_back({WireApi::kResponses, openai});
  ProviderConfig openai_chat = openai;
  openai_chat.name = "openai-chat";
  backends.push_back({WireApi::kChatCompletions, openai_chat});

  if (std::string url = Env("CHAT_COMPLETIONS_BASE_URL"); !url.empty()) {
    ProviderConfig chat;
    chat.name = "chat";
    if (absl::Status s = ApplyTransportEnvironment(chat); !s.ok()) return s;
    chat.base_url = std::string(absl::StripSuffix(url, "/"));
    chat.api_key = Env("CHAT_COMPLETIONS_API_KEY");
    backends.push_back({WireApi::kChatCompletions, chat});
  }
  std::string chosen = Env("ASSISTANTS_DEFAULT_UPSTREAM");
  *default_backend = chosen.empty() ? "openai" : chosen;
  return backends;
}

}  // namespace assistants::upstream
