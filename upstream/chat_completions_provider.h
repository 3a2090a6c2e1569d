// ChatCompletionsProvider: a turn as one streamed POST /chat/completions
// call, for OpenAI and any compatible server (vLLM, Ollama, LiteLLM, Azure).
// Hosted tools (code_interpreter, file_search) do not exist in this API and
// are left out of the request.
#ifndef UPSTREAM_CHAT_COMPLETIONS_PROVIDER_H_
#define UPSTREAM_CHAT_COMPLETIONS_PROVIDER_H_

#include <memory>
#include <string>

#include "nlohmann/json.hpp"
#include "upstream/http/http_client.h"
#include "upstream/provider.h"
#include "upstream/provider_config.h"
#include "upstream/streaming_call.h"

namespace assistants::upstream {

class ChatCompletionsProvider final : public Provider {
 public:
  // `http` must outlive the provider.
  ChatCompletionsProvider(ProviderConfig config, HttpClient* http)
      : config_(std::move(config)), http_(http) {}

  std::unique_ptr<TurnCall> StreamTurn(
      const Turn& turn, std::shared_ptr<TurnObserver> observer) override;

  // The request body for `turn` (exposed for tests).
  static nlohmann::json BuildRequest(const Turn& turn,
                                     bool legacy_max_tokens = false);
  // A translator of the chat.completion.chunk stream (exposed for tests).
  static std::unique_ptr<StreamTranslator> NewTranslator(
      std::string provider_name);

 private:
  const ProviderConfig config_;
  HttpClient* const http_;
};

}  // namespace assistants::upstream

#endif  // UPSTREAM_CHAT_COMPLETIONS_PROVIDER_H_
