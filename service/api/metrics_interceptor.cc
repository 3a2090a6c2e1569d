#include "service/api/metrics_interceptor.h"

#include <chrono>

#include "absl/status/status.h"
#include "grpcpp/support/interceptor.h"

namespace assistants {
namespace {

using grpc::experimental::InterceptionHookPoints;
using Clock = std::chrono::steady_clock;

// One call's measurement. gRPC creates it when the call starts and deletes
// it when the call is done.
class RpcMetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  RpcMetricsInterceptor(RpcSeriesCache* cache, const char* method)
      : cache_(cache),
        method_(method != nullptr ? method : ""),
        start_(Clock::now()) {}

  ~RpcMetricsInterceptor() override {
    // A call torn down without sending a status (the server shutting down
    // under it) still counts, as CANCELLED.
    if (!recorded_) Record(grpc::StatusCode::CANCELLED);
  }

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      start_ = Clock::now();
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS) &&
        !recorded_) {
      Record(methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  void Record(grpc::StatusCode code) {
    recorded_ = true;
    const std::chrono::duration<double> elapsed = Clock::now() - start_;
    const observability::RpcSeries& series =
        cache_->Get(method_, static_cast<int>(code));
    series.calls->Increment();
    series.duration->Observe(elapsed.count());
  }

  RpcSeriesCache* const cache_;
  const absl::string_view method_;  // gRPC's, alive as long as the server
  Clock::time_point start_;
  bool recorded_ = false;
};

}  // namespace

const observability::RpcSeries& RpcSeriesCache::Get(absl::string_view method,
                                                    int code) {
  if (code < 0 || code >= kCodes) code = grpc::StatusCode::UNKNOWN;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = methods_.find(method);
    if (it != methods_.end()) {
      if (const observability::RpcSeries* series =
              it->second->by_code[code].load(std::memory_order_acquire)) {
        return *series;
      }
    }
  }
  absl::MutexLock lock(&mu_);
  std::unique_ptr<MethodEntry>& entry = methods_[method];
  if (entry == nullptr) entry = std::make_unique<MethodEntry>();
  if (const observability::RpcSeries* series =
          entry->by_code[code].load(std::memory_order_acquire)) {
    return *series;
  }
  // The names of grpc::StatusCode and absl::StatusCode agree ("OK",
  // "INVALID_ARGUMENT", ...), and so do their values.
  series_.push_back(std::make_unique<observability::RpcSeries>(metrics_->Rpc(
      method, absl::StatusCodeToString(static_cast<absl::StatusCode>(code)))));
  entry->by_code[code].store(series_.back().get(), std::memory_order_release);
  return *series_.back();
}

grpc::experimental::Interceptor*
RpcMetricsInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new RpcMetricsInterceptor(&cache_, info->method());
}

}  // namespace assistants
