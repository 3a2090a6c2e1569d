// ResponsesProvider: a turn as one streamed POST /responses call (OpenAI's
// Responses API), with store=false so the gateway stays the owner of the
// conversation state.
#ifndef UPSTREAM_RESPONSES_PROVIDER_H_
#define UPSTREAM_RESPONSES_PROVIDER_H_

#include <memory>

#include "nlohmann/json.hpp"
#include "upstream/http/http_client.h"
#include "upstream/provider.h"
#include "upstream/provider_config.h"
#include "upstream/streaming_call.h"

namespace assistants::upstream {

class ResponsesProvider final : public Provider {
 public:
  // `http` must outlive the provider.
  ResponsesProvider(ProviderConfig config, HttpClient* http)
      : config_(std::move(config)), http_(http) {}

  std::unique_ptr<TurnCall> StreamTurn(
      const Turn& turn, std::shared_ptr<TurnObserver> observer) override;

  // The request body for `turn` (exposed for tests).
  static nlohmann::json BuildRequest(const Turn& turn);
  // A translator of the Responses event stream (exposed for tests).
  static std::unique_ptr<StreamTranslator> NewTranslator(
      std::string provider_name);

 private:
  const ProviderConfig config_;
  HttpClient* const http_;
};

}  // namespace assistants::upstream

#endif  // UPSTREAM_RESPONSES_PROVIDER_H_
