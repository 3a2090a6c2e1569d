// Blame-aware mapping of upstream failures (HTTP error responses, stream
// error events, transport failures) to the gateway's errors: a gRPC-ready
// absl::Status with ErrorInfo, and the Assistants `last_error.code` a run
// ends with. One table (error_mapping.cc), tested row by row.
//
// Rules (ENGINEERING.md §4): the caller's mistake stays INVALID_ARGUMENT;
// the upstream rejecting our credentials is our misconfiguration (INTERNAL,
// UPSTREAM_AUTH_FAILED, and the upstream's message, which may echo part of
// the key, is dropped); 429 is RESOURCE_EXHAUSTED with RetryInfo, except
// insufficient_quota (waiting does not help); 5xx, connection failures and
// timeouts (after the HTTP client's own retries) are UNAVAILABLE.
#ifndef UPSTREAM_ERROR_MAPPING_H_
#define UPSTREAM_ERROR_MAPPING_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "upstream/http/http_client.h"
#include "upstream/provider.h"

namespace assistants::upstream {

// An HTTP response with a non-2xx `status`; `body` is the (possibly
// truncated, possibly non-JSON) error body, `head` its headers (for
// Retry-After). `provider` names the upstream in messages ("openai").
TurnError MapHttpError(absl::string_view provider, const HttpResponseHead& head,
                       absl::string_view body);

// An error reported inside a 200 stream (Responses `error` /
// `response.failed`, or a Chat Completions chunk carrying `error`).
TurnError MapStreamError(absl::string_view provider, absl::string_view code,
                         absl::string_view message);

// A failed transfer as reported by HttpStreamHandler::OnComplete.
TurnError MapTransportError(absl::string_view provider,
                            const absl::Status& status);

// A stream the gateway cannot understand (malformed event, truncated stream).
TurnError ProtocolError(absl::string_view provider, absl::string_view detail);

// `status` with every occurrence of each non-empty `secrets` value (the
// upstream API key, credential headers) in its message and its ErrorInfo
// metadata replaced by "[redacted]"; code and other payloads are kept. The
// last line of defence for text an upstream echoes back (an error body or a
// stream error quoting the key), before it becomes a run's last_error.
absl::Status RedactSecrets(const absl::Status& status,
                           const std::vector<std::string>& secrets);

}  // namespace assistants::upstream

#endif  // UPSTREAM_ERROR_MAPPING_H_
