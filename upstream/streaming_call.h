// The part of a streamed model turn both wire APIs share: send the request,
// parse the SSE body, hand each event to the API's StreamTranslator, map
// HTTP / transport / protocol failures through error_mapping, and report
// OnDone to the observer exactly once. Providers only build the request body
// and translate events.
#ifndef UPSTREAM_STREAMING_CALL_H_
#define UPSTREAM_STREAMING_CALL_H_

#include <memory>
#include <optional>
#include <string>

#include "nlohmann/json_fwd.hpp"
#include "upstream/http/http_client.h"
#include "upstream/provider.h"
#include "upstream/provider_config.h"
#include "upstream/sse/sse_parser.h"

namespace assistants::upstream {

// Turns one wire format's events into ProviderEvents. Called on the HTTP
// client's thread, one event at a time.
class StreamTranslator {
 public:
  virtual ~StreamTranslator() = default;
  // Handles one event, emitting to `observer`. An error ends the turn.
  virtual std::optional<TurnError> OnEvent(const SseEvent& event,
                                           TurnObserver& observer) = 0;
  // The body ended without an error. Emits what is left (for example the
  // final kFinished) or returns an error when the stream was cut short.
  virtual std::optional<TurnError> OnEnd(TurnObserver& observer) = 0;
  // Whether the turn's terminal event was seen (kFinished was emitted).
  virtual bool done() const = 0;
};

// Posts `body` to config.base_url + `path` as a stream and feeds the answer
// through `translator` to `observer`.
std::unique_ptr<TurnCall> StartStreamingTurn(
    HttpClient* http, const ProviderConfig& config, absl::string_view path,
    const nlohmann::json& body, std::unique_ptr<StreamTranslator> translator,
    std::shared_ptr<TurnObserver> observer);

}  // namespace assistants::upstream

#endif  // UPSTREAM_STREAMING_CALL_H_
