#include "service/observability/metrics.h"

#include <exception>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "prometheus/client_metric.h"
#include "prometheus/exposer.h"
#include "prometheus/metric_family.h"
#include "prometheus/text_serializer.h"
#include "service/common/errors.h"

namespace assistants::observability {
namespace {

using prometheus::Histogram;

// Bucket bounds in seconds, per kind of latency. RPCs and tool calls are
// mostly sub-millisecond to seconds on loopback; upstream turns and runs
// span model latencies (seconds to minutes).
const Histogram::BucketBoundaries& RpcBuckets() {
  static const auto* buckets = new Histogram::BucketBoundaries{
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
      0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
  return *buckets;
}

const Histogram::BucketBoundaries& ToolBuckets() {
  static const auto* buckets = new Histogram::BucketBoundaries{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
      0.25,   0.5,   1,      2.5,   5,    10,    30,   60};
  return *buckets;
}

const Histogram::BucketBoundaries& UpstreamBuckets() {
  static const auto* buckets = new Histogram::BucketBoundaries{
      0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
      2.5,   5,    10,    30,   60,  120,  300};
  return *buckets;
}

const Histogram::BucketBoundaries& RunBuckets() {
  static const auto* buckets = new Histogram::BucketBoundaries{
      0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800};
  return *buckets;
}

template <typename Builder>
auto& Register(Builder builder, prometheus::Registry& registry,
               const char* name, const char* help) {
  return builder.Name(name).Help(help).Register(registry);
}

}  // namespace

// Gauges whose values are read from callbacks when scraped.
class Metrics::SampledGauges : public prometheus::Collectable {
 public:
  void Add(const std::string& name, const std::string& help,
           const std::string& label_name, const std::string& label_value,
           std::function<double()> sample) {
    absl::MutexLock lock(&mu_);
    gauges_.push_back(
        Gauge{name, help, label_name, label_value, std::move(sample)});
  }

  void Clear() {
    absl::MutexLock lock(&mu_);
    gauges_.clear();
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    // Sampling under the lock: Clear() waits for a scrape in progress, so
    // a callback never runs after its owner asked to forget it.
    absl::MutexLock lock(&mu_);
    std::map<std::string, prometheus::MetricFamily> families;
    for (const Gauge& gauge : gauges_) {
      prometheus::MetricFamily& family = families[gauge.name];
      family.name = gauge.name;
      family.help = gauge.help;
      family.type = prometheus::MetricType::Gauge;
      prometheus::ClientMetric metric;
      if (!gauge.label_name.empty()) {
        metric.label.push_back({gauge.label_name, gauge.label_value});
      }
      metric.gauge.value = gauge.sample();
      family.metric.push_back(std::move(metric));
    }
    std::vector<prometheus::MetricFamily> out;
    out.reserve(families.size());
    for (auto& [name, family] : families) out.push_back(std::move(family));
    return out;
  }

 private:
  struct Gauge {
    std::string name;
    std::string help;
    std::string label_name;
    std::string label_value;
    std::function<double()> sample;
  };
  mutable absl::Mutex mu_;
  std::vector<Gauge> gauges_ ABSL_GUARDED_BY(mu_);
};

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      sampled_(std::make_shared<SampledGauges>()),
      rpcs_(Register(prometheus::BuildCounter(), *registry_,
                     "assistants_rpcs_total",
                     "gRPC calls served, by method and status code")),
      rpc_duration_(Register(prometheus::BuildHistogram(), *registry_,
                             "assistants_rpc_duration_seconds",
                             "gRPC call duration from the client's metadata "
                             "to the status, by method and status code")),
      runs_(Register(prometheus::BuildCounter(), *registry_,
                     "assistants_runs_total",
                     "runs that reached a terminal status, by status")),
      run_duration_(Register(prometheus::BuildHistogram(), *registry_,
                             "assistants_run_duration_seconds",
                             "run duration from creation (or resumption "
                             "after a restart) to its terminal status")),
      tool_calls_(Register(prometheus::BuildCounter(), *registry_,
                           "assistants_tool_calls_total",
                           "function calls dispatched to tool workers, by "
                           "tool and outcome")),
      tool_duration_(Register(prometheus::BuildHistogram(), *registry_,
                              "assistants_tool_call_duration_seconds",
                              "tool worker call duration, dispatch to "
                              "output, by tool")),
      upstream_duration_(
          Register(prometheus::BuildHistogram(), *registry_,
                   "assistants_upstream_request_duration_seconds",
                   "model turn duration, request to the end of the stream, by "
                   "provider")),
      upstream_ttft_(Register(
          prometheus::BuildHistogram(), *registry_,
          "assistants_upstream_time_to_first_token_seconds",
          "time from a model request to its first text or tool-call delta, "
          "by provider")),
      upstream_tokens_(Register(prometheus::BuildCounter(), *registry_,
                                "assistants_upstream_tokens_total",
                                "tokens reported by the upstream's usage, by "
                                "provider and kind (input, output)")),
      upstream_retries_(Register(prometheus::BuildCounter(), *registry_,
                                 "assistants_upstream_retries_total",
                                 "upstream HTTP attempts beyond the first, "
                                 "by provider")),
      upstream_errors_(Register(prometheus::BuildCounter(), *registry_,
                                "assistants_upstream_errors_total",
                                "model turns that ended with an error, by "
                                "provider and reason (ErrorInfo)")) {}

Metrics::~Metrics() = default;

RpcSeries Metrics::Rpc(absl::string_view method, absl::string_view code) {
  prometheus::Labels labels{{"method", std::string(method)},
                            {"code", std::string(code)}};
  return RpcSeries{&rpcs_.Add(labels),
                   &rpc_duration_.Add(labels, RpcBuckets())};
}

UpstreamSeries Metrics::Upstream(absl::string_view provider) {
  const std::string name(provider);
  UpstreamSeries series;
  series.duration =
      &upstream_duration_.Add({{"provider", name}}, UpstreamBuckets());
  series.time_to_first_token =
      &upstream_ttft_.Add({{"provider", name}}, UpstreamBuckets());
  series.input_tokens =
      &upstream_tokens_.Add({{"provider", name}, {"kind", "input"}});
  series.output_tokens =
      &upstream_tokens_.Add({{"provider", name}, {"kind", "output"}});
  series.retries = &upstream_retries_.Add({{"provider", name}});
  return series;
}

prometheus::Counter& Metrics::UpstreamError(absl::string_view provider,
                                            absl::string_view reason) {
  return upstream_errors_.Add(
      {{"provider", std::string(provider)}, {"reason", std::string(reason)}});
}

ToolSeries Metrics::Tool(absl::string_view tool) {
  return ToolSeries{
      &tool_duration_.Add({{"tool", std::string(tool)}}, ToolBuckets())};
}

prometheus::Counter& Metrics::ToolCall(absl::string_view tool,
                                       absl::string_view outcome) {
  return tool_calls_.Add(
      {{"tool", std::string(tool)}, {"outcome", std::string(outcome)}});
}

void Metrics::RunEnded(absl::string_view status, double seconds) {
  // Few runs per second at most: the label lookup per run is fine.
  prometheus::Labels labels{{"status", std::string(status)}};
  runs_.Add(labels).Increment();
  run_duration_.Add(labels, RunBuckets()).Observe(seconds);
}

void Metrics::AddSampledGauge(const std::string& name, const std::string& help,
                              const std::string& label_name,
                              const std::string& label_value,
                              std::function<double()> sample) {
  sampled_->Add(name, help, label_name, label_value, std::move(sample));
}

void Metrics::ClearSampledGauges() { sampled_->Clear(); }

std::vector<std::weak_ptr<prometheus::Collectable>> Metrics::collectables()
    const {
  return {registry_, sampled_};
}

std::string Metrics::Serialize() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  std::vector<prometheus::MetricFamily> sampled = sampled_->Collect();
  families.insert(families.end(), sampled.begin(), sampled.end());
  return prometheus::TextSerializer().Serialize(families);
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& listen, Metrics* metrics) {
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  try {
    // One thread: scrapes are rare and each is cheap.
    server->exposer_ = std::make_unique<prometheus::Exposer>(listen, 1);
  } catch (const std::exception& error) {
    return MakeError(
        absl::StatusCode::kUnavailable, "LISTEN_FAILED",
        absl::StrCat("cannot serve metrics on ", listen, ": ", error.what()),
        {{"listen", listen}});
  }
  std::vector<int> ports = server->exposer_->GetListeningPorts();
  if (ports.empty()) {
    return MakeError(absl::StatusCode::kUnavailable, "LISTEN_FAILED",
                     absl::StrCat("cannot serve metrics on ", listen),
                     {{"listen", listen}});
  }
  server->port_ = ports.front();
  for (const auto& collectable : metrics->collectables()) {
    server->exposer_->RegisterCollectable(collectable);
  }
  return server;
}

MetricsServer::~MetricsServer() = default;

}  // namespace assistants::observability
