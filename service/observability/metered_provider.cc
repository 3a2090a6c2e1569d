#include "service/observability/metered_provider.h"

#include <chrono>
#include <optional>
#include <utility>

#include "service/common/errors.h"

namespace assistants::observability {
namespace {

using Clock = std::chrono::steady_clock;
using upstream::ProviderEvent;

// The first event that carries model output, for time to first token.
bool IsOutput(ProviderEvent::Type type) {
  switch (type) {
    case ProviderEvent::Type::kTextDelta:
    case ProviderEvent::Type::kRefusalDelta:
    case ProviderEvent::Type::kToolCallStarted:
    case ProviderEvent::Type::kToolCallArgumentsDelta:
    case ProviderEvent::Type::kToolCallDone:
    case ProviderEvent::Type::kCodeInterpreterStarted:
    case ProviderEvent::Type::kCodeInterpreterCodeDelta:
    case ProviderEvent::Type::kCodeInterpreterDone:
      return true;
    case ProviderEvent::Type::kUsage:
    case ProviderEvent::Type::kFinished:
      return false;
  }
  return false;
}

// Observes one turn on its way to the engine's observer. Runs on the HTTP
// client's thread, one event at a time, so its state needs no lock.
class MeteredTurnObserver final : public upstream::TurnObserver {
 public:
  MeteredTurnObserver(std::shared_ptr<upstream::TurnObserver> inner,
                      const UpstreamSeries* series, const std::string* name,
                      Metrics* metrics)
      : inner_(std::move(inner)),
        series_(series),
        name_(name),
        metrics_(metrics),
        start_(Clock::now()) {}

  void OnEvent(const ProviderEvent& event) override {
    if (!saw_output_ && IsOutput(event.type)) {
      saw_output_ = true;
      series_->time_to_first_token->Observe(Seconds());
    } else if (event.type == ProviderEvent::Type::kUsage) {
      series_->input_tokens->Increment(
          static_cast<double>(event.usage.prompt_tokens()));
      series_->output_tokens->Increment(
          static_cast<double>(event.usage.completion_tokens()));
    }
    inner_->OnEvent(event);
  }

  void OnDone(const std::optional<upstream::TurnError>& error) override {
    series_->duration->Observe(Seconds());
    if (error.has_value()) {
      std::string reason = ErrorReason(error->status);
      if (reason.empty())
        reason = absl::StatusCodeToString(error->status.code());
      // Errors are rare: the family lookup is fine here.
      metrics_->UpstreamError(*name_, reason).Increment();
    }
    inner_->OnDone(error);
  }

 private:
  double Seconds() const {
    return std::chrono::duration<double>(Clock::now() - start_).count();
  }

  const std::shared_ptr<upstream::TurnObserver> inner_;
  const UpstreamSeries* const series_;
  const std::string* const name_;
  Metrics* const metrics_;
  const Clock::time_point start_;
  bool saw_output_ = false;
};

}  // namespace

MeteredProvider::MeteredProvider(upstream::Provider* inner, std::string name,
                                 Metrics* metrics)
    : inner_(inner),
      name_(std::move(name)),
      metrics_(metrics),
      series_(metrics->Upstream(name_)) {}

std::unique_ptr<upstream::TurnCall> MeteredProvider::StreamTurn(
    const upstream::Turn& turn,
    std::shared_ptr<upstream::TurnObserver> observer) {
  return inner_->StreamTurn(
      turn, std::make_shared<MeteredTurnObserver>(std::move(observer), &series_,
                                                  &name_, metrics_));
}

MeteredProviders::MeteredProviders(const upstream::ProviderRegistry* registry,
                                   Metrics* metrics)
    : registry_(registry) {
  for (const std::string& name : registry->Names()) {
    absl::StatusOr<upstream::Provider*> provider = registry->Resolve(name);
    if (!provider.ok()) continue;  // Names() lists only resolvable ones
    providers_.emplace(
        name, std::make_unique<MeteredProvider>(*provider, name, metrics));
  }
}

absl::StatusOr<upstream::Provider*> MeteredProviders::Resolve(
    absl::string_view name) const {
  auto it = providers_.find(
      name.empty() ? absl::string_view(registry_->default_backend()) : name);
  if (it == providers_.end()) return registry_->Resolve(name);
  return it->second.get();
}

void CountUpstreamRetries(Metrics* metrics,
                          std::vector<upstream::BackendConfig>* backends) {
  for (upstream::BackendConfig& backend : *backends) {
    prometheus::Counter* retries =
        metrics->Upstream(backend.provider.name).retries;
    backend.provider.retry.on_retry = [retries] { retries->Increment(); };
  }
}

}  // namespace assistants::observability
