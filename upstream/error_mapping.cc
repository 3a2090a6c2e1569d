#include "upstream/error_mapping.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "nlohmann/json.hpp"
#include "service/common/errors.h"

namespace assistants::upstream {
namespace {

constexpr absl::string_view kServerError = "server_error";
constexpr absl::string_view kRateLimitExceeded = "rate_limit_exceeded";
constexpr absl::string_view kInvalidPrompt = "invalid_prompt";

// One row: HTTP statuses [low, high] (and, when set, the upstream's
// error.code or error.type) map to a gateway error.
struct HttpRule {
  int low;
  int high;
  absl::string_view upstream_code;  // empty: any
  absl::StatusCode code;
  absl::string_view reason;
  absl::string_view run_error_code;
  bool retry_info;
  // Whether the upstream's message may be shown (never for auth failures).
  bool show_upstream_message;
};

// First matching row wins.
constexpr HttpRule kHttpRules[] = {
    {401, 401, "", absl::StatusCode::kInternal, "UPSTREAM_AUTH_FAILED",
     kServerError, false, false},
    {403, 403, "", absl::StatusCode::kInternal, "UPSTREAM_AUTH_FAILED",
     kServerError, false, false},
    {429, 429, "insufficient_quota", absl::StatusCode::kResourceExhausted,
     "UPSTREAM_QUOTA_EXCEEDED", kRateLimitExceeded, false, true},
    {429, 429, "", absl::StatusCode::kResourceExhausted,
     "UPSTREAM_RATE_LIMITED", kRateLimitExceeded, true, true},
    {404, 404, "", absl::StatusCode::kInvalidArgument, "UPSTREAM_NOT_FOUND",
     kInvalidPrompt, false, true},
    {408, 409, "", absl::StatusCode::kUnavailable, "UPSTREAM_SERVER_ERROR",
     kServerError, true, true},
    {400, 499, "", absl::StatusCode::kInvalidArgument,
     "UPSTREAM_INVALID_REQUEST", kInvalidPrompt, false, true},
    {500, 599, "", absl::StatusCode::kUnavailable, "UPSTREAM_SERVER_ERROR",
     kServerError, true, true},
};

// Errors inside a stream, by the upstream's error code.
struct StreamRule {
  absl::string_view upstream_code;  // empty: any
  absl::StatusCode code;
  absl::string_view reason;
  absl::string_view run_error_code;
};

constexpr StreamRule kStreamRules[] = {
    {"rate_limit_exceeded", absl::StatusCode::kResourceExhausted,
     "UPSTREAM_RATE_LIMITED", kRateLimitExceeded},
    {"invalid_prompt", absl::StatusCode::kInvalidArgument,
     "UPSTREAM_INVALID_PROMPT", kInvalidPrompt},
    {"context_length_exceeded", absl::StatusCode::kInvalidArgument,
     "UPSTREAM_INVALID_PROMPT", kInvalidPrompt},
    {"", absl::StatusCode::kUnavailable, "UPSTREAM_SERVER_ERROR", kServerError},
};

// Retry hints beyond this are not believed (and would overflow a Duration).
constexpr double kMaxRetryDelayMs = 3600.0 * 1000;

// Parses a non-negative finite number of `unit_ms` milliseconds, clamped.
std::optional<std::chrono::milliseconds> ParseDelay(absl::string_view text,
                                                    double unit_ms) {
  double value = 0;
  if (!absl::SimpleAtod(text, &value) || !std::isfinite(value) || value < 0) {
    return std::nullopt;
  }
  return std::chrono::milliseconds(
      static_cast<int64_t>(std::min(value * unit_ms, kMaxRetryDelayMs)));
}

// The delay a 429/5xx asks for: retry-after-ms, else Retry-After seconds,
// else one second (an HTTP-date Retry-After also falls back to one second).
std::chrono::milliseconds RetryDelay(const HttpResponseHead& head) {
  if (auto it = head.headers.find("retry-after-ms"); it != head.headers.end()) {
    if (auto delay = ParseDelay(it->second, 1)) return *delay;
  }
  if (auto it = head.headers.find("retry-after"); it != head.headers.end()) {
    if (auto delay = ParseDelay(it->second, 1000)) return *delay;
  }
  return std::chrono::seconds(1);
}

struct UpstreamErrorBody {
  std::string code;
  std::string type;
  std::string message;
};

// Parses OpenAI's {"error": {"message", "type", "param", "code"}}; tolerant
// of anything else (a proxy's HTML page, an empty body).
UpstreamErrorBody ParseErrorBody(absl::string_view body) {
  UpstreamErrorBody parsed;
  nlohmann::json json = nlohmann::json::parse(body, nullptr, false);
  if (json.is_discarded() || !json.is_object()) return parsed;
  const nlohmann::json* error = &json;
  if (auto it = json.find("error"); it != json.end() && it->is_object()) {
    error = &*it;
  }
  auto text = [error](const char* key) -> std::string {
    auto it = error->find(key);
    return it != error->end() && it->is_string() ? it->get<std::string>() : "";
  };
  parsed.code = text("code");
  parsed.type = text("type");
  parsed.message = text("message");
  return parsed;
}

TurnError Make(absl::StatusCode code, absl::string_view reason,
               absl::string_view run_error_code, std::string message,
               ErrorMetadata metadata) {
  return TurnError{MakeError(code, reason, message, std::move(metadata)),
                   std::string(run_error_code)};
}

}  // namespace

TurnError MapHttpError(absl::string_view provider, const HttpResponseHead& head,
                       absl::string_view body) {
  UpstreamErrorBody error = ParseErrorBody(body.substr(0, 64 * 1024));
  for (const HttpRule& rule : kHttpRules) {
    if (head.status < rule.low || head.status > rule.high) continue;
    if (!rule.upstream_code.empty() && error.code != rule.upstream_code &&
        error.type != rule.upstream_code) {
      continue;
    }
    std::string message =
        rule.show_upstream_message
            ? absl::StrCat(provider, " answered HTTP ", head.status,
                           error.message.empty() ? "" : ": ", error.message)
            : absl::StrCat(
                  provider, " rejected the gateway's credentials (HTTP ",
                  head.status, "); check the gateway's upstream API key");
    ErrorMetadata metadata = {{"provider", std::string(provider)},
                              {"http_status", absl::StrCat(head.status)}};
    if (!error.code.empty() && rule.show_upstream_message) {
      metadata.emplace_back("upstream_code", error.code);
    }
    TurnError mapped = Make(rule.code, rule.reason, rule.run_error_code,
                            std::move(message), std::move(metadata));
    if (rule.retry_info) SetRetryDelay(mapped.status, RetryDelay(head));
    return mapped;
  }
  return Make(absl::StatusCode::kInternal, "UPSTREAM_UNEXPECTED_STATUS",
              kServerError,
              absl::StrCat(provider, " answered unexpected HTTP ", head.status),
              {{"provider", std::string(provider)},
               {"http_status", absl::StrCat(head.status)}});
}

TurnError MapStreamError(absl::string_view provider, absl::string_view code,
                         absl::string_view message) {
  for (const StreamRule& rule : kStreamRules) {
    if (!rule.upstream_code.empty() && rule.upstream_code != code) continue;
    ErrorMetadata metadata = {{"provider", std::string(provider)}};
    if (!code.empty())
      metadata.emplace_back("upstream_code", std::string(code));
    return Make(rule.code, rule.reason, rule.run_error_code,
                absl::StrCat(provider, " reported an error",
                             message.empty() ? "" : ": ", message),
                std::move(metadata));
  }
  return ProtocolError(provider, "unmatched stream error");  // unreachable
}

TurnError MapTransportError(absl::string_view provider,
                            const absl::Status& status) {
  std::string reason = ErrorReason(status);
  absl::StatusCode code = status.code() == absl::StatusCode::kCancelled
                              ? absl::StatusCode::kCancelled
                              : absl::StatusCode::kUnavailable;
  if (reason.empty()) reason = "UPSTREAM_UNREACHABLE";
  ErrorMetadata metadata = {{"provider", std::string(provider)}};
  if (auto info = GetErrorInfo(status)) {
    for (const auto& [key, value] : info->metadata()) {
      metadata.emplace_back(key, value);
    }
  }
  TurnError mapped =
      Make(code, reason, kServerError,
           absl::StrCat(provider, ": ", status.message()), std::move(metadata));
  if (code == absl::StatusCode::kUnavailable) {
    SetRetryDelay(mapped.status, std::chrono::seconds(1));
  }
  return mapped;
}

TurnError ProtocolError(absl::string_view provider, absl::string_view detail) {
  return Make(absl::StatusCode::kUnavailable, "UPSTREAM_PROTOCOL_ERROR",
              kServerError,
              absl::StrCat(provider,
                           " sent a stream the gateway cannot read: ", detail),
              {{"provider", std::string(provider)}});
}

absl::Status RedactSecrets(const absl::Status& status,
                           const std::vector<std::string>& secrets) {
  if (status.ok()) return status;
  auto redact = [&secrets](std::string text) {
    for (const std::string& secret : secrets) {
      if (!secret.empty()) {
        absl::StrReplaceAll({{secret, "[redacted]"}}, &text);
      }
    }
    return text;
  };
  absl::Status redacted(status.code(), redact(std::string(status.message())));
  status.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) {
    google::rpc::ErrorInfo info;
    if (url == kErrorInfoUrl && info.ParseFromString(std::string(payload))) {
      for (auto& [key, value] : *info.mutable_metadata()) {
        value = redact(std::move(value));
      }
      redacted.SetPayload(url, absl::Cord(info.SerializeAsString()));
    } else {
      redacted.SetPayload(url, payload);
    }
  });
  return redacted;
}

}  // namespace assistants::upstream
