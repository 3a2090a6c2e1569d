// Upstream metrics: MeteredProvider, a Provider decorator that observes
// each model turn (request duration, time to first token, tokens from the
// turn's usage, errors by reason), MeteredProviders, which wraps every
// backend of a ProviderRegistry behind the engine's ProviderResolver, and
// CountUpstreamRetries, which hooks the HTTP client's retry loop.
#ifndef SERVICE_OBSERVABILITY_METERED_PROVIDER_H_
#define SERVICE_OBSERVABILITY_METERED_PROVIDER_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "service/observability/metrics.h"
#include "upstream/provider.h"
#include "upstream/provider_registry.h"

namespace assistants::observability {

class MeteredProvider : public upstream::Provider {
 public:
  // Records under provider label `name`. `inner` and `metrics` must
  // outlive this provider.
  MeteredProvider(upstream::Provider* inner, std::string name,
                  Metrics* metrics);

  std::unique_ptr<upstream::TurnCall> StreamTurn(
      const upstream::Turn& turn,
      std::shared_ptr<upstream::TurnObserver> observer) override;

 private:
  upstream::Provider* const inner_;
  const std::string name_;
  Metrics* const metrics_;
  // Looked up once: the per-event path only touches these pointers.
  const UpstreamSeries series_;
};

// Every backend of a registry, metered; Resolve has the registry's
// contract (empty name: the default; unknown: UNKNOWN_UPSTREAM).
class MeteredProviders {
 public:
  // `registry` and `metrics` must outlive this object.
  MeteredProviders(const upstream::ProviderRegistry* registry,
                   Metrics* metrics);

  absl::StatusOr<upstream::Provider*> Resolve(absl::string_view name) const;

 private:
  const upstream::ProviderRegistry* const registry_;
  std::map<std::string, std::unique_ptr<MeteredProvider>, std::less<>>
      providers_;
};

// Makes the HTTP client count every retry of a backend's requests in
// assistants_upstream_retries_total{provider}. Call before the providers
// are built from `backends`; `metrics` must outlive them.
void CountUpstreamRetries(Metrics* metrics,
                          std::vector<upstream::BackendConfig>* backends);

}  // namespace assistants::observability

#endif  // SERVICE_OBSERVABILITY_METERED_PROVIDER_H_
