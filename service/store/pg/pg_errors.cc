#include "service/store/pg/pg_errors.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "service/common/errors.h"

namespace assistants::pg {

absl::Status RunLeaseLost(absl::string_view run_id, absl::string_view owner) {
  return MakeError(
      absl::StatusCode::kAborted, kRunLeaseLost,
      absl::StrCat("Replica '", owner, "' no longer holds the lease of run ",
                   run_id, "; its changes were not written."),
      {{"run_id", std::string(run_id)}, {"lease_owner", std::string(owner)}});
}

}  // namespace assistants::pg
