// Configuration of one upstream backend (an OpenAI-compatible endpoint).
#ifndef UPSTREAM_PROVIDER_CONFIG_H_
#define UPSTREAM_PROVIDER_CONFIG_H_

#include <string>

#include "upstream/http/http_client.h"

namespace assistants::upstream {

struct ProviderConfig {
  // Name used in errors, logs and metrics ("openai", "vllm", ...).
  std::string name = "openai";
  // Up to and including the version, without a trailing slash.
  std::string base_url = "https://api.openai.com/v1";
  // Sent as "Authorization: Bearer <api_key>" when non-empty; never logged.
  std::string api_key;
  // OpenAI-Organization / OpenAI-Project headers when non-empty.
  std::string organization;
  std::string project;
  // Extra headers for every request (e.g. an api-version for Azure).
  Headers extra_headers;
  HttpTimeouts timeouts;
  RetryPolicy retry;
  // Chat Completions only: send the limit as `max_tokens` (older compatible
  // servers) instead of `max_completion_tokens`.
  bool legacy_max_tokens = false;
};

}  // namespace assistants::upstream

#endif  // UPSTREAM_PROVIDER_CONFIG_H_
