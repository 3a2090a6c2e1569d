#include "service/core/idempotency.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "service/common/errors.h"
#include "service/core/validation.h"

namespace assistants {

std::string RequestFingerprint(const google::protobuf::Message& request) {
  std::unique_ptr<google::protobuf::Message> copy(request.New());
  copy->CopyFrom(request);
  const google::protobuf::FieldDescriptor* request_id =
      copy->GetDescriptor()->FindFieldByName("request_id");
  if (request_id != nullptr) {
    copy->GetReflection()->ClearField(copy.get(), request_id);
  }
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    copy->SerializeToCodedStream(&coded);
  }
  return bytes;
}

absl::Status IdempotencyGuard::CorruptResponse() {
  return MakeError(absl::StatusCode::kDataLoss, "STORE_CORRUPT",
                   "stored idempotent response is unreadable");
}

absl::Mutex* IdempotencyGuard::KeyLock(const std::string& key) {
  absl::MutexLock lock(&key_locks_mu_);
  std::unique_ptr<KeyLockEntry>& entry = key_locks_[key];
  if (entry == nullptr) entry = std::make_unique<KeyLockEntry>();
  ++entry->users;
  return &entry->mu;
}

void IdempotencyGuard::ReleaseKeyLock(const std::string& key) {
  absl::MutexLock lock(&key_locks_mu_);
  auto it = key_locks_.find(key);
  if (it != key_locks_.end() && --it->second->users == 0) key_locks_.erase(it);
}

absl::StatusOr<std::optional<IdempotencyRecord>> IdempotencyGuard::Replayable(
    const std::string& key, const std::string& fingerprint,
    absl::string_view request_id) {
  ASSIGN_OR_RETURN(std::optional<IdempotencyRecord> record,
                   store_->GetIdempotencyRecord(key));
  if (!record.has_value()) return std::nullopt;
  if (record->created_at_ms < clock_->NowMillis() - kIdempotencyWindowMs) {
    // Expired: forget it (and its peers) so the key can be used afresh.
    RETURN_IF_ERROR(store_
                        ->PruneIdempotencyRecords(clock_->NowMillis() -
                                                  kIdempotencyWindowMs)
                        .status());
    return std::nullopt;
  }
  if (record->request_fingerprint != fingerprint) {
    return MakeError(
        absl::StatusCode::kFailedPrecondition, "IDEMPOTENCY_KEY_REUSED",
        "request_id was already used with a different request",
        {{"field", "request_id"}, {"request_id", std::string(request_id)}});
  }
  return record;
}

absl::StatusOr<bool> IdempotencyGuard::RunBytes(
    absl::string_view method, absl::string_view project,
    absl::string_view request_id, const std::string& fingerprint,
    std::string* response,
    const std::function<absl::Status(IdempotencyRecord*)>& execute) {
  RETURN_IF_ERROR(ValidateRequestId(request_id));
  // The default project keeps the key format from before projects existed,
  // so records written by an older version still deduplicate. Other
  // projects' keys put a control character (which no request_id may hold)
  // after the project, so no default request_id can spell them.
  const std::string key =
      project == kDefaultProject
          ? absl::StrCat(method, "/", request_id)
          : absl::StrCat(method, "/", project, "\x1f", request_id);
  absl::Mutex* key_mu = KeyLock(key);
  absl::StatusOr<bool> result = [&]() -> absl::StatusOr<bool> {
    absl::MutexLock key_lock(key_mu);
    ASSIGN_OR_RETURN(std::optional<IdempotencyRecord> previous,
                     Replayable(key, fingerprint, request_id));
    if (previous.has_value()) {
      *response = std::move(previous->response);
      return true;
    }
    IdempotencyRecord record{key, fingerprint, "", clock_->NowMillis()};
    absl::Status done = execute(&record);
    if (ErrorReason(done) == "IDEMPOTENCY_CONFLICT") {
      // Another process stored the same key first: answer as it did.
      ASSIGN_OR_RETURN(previous, Replayable(key, fingerprint, request_id));
      if (previous.has_value()) {
        *response = std::move(previous->response);
        return true;
      }
    }
    RETURN_IF_ERROR(done);
    *response = std::move(record.response);
    return false;
  }();
  ReleaseKeyLock(key);
  return result;
}

}  // namespace assistants
