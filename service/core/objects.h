// Helpers shared by the resource core and the run engine for building the
// contract's objects: list envelopes, new messages, request-relative error
// paths.
#ifndef SERVICE_CORE_OBJECTS_H_
#define SERVICE_CORE_OBJECTS_H_

#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "assistants/v1/message.pb.h"
#include "service/store/store.h"

namespace assistants {

// The list envelope shared by every List RPC ({object, data, first_id,
// last_id, has_more}).
template <typename Response, typename T>
Response ToListResponse(Page<T> page) {
  Response response;
  response.set_object("list");
  response.set_has_more(page.has_more);
  if (!page.items.empty()) {
    response.set_first_id(page.items.front().id());
    response.set_last_id(page.items.back().id());
  }
  for (T& item : page.items) *response.add_data() = std::move(item);
  return response;
}

// A user (or assistant) message built from a client's input, completed.
v1::Message NewMessage(const v1::MessageInput& input,
                       absl::string_view thread_id, int64_t now_seconds);

// The store names a bad cursor "after" / "before"; the client sent it as
// "options.after" / "options.before", so errors point there.
absl::Status InRequestPaths(absl::Status status);

}  // namespace assistants

#endif  // SERVICE_CORE_OBJECTS_H_
