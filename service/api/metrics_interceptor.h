// RpcMetricsInterceptorFactory: a gRPC server interceptor that counts every
// call by method and status code and observes its duration (from the
// client's initial metadata to the status being sent) in
// assistants_rpcs_total / assistants_rpc_duration_seconds. Server streams
// (RunEvents) count once, when they end.
#ifndef SERVICE_API_METRICS_INTERCEPTOR_H_
#define SERVICE_API_METRICS_INTERCEPTOR_H_

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/support/server_interceptor.h"
#include "service/observability/metrics.h"

namespace assistants {

// The labelled series of each (method, code), created on first use and
// then found without taking a writer lock.
class RpcSeriesCache {
 public:
  // `metrics` must outlive the cache.
  explicit RpcSeriesCache(observability::Metrics* metrics)
      : metrics_(metrics) {}

  // `code` is a grpc::StatusCode value; unknown values count as UNKNOWN.
  const observability::RpcSeries& Get(absl::string_view method, int code);

 private:
  static constexpr int kCodes = 17;  // OK .. UNAUTHENTICATED
  struct MethodEntry {
    std::array<std::atomic<const observability::RpcSeries*>, kCodes> by_code{};
  };

  observability::Metrics* const metrics_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<MethodEntry>> methods_
      ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<observability::RpcSeries>> series_
      ABSL_GUARDED_BY(mu_);
};

class RpcMetricsInterceptorFactory
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // `metrics` must outlive the server the factory is given to.
  explicit RpcMetricsInterceptorFactory(observability::Metrics* metrics)
      : cache_(metrics) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  RpcSeriesCache cache_;
};

}  // namespace assistants

#endif  // SERVICE_API_METRICS_INTERCEPTOR_H_
