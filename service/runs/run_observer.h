// The RunObserver hook: what the engine tells an observer (metrics) about
// runs, without knowing who listens. Calls come from the engine's threads
// and must not block.
#ifndef SERVICE_RUNS_RUN_OBSERVER_H_
#define SERVICE_RUNS_RUN_OBSERVER_H_

#include <cstdint>

#include "assistants/v1/run.pb.h"

namespace assistants::runs {

class RunObserver {
 public:
  virtual ~RunObserver() = default;
  // A run reached the terminal `status` (completed, failed, cancelled,
  // expired, incomplete), `duration_ms` after this process began driving it:
  // its creation, or its resumption after a restart.
  virtual void OnRunEnded(v1::RunStatus status, int64_t duration_ms) = 0;
};

}  // namespace assistants::runs

#endif  // SERVICE_RUNS_RUN_OBSERVER_H_
