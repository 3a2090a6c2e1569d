#include "service/observability/run_metrics.h"

#include "service/runs/run_status.h"

namespace assistants::observability {

void RunMetrics::OnRunEnded(v1::RunStatus status, int64_t duration_ms) {
  metrics_->RunEnded(runs::RunStatusName(status),
                     static_cast<double>(duration_ms) / 1000.0);
}

}  // namespace assistants::observability
