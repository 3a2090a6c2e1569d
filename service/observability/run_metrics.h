// RunMetrics: the engine's RunObserver that counts runs by terminal status
// (assistants_runs_total) and observes their duration
// (assistants_run_duration_seconds).
#ifndef SERVICE_OBSERVABILITY_RUN_METRICS_H_
#define SERVICE_OBSERVABILITY_RUN_METRICS_H_

#include <cstdint>

#include "service/observability/metrics.h"
#include "service/runs/run_observer.h"

namespace assistants::observability {

class RunMetrics : public runs::RunObserver {
 public:
  // `metrics` must outlive this observer.
  explicit RunMetrics(Metrics* metrics) : metrics_(metrics) {}

  void OnRunEnded(v1::RunStatus status, int64_t duration_ms) override;

 private:
  Metrics* const metrics_;
};

}  // namespace assistants::observability

#endif  // SERVICE_OBSERVABILITY_RUN_METRICS_H_
