// Tenancy: which objects a caller's project may touch. Every assistant and
// thread belongs to the project that created it; messages, runs and steps
// belong to their thread's. A request naming another project's assistant or
// thread gets the answer a nonexistent id gets (NOT_FOUND), so ids leak
// nothing across projects (OpenAI: "threads are scoped to your
// organization").
//
// The check is generic: every `assistant_id` and `thread_id` field set in a
// request, at any depth of its singular message fields (CreateRun's
// options.assistant_id, RunEvents' start.create_run.thread_id, ...), names
// an object the project must own. New request types are covered without
// touching this file, as long as they keep those field names.
#ifndef SERVICE_CORE_TENANCY_H_
#define SERVICE_CORE_TENANCY_H_

#include <cstddef>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/message.h"
#include "service/store/store.h"

namespace assistants {

class Tenancy {
 public:
  // `store` must outlive this object. Owners are cached (a project never
  // changes and ids are never reused), at most `cache_entries` of them.
  explicit Tenancy(Store* store, size_t cache_entries = 100'000)
      : store_(store), cache_entries_(cache_entries) {}

  // OK when every assistant and thread `request` names belongs to `project`
  // (or does not exist: the operation itself then answers NOT_FOUND).
  // NOT_FOUND (ASSISTANT_NOT_FOUND / THREAD_NOT_FOUND) for another project's
  // object. Ids that are not well-formed are left to the operation's own
  // validation (INVALID_ARGUMENT). Blocks on the store on a cache miss.
  absl::Status CheckAccess(absl::string_view project,
                           const google::protobuf::Message& request);

 private:
  absl::Status CheckOwned(absl::string_view project, OwnedKind kind,
                          const std::string& id);
  absl::Status CheckFields(absl::string_view project,
                           const google::protobuf::Message& message, int depth);

  Store* store_;
  const size_t cache_entries_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::string> owners_ ABSL_GUARDED_BY(mu_);
};

}  // namespace assistants

#endif  // SERVICE_CORE_TENANCY_H_
