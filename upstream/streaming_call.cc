#include "upstream/streaming_call.h"

#include <atomic>
#include <exception>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "upstream/error_mapping.h"

namespace assistants::upstream {
namespace {

// Error bodies are kept up to this size; the rest is dropped.
constexpr size_t kMaxErrorBodyBytes = 64 * 1024;

class StreamingCall final : public HttpStreamHandler {
 public:
  StreamingCall(std::string provider, std::vector<std::string> secrets,
                HttpClient* http, std::unique_ptr<StreamTranslator> translator,
                std::shared_ptr<TurnObserver> observer)
      : provider_(std::move(provider)),
        secrets_(std::move(secrets)),
        http_(http),
        translator_(std::move(translator)),
        observer_(std::move(observer)) {}

  void set_request_id(HttpClient::RequestId id) {
    request_id_ = id;
    if (abort_wanted_) http_->Cancel(id);  // a second Cancel is ignored
  }

  void OnHeaders(const HttpResponseHead& head) override { head_ = head; }

  void OnBody(absl::string_view chunk) override {
    if (finished_) return;
    if (head_.status < 200 || head_.status > 299) {
      size_t room =
          kMaxErrorBodyBytes - std::min(kMaxErrorBodyBytes, error_body_.size());
      absl::string_view kept = chunk.substr(0, room);
      error_body_.append(kept.data(), kept.size());
      return;
    }
    bool within_limits = parser_.Feed(chunk, [this](SseEvent&& event) {
      if (finished_) return;
      std::optional<TurnError> error =
          Translate([&] { return translator_->OnEvent(event, *observer_); });
      if (error.has_value()) {
        Finish(std::move(error), /*abort_transfer=*/true);
      } else if (translator_->done()) {
        Finish(std::nullopt, /*abort_transfer=*/false);
      }
    });
    if (!within_limits && !finished_) {
      Finish(ProtocolError(provider_, "an event exceeded the size limit"),
             /*abort_transfer=*/true);
    }
  }

  void OnComplete(const absl::Status& status,
                  const HttpTransferStats& stats) override {
    if (finished_) return;
    if (!status.ok()) {
      Finish(MapTransportError(provider_, status), false);
    } else if (head_.status < 200 || head_.status > 299) {
      Finish(MapHttpError(provider_, head_, error_body_), false);
    } else {
      std::optional<TurnError> error =
          Translate([&] { return translator_->OnEnd(*observer_); });
      if (!error.has_value() && !translator_->done()) {
        error =
            ProtocolError(provider_, "the stream ended before the turn did");
      }
      Finish(std::move(error), false);
    }
  }

 private:
  // Runs a translator step; nothing may throw on the HTTP client's thread,
  // so an unexpected exception (malformed upstream JSON reaching a path that
  // throws) ends the turn as a protocol error instead of the process.
  template <typename Step>
  std::optional<TurnError> Translate(Step step) {
    try {
      return step();
    } catch (const std::exception& e) {
      return ProtocolError(provider_, e.what());
    }
  }

  void Finish(std::optional<TurnError> error, bool abort_transfer) {
    finished_ = true;
    // Whatever the upstream said may quote our credentials back.
    if (error.has_value()) {
      error->status = RedactSecrets(error->status, secrets_);
    }
    observer_->OnDone(error);
    // Stop reading a stream we gave up on so its connection is freed. The
    // id may not be known yet (the transfer can get this far before Start
    // returns): set_request_id() then cancels.
    if (abort_transfer) {
      abort_wanted_ = true;
      if (HttpClient::RequestId id = request_id_; id != 0) http_->Cancel(id);
    }
  }

  const std::string provider_;
  // Credential values that must never reach an error message.
  const std::vector<std::string> secrets_;
  HttpClient* const http_;
  std::unique_ptr<StreamTranslator> translator_;
  std::shared_ptr<TurnObserver> observer_;
  std::atomic<HttpClient::RequestId> request_id_{0};
  std::atomic<bool> abort_wanted_{false};
  HttpResponseHead head_;
  std::string error_body_;
  SseParser parser_;
  bool finished_ = false;  // only touched on the HTTP client's thread
};

class StreamingTurnCall final : public TurnCall {
 public:
  StreamingTurnCall(HttpClient* http, HttpClient::RequestId id)
      : http_(http), id_(id) {}
  void Cancel() override { http_->Cancel(id_); }

 private:
  HttpClient* const http_;
  const HttpClient::RequestId id_;
};

}  // namespace

std::unique_ptr<TurnCall> StartStreamingTurn(
    HttpClient* http, const ProviderConfig& config, absl::string_view path,
    const nlohmann::json& body, std::unique_ptr<StreamTranslator> translator,
    std::shared_ptr<TurnObserver> observer) {
  HttpRequest request;
  request.method = "POST";
  request.url = absl::StrCat(config.base_url, path);
  request.headers = {{"Content-Type", "application/json"},
                     {"Accept", "text/event-stream"}};
  if (!config.api_key.empty()) {
    request.headers.emplace_back("Authorization",
                                 absl::StrCat("Bearer ", config.api_key));
  }
  if (!config.organization.empty()) {
    request.headers.emplace_back("OpenAI-Organization", config.organization);
  }
  if (!config.project.empty()) {
    request.headers.emplace_back("OpenAI-Project", config.project);
  }
  for (const auto& header : config.extra_headers) {
    request.headers.push_back(header);
    // Extra headers often carry credentials (Azure's api-key, x-api-key).
    request.secret_headers.push_back(header.first);
  }
  request.body = body.dump();
  request.timeouts = config.timeouts;
  request.retry = config.retry;

  std::vector<std::string> secrets = {config.api_key};
  for (const auto& header : config.extra_headers) {
    secrets.push_back(header.second);
  }
  auto call = std::make_shared<StreamingCall>(config.name, std::move(secrets),
                                              http, std::move(translator),
                                              std::move(observer));
  HttpClient::RequestId id = http->Start(std::move(request), call);
  call->set_request_id(id);
  return std::make_unique<StreamingTurnCall>(http, id);
}

}  // namespace assistants::upstream
