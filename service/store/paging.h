// Paging arithmetic shared by the stores: a ListQuery plus the insertion
// sequence numbers of its cursors become the window of sequence numbers a
// page is drawn from.
#ifndef SERVICE_STORE_PAGING_H_
#define SERVICE_STORE_PAGING_H_

#include <cstdint>
#include <limits>
#include <optional>

#include "service/store/store.h"

namespace assistants {

// The exclusive sequence-number window a page is drawn from, and how to walk
// it. A `before` cursor pages backwards from itself (the page holds the items
// closest to it), so the walk runs against the requested order and the page
// is reversed at the end.
struct PageWindow {
  int64_t lo = std::numeric_limits<int64_t>::min();
  int64_t hi = std::numeric_limits<int64_t>::max();
  bool upward = true;
  bool reverse = false;
};

inline PageWindow MakePageWindow(const ListQuery& query,
                                 std::optional<int64_t> after,
                                 std::optional<int64_t> before) {
  PageWindow w;
  if (query.ascending) {
    if (after) w.lo = *after;
    if (before) w.hi = *before;
  } else {
    if (after) w.hi = *after;
    if (before) w.lo = *before;
  }
  const bool has_before = before.has_value();
  w.upward = query.ascending != has_before;
  w.reverse = has_before;
  return w;
}

}  // namespace assistants

#endif  // SERVICE_STORE_PAGING_H_
