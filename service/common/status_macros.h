// RETURN_IF_ERROR and ASSIGN_OR_RETURN: Abseil 20220623 ships no status
// macros, so the project defines them once, here.
#ifndef SERVICE_COMMON_STATUS_MACROS_H_
#define SERVICE_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define ASSISTANTS_CONCAT_INNER_(a, b) a##b
#define ASSISTANTS_CONCAT_(a, b) ASSISTANTS_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define RETURN_IF_ERROR(expr)                                \
  do {                                                       \
    const ::absl::Status assistants_status_ = (expr);        \
    if (!assistants_status_.ok()) return assistants_status_; \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, F());` assigns the value of an OK StatusOr and
// returns its status from the enclosing function otherwise.
#define ASSIGN_OR_RETURN(lhs, expr)                                          \
  ASSIGN_OR_RETURN_IMPL_(ASSISTANTS_CONCAT_(assistants_statusor_, __LINE__), \
                         lhs, expr)

#define ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                           \
  if (!statusor.ok()) return statusor.status();     \
  lhs = std::move(statusor).value()

#endif  // SERVICE_COMMON_STATUS_MACROS_H_
