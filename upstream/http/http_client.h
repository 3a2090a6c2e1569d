// The HttpClient seam: asynchronous HTTP requests whose response bodies are
// streamed to a handler as they arrive. The production implementation
// (CurlHttpClient) runs every transfer on one curl-multi event loop thread;
// tests may substitute a fake.
#ifndef UPSTREAM_HTTP_HTTP_CLIENT_H_
#define UPSTREAM_HTTP_HTTP_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace assistants::upstream {

using Headers = std::vector<std::pair<std::string, std::string>>;

// Deadlines of one attempt; zero disables a limit.
struct HttpTimeouts {
  std::chrono::milliseconds connect{10'000};
  // From sending the request to the first response byte (headers).
  std::chrono::milliseconds first_byte{60'000};
  // Longest silence between two body chunks (an SSE stream that stalls).
  std::chrono::milliseconds idle{60'000};
  // Whole attempt, headers to last byte.
  std::chrono::milliseconds total{600'000};
};

// When and how often to retry. A request is retried only when nothing of the
// final response was handed to the handler yet: after a connection failure or
// timeout before the first response byte, or after a response whose status is
// retryable (its body is then consumed by the client, not delivered).
struct RetryPolicy {
  // Attempts in all, including the first; 1 disables retries.
  int max_attempts = 3;
  std::chrono::milliseconds initial_backoff{500};
  std::chrono::milliseconds max_backoff{8'000};
  // No retry starts after this much time since the first attempt.
  std::chrono::milliseconds max_total{60'000};
  // Statuses worth another attempt. Retry-After / retry-after-ms headers of
  // such a response set the next delay (capped by max_backoff * 4).
  std::vector<int> retryable_statuses{408, 409, 429, 500, 502, 503, 504};
  // Called each time a retry is scheduled, on the client's thread (metrics
  // count retries through it); must not block. May be empty.
  std::function<void()> on_retry;
};

struct HttpRequest {
  std::string method = "POST";
  // http:// or https://. TLS peers are always verified.
  std::string url;
  Headers headers;
  std::string body;
  HttpTimeouts timeouts;
  RetryPolicy retry;
  // Header names whose values must never be logged or put in errors
  // (Authorization is always treated so).
  std::vector<std::string> secret_headers;
};

struct HttpResponseHead {
  int status = 0;
  // Lower-cased names; the last value wins for repeated headers.
  absl::flat_hash_map<std::string, std::string> headers;
};

// What the client learned about a finished request, for metrics and tests.
struct HttpTransferStats {
  int attempts = 0;
  // Whether the final attempt reused an open connection.
  bool connection_reused = false;
  std::chrono::microseconds time_to_first_byte{0};
  std::chrono::microseconds total_time{0};
};

// Receives one request's response. Callbacks run on the client's event-loop
// thread, one at a time, and must not block. Order: OnHeaders once (unless
// the request failed before any response), OnBody zero or more times, then
// OnComplete exactly once.
class HttpStreamHandler {
 public:
  virtual ~HttpStreamHandler() = default;
  virtual void OnHeaders(const HttpResponseHead& head) = 0;
  virtual void OnBody(absl::string_view chunk) = 0;
  // OK when the whole body arrived (whatever the HTTP status). Otherwise
  // UNAVAILABLE (reason UPSTREAM_UNREACHABLE: connect/DNS/TLS/reset),
  // DEADLINE_EXCEEDED (reason UPSTREAM_TIMEOUT, metadata "timeout" = connect |
  // first_byte | idle | total), or CANCELLED (reason UPSTREAM_CANCELLED) after
  // Cancel(). Error messages never contain secret header values.
  virtual void OnComplete(const absl::Status& status,
                          const HttpTransferStats& stats) = 0;
};

class HttpClient {
 public:
  using RequestId = uint64_t;
  virtual ~HttpClient() = default;

  // Starts `request`; returns at once. The handler is kept alive until its
  // OnComplete has returned. Thread-safe.
  virtual RequestId Start(HttpRequest request,
                          std::shared_ptr<HttpStreamHandler> handler) = 0;

  // Aborts a request from any thread: its connection is closed, a pending
  // retry is dropped, and OnComplete(CANCELLED) follows unless OnComplete
  // already ran. Unknown or finished ids are ignored.
  virtual void Cancel(RequestId id) = 0;
};

}  // namespace assistants::upstream

#endif  // UPSTREAM_HTTP_HTTP_CLIENT_H_
