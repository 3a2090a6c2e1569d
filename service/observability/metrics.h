// Metrics: the gateway's Prometheus series (one registry, every family
// declared here) and MetricsServer, which serves them as text on GET
// /metrics from its own host:port. The decorators and the interceptor in
// this folder record into it; nothing else in the gateway knows about it.
//
// Recording is cheap by construction: callers look up a labelled child once
// (per provider, per tool, per method and code) and keep the pointer;
// prometheus-cpp counters and histograms update without locks. Gauges of
// queue depths and open streams are sampled at scrape time from callbacks,
// so they cost nothing between scrapes.
#ifndef SERVICE_OBSERVABILITY_METRICS_H_
#define SERVICE_OBSERVABILITY_METRICS_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace prometheus {
class Exposer;
}  // namespace prometheus

namespace assistants::observability {

// The series of one RPC method finishing with one status code.
struct RpcSeries {
  prometheus::Counter* calls = nullptr;
  prometheus::Histogram* duration = nullptr;
};

// The series of one upstream backend (provider).
struct UpstreamSeries {
  prometheus::Histogram* duration = nullptr;
  prometheus::Histogram* time_to_first_token = nullptr;
  prometheus::Counter* input_tokens = nullptr;
  prometheus::Counter* output_tokens = nullptr;
  prometheus::Counter* retries = nullptr;
};

// The series of one tool.
struct ToolSeries {
  prometheus::Histogram* duration = nullptr;
};

class Metrics {
 public:
  Metrics();
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Labelled children. Each call takes the family's lock: look them up
  // once and keep the pointers (they live as long as this object).
  RpcSeries Rpc(absl::string_view method, absl::string_view code);
  UpstreamSeries Upstream(absl::string_view provider);
  prometheus::Counter& UpstreamError(absl::string_view provider,
                                     absl::string_view reason);
  ToolSeries Tool(absl::string_view tool);
  prometheus::Counter& ToolCall(absl::string_view tool,
                                absl::string_view outcome);
  // A run reached terminal `status` (lower case, as in the API) after
  // `seconds`.
  void RunEnded(absl::string_view status, double seconds);

  // A gauge read by calling `sample` at every scrape (queue depths, open
  // streams). `sample` runs on the metrics server's thread and must be
  // thread-safe; whatever it reads must outlive the MetricsServer (or until
  // ClearSampledGauges). `label_name` may be empty for an unlabelled gauge.
  void AddSampledGauge(const std::string& name, const std::string& help,
                       const std::string& label_name,
                       const std::string& label_value,
                       std::function<double()> sample);
  // Forgets every sampled gauge (before what they read is destroyed while
  // the metrics server still runs).
  void ClearSampledGauges();

  // Everything this object exposes, for an Exposer.
  std::vector<std::weak_ptr<prometheus::Collectable>> collectables() const;
  // The current values in Prometheus text format (tests, debugging).
  std::string Serialize() const;

 private:
  class SampledGauges;

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<SampledGauges> sampled_;
  prometheus::Family<prometheus::Counter>& rpcs_;
  prometheus::Family<prometheus::Histogram>& rpc_duration_;
  prometheus::Family<prometheus::Counter>& runs_;
  prometheus::Family<prometheus::Histogram>& run_duration_;
  prometheus::Family<prometheus::Counter>& tool_calls_;
  prometheus::Family<prometheus::Histogram>& tool_duration_;
  prometheus::Family<prometheus::Histogram>& upstream_duration_;
  prometheus::Family<prometheus::Histogram>& upstream_ttft_;
  prometheus::Family<prometheus::Counter>& upstream_tokens_;
  prometheus::Family<prometheus::Counter>& upstream_retries_;
  prometheus::Family<prometheus::Counter>& upstream_errors_;
};

// Serves a Metrics object over HTTP: GET /metrics on `listen` (host:port;
// port 0 picks a free port).
class MetricsServer {
 public:
  // Starts serving `metrics`, which must outlive the server. Errors:
  // UNAVAILABLE (reason LISTEN_FAILED, metadata "listen") when `listen`
  // cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& listen, Metrics* metrics);
  // Stops serving (waits for a scrape in progress).
  ~MetricsServer();

  // The port actually bound.
  int port() const { return port_; }

 private:
  MetricsServer() = default;

  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
};

}  // namespace assistants::observability

#endif  // SERVICE_OBSERVABILITY_METRICS_H_
