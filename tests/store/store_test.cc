// The Store contract (service/store/store.h) as one typed test suite, run
// against MemoryStore, SqliteStore (on a file in a fresh temp dir) and
// PgStore (in a fresh schema, when $ASSISTANTS_TEST_PG_URL is set), plus
// SQLite-only tests for durability, schema versions, corruption and rollback.
#include "service/store/store.h"

#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "service/common/errors.h"
#include "service/common/ids.h"
#include "service/store/memory_store.h"
#include "service/store/pg/pg_store.h"
#include "service/store/sqlite_store.h"
#include "tests/support/pg_test_db.h"

namespace assistants {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAreArray;

// A fresh directory per test, so SQLite files never leak between tests.
std::string MakeTempDir() {
  std::string tmpl = ::testing::TempDir() + "/store_test_XXXXXX";
  char* dir = mkdtemp(tmpl.data());
  EXPECT_NE(dir, nullptr) << "mkdtemp failed";
  return tmpl;
}

// Each factory makes a fresh, empty store holding at most `limit` messages
// per thread; whatever must outlive the store (a database schema) goes into
// `keep`, released after the store.
struct MemoryFactory {
  static bool Available() { return true; }
  static std::unique_ptr<Store> Make(const std::string& dir, int64_t limit,
                                     std::shared_ptr<void>* keep) {
    return std::make_unique<MemoryStore>(limit);
  }
};

struct SqliteFactory {
  static bool Available() { return true; }
  static std::unique_ptr<Store> Make(const std::string& dir, int64_t limit,
                                     std::shared_ptr<void>* keep) {
    SqliteStoreOptions options;
    options.max_messages_per_thread = limit;
    absl::StatusOr<std::unique_ptr<SqliteStore>> store =
        SqliteStore::Open(dir + "/store.db", options);
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return nullptr;
    return std::move(store).value();
  }
};

// PgStore in a schema of its own ($ASSISTANTS_TEST_PG_URL; skipped without).
struct PgFactory {
  static bool Available() { return test_support::PgTestDb::Available(); }
  static std::unique_ptr<Store> Make(const std::string& dir, int64_t limit,
                                     std::shared_ptr<void>* keep) {
    auto db = std::make_shared<test_support::PgTestDb>();
    EXPECT_TRUE(db->status().ok()) << db->status();
    if (!db->status().ok()) return nullptr;
    PgStoreOptions options;
    options.pool_size = 4;
    options.max_messages_per_thread = limit;
    absl::StatusOr<std::unique_ptr<PgStore>> store =
        PgStore::Open(db->url(), options);
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return nullptr;
    *keep = std::move(db);
    return std::move(store).value();
  }
};

struct FactoryNames {
  template <typename T>
  static std::string GetName(int) {
    if (std::is_same_v<T, MemoryFactory>) return "Memory";
    if (std::is_same_v<T, PgFactory>) return "Postgres";
    return "Sqlite";
  }
};

v1::Assistant MakeAssistant(const std::string& name = "helper") {
  v1::Assistant assistant;
  assistant.set_id(NewId(kAssistantPrefix));
  assistant.set_object("assistant");
  assistant.set_created_at(1700000000);
  assistant.set_model("gpt-4o");
  assistant.set_name(name);
  (*assistant.mutable_metadata())["k1"] = "v1";
  (*assistant.mutable_metadata())["k2"] = "v2";
  return assistant;
}

v1::Thread MakeThread() {
  v1::Thread thread;
  thread.set_id(NewId(kThreadPrefix));
  thread.set_object("thread");
  thread.set_created_at(1700000000);
  (*thread.mutable_metadata())["topic"] = "tests";
  return thread;
}

v1::Message MakeMessage(const std::string& thread_id,
                        const std::string& text = "hello",
                        const std::string& run_id = "") {
  v1::Message message;
  message.set_id(NewId(kMessagePrefix));
  message.set_object("thread.message");
  message.set_created_at(1700000000);
  message.set_thread_id(thread_id);
  message.set_role(v1::MESSAGE_ROLE_USER);
  message.set_run_id(run_id);
  message.add_content()->mutable_text()->set_value(text);
  return message;
}

IdempotencyRecord MakeRecord(const std::string& key, int64_t created_at_ms) {
  IdempotencyRecord record;
  record.key = key;
  record.request_fingerprint = absl::StrCat("fp-", key, std::string(1, '\0'));
  record.response = absl::StrCat("resp-", key, std::string(1, '\xff'));
  record.created_at_ms = created_at_ms;
  return record;
}

v1::Run MakeRun(const std::string& thread_id,
                v1::RunStatus status = v1::RUN_STATUS_QUEUED) {
  v1::Run run;
  run.set_id(NewId(kRunPrefix));
  run.set_object("thread.run");
  run.set_created_at(1700000000);
  run.set_thread_id(thread_id);
  run.set_assistant_id("asst_test");
  run.set_status(status);
  run.set_model("gpt-4o");
  (*run.mutable_metadata())["k"] = "v";
  return run;
}

v1::RunStep MakeStep(const v1::Run& run, v1::RunStepStatus status =
                                             v1::RUN_STEP_STATUS_IN_PROGRESS) {
  v1::RunStep step;
  step.set_id(NewId(kStepPrefix));
  step.set_object("thread.run.step");
  step.set_created_at(1700000000);
  step.set_assistant_id(run.assistant_id());
  step.set_thread_id(run.thread_id());
  step.set_run_id(run.id());
  step.set_type(v1::RUN_STEP_TYPE_MESSAGE_CREATION);
  step.set_status(status);
  return step;
}

v1::RunEvent MakeEvent(int64_t sequence,
                       const std::string& name = "thread.message.delta") {
  v1::RunEvent event;
  event.set_sequence(sequence);
  event.set_event(name);
  event.set_created_at_ms(1700000000000 + sequence);
  event.mutable_message_delta()->set_id(absl::StrCat("msg_", sequence));
  return event;
}

// Events first..last, in order.
std::vector<v1::RunEvent> MakeEvents(int64_t first, int64_t last) {
  std::vector<v1::RunEvent> events;
  for (int64_t sequence = first; sequence <= last; ++sequence) {
    events.push_back(MakeEvent(sequence));
  }
  return events;
}

RunCreation MakeCreation(const v1::Run& run,
                         std::vector<v1::RunEvent> events = {}) {
  RunCreation creation;
  creation.run = run;
  creation.events = std::move(events);
  return creation;
}

RunChanges ChangesFor(const v1::Run& run) {
  RunChanges changes;
  changes.thread_id = run.thread_id();
  changes.run_id = run.id();
  return changes;
}

std::vector<int64_t> Sequences(const std::vector<v1::RunEvent>& events) {
  std::vector<int64_t> sequences;
  for (const v1::RunEvent& event : events) {
    sequences.push_back(event.sequence());
  }
  return sequences;
}

// The ErrorInfo metadata `key` of `status` (empty when absent).
std::string Metadata(const absl::Status& status, const std::string& key) {
  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  if (!info.has_value()) return "";
  auto it = info->metadata().find(key);
  return it == info->metadata().end() ? "" : it->second;
}

template <typename T>
std::vector<std::string> Ids(const std::vector<T>& items) {
  std::vector<std::string> ids;
  for (const T& item : items) ids.push_back(item.id());
  return ids;
}

ListQuery Query(int limit, bool ascending, std::string after = "",
                std::string before = "") {
  ListQuery query;
  query.limit = limit;
  query.ascending = ascending;
  query.after = std::move(after);
  query.before = std::move(before);
  return query;
}

void ExpectError(const absl::Status& status, absl::StatusCode code,
                 const std::string& reason) {
  EXPECT_EQ(status.code(), code) << status;
  EXPECT_EQ(ErrorReason(status), reason) << status;
}

// A mutation that changes the object and then fails: nothing may be written.
template <typename T>
Mutation<T> FailingMutation() {
  return [](T& object) {
    object.mutable_metadata()->clear();
    (*object.mutable_metadata())["changed"] = "yes";
    return absl::FailedPreconditionError("mutation refused");
  };
}

template <typename Factory>
class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!Factory::Available()) {
      GTEST_SKIP() << test_support::PgTestDb::SkipMessage();
    }
    dir_ = MakeTempDir();
    store_ = Factory::Make(dir_, kMaxMessagesPerThread, &keep_);
    ASSERT_NE(store_, nullptr);
  }
  void TearDown() override {
    store_.reset();
    keep_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // Replaces the store with an empty one holding at most `limit` messages per
  // thread.
  void UseMessageLimit(int64_t limit) {
    store_.reset();
    keep_.reset();
    std::filesystem::remove_all(dir_);
    dir_ = MakeTempDir();
    store_ = Factory::Make(dir_, limit, &keep_);
    ASSERT_NE(store_, nullptr);
  }

  Store& store() { return *store_; }

  // Creates `n` assistants in order; returns their ids.
  std::vector<std::string> CreateAssistants(int n) {
    std::vector<std::string> ids;
    for (int i = 0; i < n; ++i) {
      v1::Assistant assistant = MakeAssistant(absl::StrCat("a", i));
      EXPECT_TRUE(
          store().CreateAssistant(assistant, kDefaultProject, nullptr).ok());
      ids.push_back(assistant.id());
    }
    return ids;
  }

  // The ids of one page of assistants; fails the test on error.
  std::pair<std::vector<std::string>, bool> ListIds(const ListQuery& query) {
    absl::StatusOr<Page<v1::Assistant>> page =
        store().ListAssistants(kDefaultProject, query);
    EXPECT_TRUE(page.ok()) << page.status();
    if (!page.ok()) return {};
    return {Ids(page->items), page->has_more};
  }

  // Creates a thread; returns its id.
  std::string NewThread(const std::vector<v1::Message>& messages = {}) {
    v1::Thread thread = MakeThread();
    std::vector<v1::Message> owned = messages;
    for (v1::Message& message : owned) message.set_thread_id(thread.id());
    EXPECT_TRUE(
        store().CreateThread(thread, kDefaultProject, owned, nullptr).ok());
    return thread.id();
  }

  // Creates a run of `thread_id` with `status` and `events`; returns it.
  v1::Run StartRun(const std::string& thread_id,
                   v1::RunStatus status = v1::RUN_STATUS_QUEUED,
                   std::vector<v1::RunEvent> events = {},
                   bool reject_if_thread_active = true) {
    v1::Run run = MakeRun(thread_id, status);
    RunCreation creation = MakeCreation(run, std::move(events));
    creation.reject_if_thread_active = reject_if_thread_active;
    absl::Status status_or = store().CreateRun(creation);
    EXPECT_TRUE(status_or.ok()) << status_or;
    return run;
  }

  absl::Status Commit(const RunChanges& changes) {
    return store().CommitRunChanges({&changes});
  }

  // Replaces the stored run with a copy of `run` in `status`.
  absl::Status SetStatus(v1::Run& run, v1::RunStatus status) {
    run.set_status(status);
    RunChanges changes = ChangesFor(run);
    changes.run = run;
    return Commit(changes);
  }

  // The sequences of every event of `run_id`.
  std::vector<int64_t> EventSequences(const std::string& run_id) {
    absl::StatusOr<std::vector<v1::RunEvent>> events =
        store().ListRunEvents(run_id, 0, 1000);
    EXPECT_TRUE(events.ok()) << events.status();
    return events.ok() ? Sequences(*events) : std::vector<int64_t>();
  }

  std::vector<std::string> RunIds(const std::string& thread_id,
                                  const ListQuery& query,
                                  bool* has_more = nullptr) {
    absl::StatusOr<Page<v1::Run>> page = store().ListRuns(thread_id, query);
    EXPECT_TRUE(page.ok()) << page.status();
    if (!page.ok()) return {};
    if (has_more != nullptr) *has_more = page->has_more;
    return Ids(page->items);
  }

  std::vector<std::string> StepIds(const v1::Run& run, const ListQuery& query,
                                   bool* has_more = nullptr) {
    absl::StatusOr<Page<v1::RunStep>> page =
        store().ListRunSteps(run.thread_id(), run.id(), query);
    EXPECT_TRUE(page.ok()) << page.status();
    if (!page.ok()) return {};
    if (has_more != nullptr) *has_more = page->has_more;
    return Ids(page->items);
  }

  std::vector<std::string> MessageIds(const std::string& thread_id,
                                      const std::string& run_id = "") {
    absl::StatusOr<Page<v1::Message>> page =
        store().ListMessages(thread_id, run_id, Query(100, true));
    EXPECT_TRUE(page.ok()) << page.status();
    return page.ok() ? Ids(page->items) : std::vector<std::string>();
  }

  std::vector<std::string> ActiveRunIds() {
    absl::StatusOr<std::vector<v1::Run>> runs = store().ListActiveRuns();
    EXPECT_TRUE(runs.ok()) << runs.status();
    return runs.ok() ? Ids(*runs) : std::vector<std::string>();
  }

  std::string dir_;
  std::shared_ptr<void> keep_;
  std::unique_ptr<Store> store_;
};

using Factories = ::testing::Types<MemoryFactory, SqliteFactory, PgFactory>;
TYPED_TEST_SUITE(StoreTest, Factories, FactoryNames);

// --- Assistants ---

TYPED_TEST(StoreTest, AssistantCreateGetUpdateDelete) {
  v1::Assistant assistant = MakeAssistant();
  ASSERT_TRUE(
      this->store().CreateAssistant(assistant, kDefaultProject, nullptr).ok());

  absl::StatusOr<v1::Assistant> got =
      this->store().GetAssistant(assistant.id());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*got, assistant));

  absl::StatusOr<v1::Assistant> updated =
      this->store().UpdateAssistant(assistant.id(), [](v1::Assistant& a) {
        a.set_name("renamed");
        return absl::OkStatus();
      });
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->name(), "renamed");
  got = this->store().GetAssistant(assistant.id());
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->name(), "renamed");
  EXPECT_EQ(got->model(), "gpt-4o");

  ASSERT_TRUE(this->store().DeleteAssistant(assistant.id()).ok());
  ExpectError(this->store().GetAssistant(assistant.id()).status(),
              absl::StatusCode::kNotFound, "ASSISTANT_NOT_FOUND");
  ExpectError(this->store().DeleteAssistant(assistant.id()),
              absl::StatusCode::kNotFound, "ASSISTANT_NOT_FOUND");
  ExpectError(
      this->store()
          .UpdateAssistant(assistant.id(),
                           [](v1::Assistant&) { return absl::OkStatus(); })
          .status(),
      absl::StatusCode::kNotFound, "ASSISTANT_NOT_FOUND");
}

// Projects: every assistant and thread names its owner; assistants list
// per project, and a cursor from another project's list is not one of this
// list's (live or deleted).
TYPED_TEST(StoreTest, ProjectsOwnAssistantsAndThreads) {
  v1::Assistant a1 = MakeAssistant(), b1 = MakeAssistant(),
                a2 = MakeAssistant();
  ASSERT_TRUE(this->store().CreateAssistant(a1, "proj_a", nullptr).ok());
  ASSERT_TRUE(this->store().CreateAssistant(b1, "proj_b", nullptr).ok());
  ASSERT_TRUE(this->store().CreateAssistant(a2, "proj_a", nullptr).ok());
  v1::Thread thread = MakeThread();
  ASSERT_TRUE(this->store().CreateThread(thread, "proj_b", {}, nullptr).ok());
  v1::Thread run_thread = MakeThread();
  v1::Run run = MakeRun(run_thread.id(), v1::RUN_STATUS_QUEUED);
  RunCreation creation = MakeCreation(run, MakeEvents(1, 1));
  creation.new_thread = &run_thread;
  creation.project = "proj_c";
  ASSERT_TRUE(this->store().CreateRun(creation).ok());

  EXPECT_EQ(*this->store().GetProject(OwnedKind::kAssistant, a1.id()),
            "proj_a");
  EXPECT_EQ(*this->store().GetProject(OwnedKind::kAssistant, b1.id()),
            "proj_b");
  EXPECT_EQ(*this->store().GetProject(OwnedKind::kThread, thread.id()),
            "proj_b");
  EXPECT_EQ(*this->store().GetProject(OwnedKind::kThread, run_thread.id()),
            "proj_c");
  // Wrong kind or unknown id: NOT_FOUND with the kind's reason.
  ExpectError(this->store().GetProject(OwnedKind::kThread, a1.id()).status(),
              absl::StatusCode::kNotFound, "THREAD_NOT_FOUND");
  ExpectError(this->store()
                  .GetProject(OwnedKind::kAssistant, NewId(kAssistantPrefix))
                  .status(),
              absl::StatusCode::kNotFound, "ASSISTANT_NOT_FOUND");

  EXPECT_THAT(
      Ids(this->store().ListAssistants("proj_a", Query(10, true))->items),
      ElementsAre(a1.id(), a2.id()));
  EXPECT_THAT(
      Ids(this->store().ListAssistants("proj_b", Query(10, false))->items),
      ElementsAre(b1.id()));
  EXPECT_THAT(this->store().ListAssistants("proj_z", Query(10, true))->items,
              IsEmpty());
  EXPECT_THAT(Ids(this->store()
                      .ListAssistants("proj_a", Query(10, true, a1.id()))
                      ->items),
              ElementsAre(a2.id()));
  ExpectError(
      this->store().ListAssistants("proj_b", Query(10, true, a1.id())).status(),
      absl::StatusCode::kInvalidArgument, "INVALID_CURSOR");
  // A deleted assistant stays a cursor of its own project's list only.
  ASSERT_TRUE(this->store().DeleteAssistant(a1.id()).ok());
  EXPECT_THAT(Ids(this->store()
                      .ListAssistants("proj_a", Query(10, true, a1.id()))
                      ->items),
              ElementsAre(a2.id()));
  ExpectError(this->store()
                  .ListAssistants("proj_b", Query(10, true, "", a1.id()))
                  .status(),
              absl::StatusCode::kInvalidArgument, "INVALID_CURSOR");
  ExpectError(this->store().GetProject(OwnedKind::kAssistant, a1.id()).status(),
              absl::StatusCode::kNotFound, "ASSISTANT_NOT_FOUND");
  ASSERT_TRUE(this->store().DeleteThread(thread.id()).ok());
  ExpectError(
      this->store().GetProject(OwnedKind::kThread, thread.id()).status(),
      absl::StatusCode::kNotFound, "THREAD_NOT_FOUND");
}

TYPED_TEST(StoreTest, AssistantNotFoundCarriesId) {
  const std::string id = NewId(kAssistantPrefix);
  absl::Status status = this->store().GetAssistant(id).status();
  ExpectError(status, absl::StatusCode::kNotFound, "ASSISTANT_NOT_FOUND");
  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->metadata().at("assistant_id"), id);
}

TYPED_TEST(StoreTest, DuplicateIdIsRejected) {
  v1::Assistant assistant = MakeAssistant();
  ASSERT_TRUE(
      this->store().CreateAssistant(assistant, kDefaultProject, nullptr).ok());
  assistant.set_name("second");
  EXPECT_EQ(
      this->store().CreateAssistant(assistant, kDefaultProject, nullptr).code(),
      absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(this->store().GetAssistant(assistant.id())->name(), "helper");
}

TYPED_TEST(StoreTest, FailedMutationWritesNothing) {
  v1::Assistant assistant = MakeAssistant();
  v1::Thread thread = MakeThread();
  v1::Message message = MakeMessage(thread.id());
  ASSERT_TRUE(
      this->store().CreateAssistant(assistant, kDefaultProject, nullptr).ok());
  ASSERT_TRUE(this->store()
                  .CreateThread(thread, kDefaultProject, {message}, nullptr)
                  .ok());

  absl::Status status =
      this->store()
          .UpdateAssistant(assistant.id(), FailingMutation<v1::Assistant>())
          .status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(status.message(), "mutation refused");
  status = this->store()
               .UpdateThread(thread.id(), FailingMutation<v1::Thread>())
               .status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  status = this->store()
               .UpdateMessage(thread.id(), message.id(),
                              FailingMutation<v1::Message>())
               .status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);

  EXPECT_TRUE(MessageDifferencer::Equals(
      *this->store().GetAssistant(assistant.id()), assistant));
  EXPECT_TRUE(MessageDifferencer::Equals(*this->store().GetThread(thread.id()),
                                         thread));
  EXPECT_TRUE(MessageDifferencer::Equals(
      *this->store().GetMessage(thread.id(), message.id()), message));
}

TYPED_TEST(StoreTest, MutationMayNotChangeIds) {
  v1::Assistant assistant = MakeAssistant();
  v1::Thread thread = MakeThread();
  v1::Thread other = MakeThread();
  v1::Message message = MakeMessage(thread.id());
  ASSERT_TRUE(
      this->store().CreateAssistant(assistant, kDefaultProject, nullptr).ok());
  ASSERT_TRUE(this->store()
                  .CreateThread(thread, kDefaultProject, {message}, nullptr)
                  .ok());
  ASSERT_TRUE(
      this->store().CreateThread(other, kDefaultProject, {}, nullptr).ok());

  EXPECT_FALSE(this->store()
                   .UpdateAssistant(assistant.id(),
                                    [](v1::Assistant& a) {
                                      a.set_id("asst_other");
                                      return absl::OkStatus();
                                    })
                   .ok());
  EXPECT_FALSE(this->store()
                   .UpdateMessage(thread.id(), message.id(),
                                  [&](v1::Message& m) {
                                    m.set_thread_id(other.id());
                                    return absl::OkStatus();
                                  })
                   .ok());
  EXPECT_TRUE(this->store().GetAssistant(assistant.id()).ok());
  EXPECT_TRUE(this->store().GetMessage(thread.id(), message.id()).ok());
  EXPECT_THAT(
      this->store().ListMessages(other.id(), "", Query(20, true))->items,
      IsEmpty());
}

// --- Threads ---

TYPED_TEST(StoreTest, ThreadCreateGetUpdateDelete) {
  v1::Thread thread = MakeThread();
  ASSERT_TRUE(
      this->store().CreateThread(thread, kDefaultProject, {}, nullptr).ok());
  absl::StatusOr<v1::Thread> got = this->store().GetThread(thread.id());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*got, thread));

  absl::StatusOr<v1::Thread> updated =
      this->store().UpdateThread(thread.id(), [](v1::Thread& t) {
        (*t.mutable_metadata())["topic"] = "updated";
        return absl::OkStatus();
      });
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->metadata().at("topic"), "updated");
  EXPECT_EQ(this->store().GetThread(thread.id())->metadata().at("topic"),
            "updated");

  ASSERT_TRUE(this->store().DeleteThread(thread.id()).ok());
  ExpectError(this->store().GetThread(thread.id()).status(),
              absl::StatusCode::kNotFound, "THREAD_NOT_FOUND");
  ExpectError(this->store().DeleteThread(thread.id()),
              absl::StatusCode::kNotFound, "THREAD_NOT_FOUND");
  ExpectError(this->store()
                  .UpdateThread(thread.id(),
                                [](v1::Thread&) { return absl::OkStatus(); })
                  .status(),
              absl::StatusCode::kNotFound, "THREAD_NOT_FOUND");
}

TYPED_TEST(StoreTest, ThreadInitialMessagesKeepTheirOrder) {
  v1::Thread thread = MakeThread();
  std::vector<v1::Message> messages;
  for (int i = 0; i < 5; ++i) {
    messages.push_back(MakeMessage(thread.id(), absl::StrCat("m", i)));
  }
  ASSERT_TRUE(this->store()
                  .CreateThread(thread, kDefaultProject, messages, nullptr)
                  .ok());
  absl::StatusOr<Page<v1::Message>> page =
      this->store().ListMessages(thread.id(), "", Query(20, true));
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_THAT(Ids(page->items), ElementsAreArray(Ids(messages)));
  for (size_t i = 0; i < messages.size(); ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals(page->items[i], messages[i]));
  }
  // A message created later comes after the initial ones.
  v1::Message later = MakeMessage(thread.id(), "later");
  ASSERT_TRUE(this->store().CreateMessage(later, nullptr).ok());
  page = this->store().ListMessages(thread.id(), "", Query(1, false));
  ASSERT_TRUE(page.ok());
  EXPECT_THAT(Ids(page->items), ElementsAre(later.id()));
}

TYPED_TEST(StoreTest, ThreadInitialMessageMustNameTheThread) {
  v1::Thread thread = MakeThread();
  v1::Message stray = MakeMessage(NewId(kThreadPrefix));
  EXPECT_EQ(this->store()
                .CreateThread(thread, kDefaultProject, {stray}, nullptr)
                .code(),
            absl::StatusCode::kInvalidArgument);
  ExpectError(this->store().GetThread(thread.id()).status(),
              absl::StatusCode::kNotFound, "THREAD_NOT_FOUND");
}

TYPED_TEST(StoreTest, DeleteThreadRemovesItsMessagesOnly) {
  v1::Thread thread = MakeThread();
  v1::Thread other = MakeThread();
  v1::Message m1 = MakeMessage(thread.id());
  v1::Message m2 = MakeMessage(thread.id());
  v1::Message kept = MakeMessage(other.id());
  ASSERT_TRUE(
      this->store().CreateThread(thread, kDefaultProject, {m1}, nullptr).ok());
  ASSERT_TRUE(this->store().CreateMessage(m2, nullptr).ok());
  ASSERT_TRUE(
      this->store().CreateThread(other, kDefaultProject, {kept}, nullptr).ok());

  ASSERT_TRUE(this->store().DeleteThread(thread.id()).ok());
  for (const v1::Message& m : {m1, m2}) {
    absl::Status status =
        this->store().GetMessage(thread.id(), m.id()).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(this->store().GetMessage(other.id(), m.id()).status().code(),
              absl::StatusCode::kNotFound);
  }
  ExpectError(
      this->store().ListMessages(thread.id(), "", Query(20, true)).status(),
      absl::StatusCode::kNotFound, "THREAD_NOT_FOUND");
  ExpectError(this->store().CreateMessage(MakeMessage(thread.id()), nullptr),
              absl::StatusCode::kNotFound, "THREAD_NOT_FOUND");
  EXPECT_TRUE(this->store().GetMessage(other.id(), kept.id()).ok());
  EXPECT_THAT(
      Ids(this->store().ListMessages(other.id(), "", Query(20, true))->items),
      ElementsAre(kept.id()));
}

// --- Messages ---

TYPED_TEST(StoreTest, MessageCreateGetUpdateDelete) {
  v1::Thread thread = MakeThread();
  ASSERT_TRUE(
      this->store().CreateThread(thread, kDefaultProject, {}, nullptr).ok());
  v1::Message message = MakeMessage(thread.id(), "hi");
  ASSERT_TRUE(this->store().CreateMessage(message, nullptr).ok());

  absl::StatusOr<v1::Message> got =
      this->store().GetMessage(thread.id(), message.id());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*got, message));

  absl::StatusOr<v1::Message> updated = this->store().UpdateMessage(
      thread.id(), message.id(), [](v1::Message& m) {
        (*m.mutable_metadata())["edited"] = "true";
        return absl::OkStatus();
      });
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->metadata().at("edited"), "true");
  EXPECT_EQ(this->store()
                .GetMessage(thread.id(), message.id())
                ->metadata()
                .at("edited"),
            "true");

  ASSERT_TRUE(this->store().DeleteMessage(thread.id(), message.id()).ok());
  ExpectError(this->store().GetMessage(thread.id(), message.id()).status(),
              absl::StatusCode::kNotFound, "MESSAGE_NOT_FOUND");
  ExpectError(this->store().DeleteMessage(thread.id(), message.id()),
              absl::StatusCode::kNotFound, "MESSAGE_NOT_FOUND");
  ExpectError(this->store()
                  .UpdateMessage(thread.id(), message.id(),
                                 [](v1::Message&) { return absl::OkStatus(); })
                  .status(),
              absl::StatusCode::kNotFound, "MESSAGE_NOT_FOUND");
  EXPECT_TRUE(this->store().GetThread(thread.id()).ok());
}

TYPED_TEST(StoreTest, MessageOfAnotherThreadIsNotFound) {
  v1::Thread thread = MakeThread();
  v1::Thread other = MakeThread();
  v1::Message message = MakeMessage(thread.id());
  ASSERT_TRUE(this->store()
                  .CreateThread(thread, kDefaultProject, {message}, nullptr)
                  .ok());
  ASSERT_TRUE(
      this->store().CreateThread(other, kDefaultProject, {}, nullptr).ok());

  ExpectError(this->store().GetMessage(other.id(), message.id()).status(),
              absl::StatusCode::kNotFound, "MESSAGE_NOT_FOUND");
  ExpectError(this->store()
                  .UpdateMessage(other.id(), message.id(),
                                 [](v1::Message&) { return absl::OkStatus(); })
                  .status(),
              absl::StatusCode::kNotFound, "MESSAGE_NOT_FOUND");
  ExpectError(this->store().DeleteMessage(other.id(), message.id()),
              absl::StatusCode::kNotFound, "MESSAGE_NOT_FOUND");
  EXPECT_TRUE(this->store().GetMessage(thread.id(), message.id()).ok());
}

TYPED_TEST(StoreTest, MessageInMissingThread) {
  const std::string missing = NewId(kThreadPrefix);
  ExpectError(this->store().CreateMessage(MakeMessage(missing), nullptr),
              absl::StatusCode::kNotFound, "THREAD_NOT_FOUND");
  ExpectError(
      this->store().ListMessages(missing, "", Query(20, false)).status(),
      absl::StatusCode::kNotFound, "THREAD_NOT_FOUND");
  // Looking a message up in a missing thread names the missing thread.
  ExpectError(this->store().GetMessage(missing, NewId(kMessagePrefix)).status(),
              absl::StatusCode::kNotFound, "THREAD_NOT_FOUND");
}

TYPED_TEST(StoreTest, MessageLimit) {
  this->UseMessageLimit(3);
  v1::Thread thread = MakeThread();
  ASSERT_TRUE(
      this->store()
          .CreateThread(thread, kDefaultProject,
                        {MakeMessage(thread.id()), MakeMessage(thread.id())},
                        nullptr)
          .ok());
  v1::Message third = MakeMessage(thread.id());
  ASSERT_TRUE(this->store().CreateMessage(third, nullptr).ok());

  v1::Message fourth = MakeMessage(thread.id());
  absl::Status status = this->store().CreateMessage(fourth, nullptr);
  ExpectError(status, absl::StatusCode::kFailedPrecondition,
              "THREAD_MESSAGE_LIMIT");
  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->metadata().at("thread_id"), thread.id());
  EXPECT_EQ(this->store().GetMessage(thread.id(), fourth.id()).status().code(),
            absl::StatusCode::kNotFound);

  // Deleting a message makes room again.
  ASSERT_TRUE(this->store().DeleteMessage(thread.id(), third.id()).ok());
  EXPECT_TRUE(this->store().CreateMessage(fourth, nullptr).ok());

  // A new thread may not start over the limit either.
  v1::Thread big = MakeThread();
  std::vector<v1::Message> four;
  for (int i = 0; i < 4; ++i) four.push_back(MakeMessage(big.id()));
  ExpectError(this->store().CreateThread(big, kDefaultProject, four, nullptr),
              absl::StatusCode::kFailedPrecondition, "THREAD_MESSAGE_LIMIT");
  EXPECT_EQ(this->store().GetThread(big.id()).status().code(),
            absl::StatusCode::kNotFound);
}

// --- Lists ---

TYPED_TEST(StoreTest, ListEmpty) {
  auto [ids, more] = this->ListIds(Query(20, false));
  EXPECT_THAT(ids, IsEmpty());
  EXPECT_FALSE(more);
}

TYPED_TEST(StoreTest, ListOrderAndLimits) {
  std::vector<std::string> a = this->CreateAssistants(5);
  std::vector<std::string> reversed(a.rbegin(), a.rend());

  auto [all_asc, more1] = this->ListIds(Query(20, true));
  EXPECT_THAT(all_asc, ElementsAreArray(a));
  EXPECT_FALSE(more1);
  auto [all_desc, more2] = this->ListIds(Query(20, false));
  EXPECT_THAT(all_desc, ElementsAreArray(reversed));
  EXPECT_FALSE(more2);

  auto [one, more3] = this->ListIds(Query(1, true));
  EXPECT_THAT(one, ElementsAre(a[0]));
  EXPECT_TRUE(more3);
  auto [one_desc, more4] = this->ListIds(Query(1, false));
  EXPECT_THAT(one_desc, ElementsAre(a[4]));
  EXPECT_TRUE(more4);

  auto [exact, more5] = this->ListIds(Query(5, true));
  EXPECT_THAT(exact, ElementsAreArray(a));
  EXPECT_FALSE(more5);
  auto [short_by_one, more6] = this->ListIds(Query(4, false));
  EXPECT_THAT(short_by_one, ElementsAre(a[4], a[3], a[2], a[1]));
  EXPECT_TRUE(more6);
  auto [over, more7] = this->ListIds(Query(100, false));
  EXPECT_THAT(over, ElementsAreArray(reversed));
  EXPECT_FALSE(more7);
}

TYPED_TEST(StoreTest, ListAfter) {
  std::vector<std::string> a = this->CreateAssistants(5);
  auto [p1, m1] = this->ListIds(Query(2, true, a[1]));
  EXPECT_THAT(p1, ElementsAre(a[2], a[3]));
  EXPECT_TRUE(m1);
  auto [p2, m2] = this->ListIds(Query(2, true, a[2]));
  EXPECT_THAT(p2, ElementsAre(a[3], a[4]));
  EXPECT_FALSE(m2);
  auto [p3, m3] = this->ListIds(Query(2, true, a[4]));
  EXPECT_THAT(p3, IsEmpty());
  EXPECT_FALSE(m3);

  auto [d1, dm1] = this->ListIds(Query(2, false, a[3]));
  EXPECT_THAT(d1, ElementsAre(a[2], a[1]));
  EXPECT_TRUE(dm1);
  auto [d2, dm2] = this->ListIds(Query(2, false, a[1]));
  EXPECT_THAT(d2, ElementsAre(a[0]));
  EXPECT_FALSE(dm2);
}

TYPED_TEST(StoreTest, ListBefore) {
  std::vector<std::string> a = this->CreateAssistants(5);
  // Ascending: the items closest to the cursor, still ascending; has_more
  // looks past the first item.
  auto [p1, m1] = this->ListIds(Query(2, true, "", a[3]));
  EXPECT_THAT(p1, ElementsAre(a[1], a[2]));
  EXPECT_TRUE(m1);
  auto [p2, m2] = this->ListIds(Query(2, true, "", a[2]));
  EXPECT_THAT(p2, ElementsAre(a[0], a[1]));
  EXPECT_FALSE(m2);
  auto [p3, m3] = this->ListIds(Query(2, true, "", a[0]));
  EXPECT_THAT(p3, IsEmpty());
  EXPECT_FALSE(m3);

  // Descending: "before" means newer.
  auto [d1, dm1] = this->ListIds(Query(2, false, "", a[1]));
  EXPECT_THAT(d1, ElementsAre(a[3], a[2]));
  EXPECT_TRUE(dm1);
  auto [d2, dm2] = this->ListIds(Query(2, false, "", a[2]));
  EXPECT_THAT(d2, ElementsAre(a[4], a[3]));
  EXPECT_FALSE(dm2);
  auto [d3, dm3] = this->ListIds(Query(10, false, "", a[2]));
  EXPECT_THAT(d3, ElementsAre(a[4], a[3]));
  EXPECT_FALSE(dm3);
}

TYPED_TEST(StoreTest, ListAfterAndBefore) {
  std::vector<std::string> a = this->CreateAssistants(6);
  auto [p1, m1] = this->ListIds(Query(10, true, a[0], a[4]));
  EXPECT_THAT(p1, ElementsAre(a[1], a[2], a[3]));
  EXPECT_FALSE(m1);
  // With both cursors the page hugs `before`; has_more looks towards `after`.
  auto [p2, m2] = this->ListIds(Query(2, true, a[0], a[4]));
  EXPECT_THAT(p2, ElementsAre(a[2], a[3]));
  EXPECT_TRUE(m2);
  auto [d1, dm1] = this->ListIds(Query(10, false, a[5], a[1]));
  EXPECT_THAT(d1, ElementsAre(a[4], a[3], a[2]));
  EXPECT_FALSE(dm1);
  auto [d2, dm2] = this->ListIds(Query(2, false, a[5], a[1]));
  EXPECT_THAT(d2, ElementsAre(a[3], a[2]));
  EXPECT_TRUE(dm2);
  // Adjacent or crossed cursors leave nothing between them.
  auto [e1, em1] = this->ListIds(Query(10, true, a[2], a[3]));
  EXPECT_THAT(e1, IsEmpty());
  EXPECT_FALSE(em1);
  auto [e2, em2] = this->ListIds(Query(10, true, a[4], a[1]));
  EXPECT_THAT(e2, IsEmpty());
  EXPECT_FALSE(em2);
}

TYPED_TEST(StoreTest, ListWalksEveryPage) {
  std::vector<std::string> a = this->CreateAssistants(7);
  for (bool ascending : {true, false}) {
    std::vector<std::string> seen;
    std::string after;
    for (int pages = 0; pages < 10; ++pages) {
      auto [ids, more] = this->ListIds(Query(3, ascending, after));
      seen.insert(seen.end(), ids.begin(), ids.end());
      if (!more) break;
      after = ids.back();
    }
    std::vector<std::string> expected = a;
    if (!ascending) std::reverse(expected.begin(), expected.end());
    EXPECT_THAT(seen, ElementsAreArray(expected)) << ascending;
  }
  // Backwards with `before` from the end of a descending list.
  std::vector<std::string> seen;
  std::string before = a[0];
  for (int pages = 0; pages < 10; ++pages) {
    auto [ids, more] = this->ListIds(Query(3, false, "", before));
    seen.insert(seen.begin(), ids.begin(), ids.end());
    if (!more) break;
    before = ids.front();
  }
  EXPECT_THAT(seen, ElementsAre(a[6], a[5], a[4], a[3], a[2], a[1]));
}

TYPED_TEST(StoreTest, CursorNamingDeletedObjectKeepsItsPlace) {
  std::vector<std::string> a = this->CreateAssistants(5);
  ASSERT_TRUE(this->store().DeleteAssistant(a[2]).ok());
  auto [p1, m1] = this->ListIds(Query(10, true, a[2]));
  EXPECT_THAT(p1, ElementsAre(a[3], a[4]));
  EXPECT_FALSE(m1);
  auto [p2, m2] = this->ListIds(Query(10, true, "", a[2]));
  EXPECT_THAT(p2, ElementsAre(a[0], a[1]));
  EXPECT_FALSE(m2);
  auto [p3, m3] = this->ListIds(Query(1, false, a[2]));
  EXPECT_THAT(p3, ElementsAre(a[1]));
  EXPECT_TRUE(m3);
  // Deleting the last page's anchor does not restart the list.
  ASSERT_TRUE(this->store().DeleteAssistant(a[4]).ok());
  auto [p4, m4] = this->ListIds(Query(10, true, a[4]));
  EXPECT_THAT(p4, IsEmpty());
  EXPECT_FALSE(m4);
}

TYPED_TEST(StoreTest, UnknownCursorIsInvalid) {
  std::vector<std::string> a = this->CreateAssistants(2);
  absl::Status status =
      this->store()
          .ListAssistants(kDefaultProject,
                          Query(10, true, NewId(kAssistantPrefix)))
          .status();
  ExpectError(status, absl::StatusCode::kInvalidArgument, "INVALID_CURSOR");
  std::optional<google::rpc::BadRequest> bad = GetBadRequest(status);
  ASSERT_TRUE(bad.has_value());
  ASSERT_EQ(bad->field_violations_size(), 1);
  EXPECT_EQ(bad->field_violations(0).field(), "after");

  status = this->store()
               .ListAssistants(kDefaultProject,
                               Query(10, true, "", NewId(kAssistantPrefix)))
               .status();
  ExpectError(status, absl::StatusCode::kInvalidArgument, "INVALID_CURSOR");
  bad = GetBadRequest(status);
  ASSERT_TRUE(bad.has_value());
  EXPECT_EQ(bad->field_violations(0).field(), "before");

  // An object of another list is not a cursor of this one.
  v1::Thread thread = MakeThread();
  v1::Thread other = MakeThread();
  v1::Message foreign = MakeMessage(other.id());
  ASSERT_TRUE(
      this->store().CreateThread(thread, kDefaultProject, {}, nullptr).ok());
  ASSERT_TRUE(this->store()
                  .CreateThread(other, kDefaultProject, {foreign}, nullptr)
                  .ok());
  ExpectError(this->store()
                  .ListAssistants(kDefaultProject, Query(10, true, thread.id()))
                  .status(),
              absl::StatusCode::kInvalidArgument, "INVALID_CURSOR");
  ExpectError(this->store()
                  .ListMessages(thread.id(), "", Query(10, true, foreign.id()))
                  .status(),
              absl::StatusCode::kInvalidArgument, "INVALID_CURSOR");
  ExpectError(this->store()
                  .ListMessages(thread.id(), "", Query(10, true, a[0]))
                  .status(),
              absl::StatusCode::kInvalidArgument, "INVALID_CURSOR");
  // A deleted message of another thread is not a cursor here either.
  ASSERT_TRUE(this->store().DeleteMessage(other.id(), foreign.id()).ok());
  ExpectError(
      this->store()
          .ListMessages(thread.id(), "", Query(10, true, "", foreign.id()))
          .status(),
      absl::StatusCode::kInvalidArgument, "INVALID_CURSOR");
}

TYPED_TEST(StoreTest, ListMessagesPagingAndDeletedCursor) {
  v1::Thread thread = MakeThread();
  std::vector<v1::Message> messages;
  for (int i = 0; i < 5; ++i) messages.push_back(MakeMessage(thread.id()));
  ASSERT_TRUE(this->store()
                  .CreateThread(thread, kDefaultProject, messages, nullptr)
                  .ok());
  std::vector<std::string> m = Ids(messages);

  absl::StatusOr<Page<v1::Message>> page =
      this->store().ListMessages(thread.id(), "", Query(2, false));
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_THAT(Ids(page->items), ElementsAre(m[4], m[3]));
  EXPECT_TRUE(page->has_more);

  ASSERT_TRUE(this->store().DeleteMessage(thread.id(), m[3]).ok());
  page = this->store().ListMessages(thread.id(), "", Query(2, false, m[3]));
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_THAT(Ids(page->items), ElementsAre(m[2], m[1]));
  EXPECT_TRUE(page->has_more);
  page = this->store().ListMessages(thread.id(), "", Query(2, true, "", m[3]));
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_THAT(Ids(page->items), ElementsAre(m[1], m[2]));
  EXPECT_TRUE(page->has_more);
}

TYPED_TEST(StoreTest, ListMessagesByRun) {
  v1::Thread thread = MakeThread();
  std::vector<v1::Message> messages = {MakeMessage(thread.id(), "0", "run_a"),
                                       MakeMessage(thread.id(), "1"),
                                       MakeMessage(thread.id(), "2", "run_a"),
                                       MakeMessage(thread.id(), "3", "run_b"),
                                       MakeMessage(thread.id(), "4", "run_a")};
  ASSERT_TRUE(
      this->store().CreateThread(thread, kDefaultProject, {}, nullptr).ok());
  for (const v1::Message& message : messages) {
    ASSERT_TRUE(this->store().CreateMessage(message, nullptr).ok());
  }
  std::vector<std::string> m = Ids(messages);

  absl::StatusOr<Page<v1::Message>> page =
      this->store().ListMessages(thread.id(), "run_a", Query(20, true));
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_THAT(Ids(page->items), ElementsAre(m[0], m[2], m[4]));
  EXPECT_FALSE(page->has_more);

  page = this->store().ListMessages(thread.id(), "run_a", Query(2, false));
  ASSERT_TRUE(page.ok());
  EXPECT_THAT(Ids(page->items), ElementsAre(m[4], m[2]));
  EXPECT_TRUE(page->has_more);

  // A cursor may name a message of another run: it still marks a position.
  page = this->store().ListMessages(thread.id(), "run_a", Query(1, true, m[1]));
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_THAT(Ids(page->items), ElementsAre(m[2]));
  EXPECT_TRUE(page->has_more);
  page = this->store().ListMessages(thread.id(), "run_a", Query(5, true, m[3]));
  ASSERT_TRUE(page.ok());
  EXPECT_THAT(Ids(page->items), ElementsAre(m[4]));
  EXPECT_FALSE(page->has_more);

  page = this->store().ListMessages(thread.id(), "run_b", Query(20, true));
  ASSERT_TRUE(page.ok());
  EXPECT_THAT(Ids(page->items), ElementsAre(m[3]));
  page = this->store().ListMessages(thread.id(), "run_none", Query(20, true));
  ASSERT_TRUE(page.ok());
  EXPECT_THAT(page->items, IsEmpty());

  // An update that sets run_id is seen by the filter.
  ASSERT_TRUE(this->store()
                  .UpdateMessage(thread.id(), m[1],
                                 [](v1::Message& message) {
                                   message.set_run_id("run_b");
                                   return absl::OkStatus();
                                 })
                  .ok());
  page = this->store().ListMessages(thread.id(), "run_b", Query(20, true));
  ASSERT_TRUE(page.ok());
  EXPECT_THAT(Ids(page->items), ElementsAre(m[1], m[3]));
}

// --- Idempotency ---

TYPED_TEST(StoreTest, IdempotencyRecordIsWrittenWithTheObject) {
  EXPECT_FALSE(
      this->store().GetIdempotencyRecord("CreateAssistant/none")->has_value());
  IdempotencyRecord record = MakeRecord("CreateAssistant/r1", 1234);
  v1::Assistant assistant = MakeAssistant();
  ASSERT_TRUE(
      this->store().CreateAssistant(assistant, kDefaultProject, &record).ok());
  absl::StatusOr<std::optional<IdempotencyRecord>> got =
      this->store().GetIdempotencyRecord(record.key);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->key, record.key);
  EXPECT_EQ((*got)->request_fingerprint, record.request_fingerprint);
  EXPECT_EQ((*got)->response, record.response);
  EXPECT_EQ((*got)->created_at_ms, 1234);
}

TYPED_TEST(StoreTest, DuplicateIdempotencyKeyCreatesNothing) {
  IdempotencyRecord record = MakeRecord("key", 1);
  v1::Assistant first = MakeAssistant();
  ASSERT_TRUE(
      this->store().CreateAssistant(first, kDefaultProject, &record).ok());

  IdempotencyRecord again = MakeRecord("key", 2);
  again.response = "other";
  v1::Assistant second = MakeAssistant();
  ExpectError(this->store().CreateAssistant(second, kDefaultProject, &again),
              absl::StatusCode::kAborted, "IDEMPOTENCY_CONFLICT");
  EXPECT_EQ(this->store().GetAssistant(second.id()).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_THAT(this->ListIds(Query(20, true)).first, ElementsAre(first.id()));

  v1::Thread thread = MakeThread();
  v1::Message message = MakeMessage(thread.id());
  ExpectError(
      this->store().CreateThread(thread, kDefaultProject, {message}, &again),
      absl::StatusCode::kAborted, "IDEMPOTENCY_CONFLICT");
  EXPECT_EQ(this->store().GetThread(thread.id()).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(this->store().GetMessage(thread.id(), message.id()).status().code(),
            absl::StatusCode::kNotFound);

  ASSERT_TRUE(
      this->store().CreateThread(thread, kDefaultProject, {}, nullptr).ok());
  ExpectError(this->store().CreateMessage(message, &again),
              absl::StatusCode::kAborted, "IDEMPOTENCY_CONFLICT");
  EXPECT_THAT(
      this->store().ListMessages(thread.id(), "", Query(20, true))->items,
      IsEmpty());

  // The first record is untouched.
  absl::StatusOr<std::optional<IdempotencyRecord>> got =
      this->store().GetIdempotencyRecord("key");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->response, record.response);
  EXPECT_EQ((*got)->created_at_ms, 1);
}

TYPED_TEST(StoreTest, IdempotencyOnThreadAndMessageCreates) {
  IdempotencyRecord thread_record = MakeRecord("CreateThread/x", 5);
  IdempotencyRecord message_record = MakeRecord("CreateMessage/x", 6);
  v1::Thread thread = MakeThread();
  ASSERT_TRUE(this->store()
                  .CreateThread(thread, kDefaultProject,
                                {MakeMessage(thread.id())}, &thread_record)
                  .ok());
  ASSERT_TRUE(this->store()
                  .CreateMessage(MakeMessage(thread.id()), &message_record)
                  .ok());
  EXPECT_TRUE(
      this->store().GetIdempotencyRecord(thread_record.key)->has_value());
  EXPECT_TRUE(
      this->store().GetIdempotencyRecord(message_record.key)->has_value());
}

TYPED_TEST(StoreTest, FailedCreateWritesNoIdempotencyRecord) {
  IdempotencyRecord record = MakeRecord("CreateMessage/missing-thread", 1);
  EXPECT_FALSE(this->store()
                   .CreateMessage(MakeMessage(NewId(kThreadPrefix)), &record)
                   .ok());
  EXPECT_FALSE(this->store().GetIdempotencyRecord(record.key)->has_value());
}

TYPED_TEST(StoreTest, PruneIdempotencyRecords) {
  for (int64_t at : {100, 200, 300}) {
    IdempotencyRecord record = MakeRecord(absl::StrCat("k", at), at);
    ASSERT_TRUE(this->store()
                    .CreateAssistant(MakeAssistant(), kDefaultProject, &record)
                    .ok());
  }
  absl::StatusOr<int64_t> pruned = this->store().PruneIdempotencyRecords(200);
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(*pruned, 1);
  EXPECT_FALSE(this->store().GetIdempotencyRecord("k100")->has_value());
  EXPECT_TRUE(this->store().GetIdempotencyRecord("k200")->has_value());
  EXPECT_EQ(*this->store().PruneIdempotencyRecords(200), 0);
  EXPECT_EQ(*this->store().PruneIdempotencyRecords(1000), 2);
  EXPECT_FALSE(this->store().GetIdempotencyRecord("k300")->has_value());
  // Pruning forgets records, not objects.
  EXPECT_EQ(this->ListIds(Query(20, true)).first.size(), 3u);
}

// --- Runs ---

TEST(IsActiveRunStatusTest, ActiveUntilTerminal) {
  for (v1::RunStatus status :
       {v1::RUN_STATUS_QUEUED, v1::RUN_STATUS_IN_PROGRESS,
        v1::RUN_STATUS_REQUIRES_ACTION, v1::RUN_STATUS_CANCELLING}) {
    EXPECT_TRUE(IsActiveRunStatus(status)) << v1::RunStatus_Name(status);
  }
  for (v1::RunStatus status :
       {v1::RUN_STATUS_UNSPECIFIED, v1::RUN_STATUS_CANCELLED,
        v1::RUN_STATUS_FAILED, v1::RUN_STATUS_COMPLETED,
        v1::RUN_STATUS_INCOMPLETE, v1::RUN_STATUS_EXPIRED}) {
    EXPECT_FALSE(IsActiveRunStatus(status)) << v1::RunStatus_Name(status);
  }
}

TYPED_TEST(StoreTest, RunCreateGetList) {
  v1::Message first = MakeMessage("");
  const std::string thread_id = this->NewThread({first});
  first.set_thread_id(thread_id);
  v1::Run run = MakeRun(thread_id);
  RunCreation creation = MakeCreation(run, MakeEvents(1, 2));
  creation.messages = {MakeMessage(thread_id, "extra 1"),
                       MakeMessage(thread_id, "extra 2")};
  ASSERT_TRUE(this->store().CreateRun(creation).ok());

  absl::StatusOr<v1::Run> got = this->store().GetRun(thread_id, run.id());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*got, run));
  // The additional messages follow the thread's earlier ones.
  EXPECT_THAT(this->MessageIds(thread_id),
              ElementsAre(first.id(), creation.messages[0].id(),
                          creation.messages[1].id()));
  EXPECT_THAT(this->RunIds(thread_id, Query(20, false)), ElementsAre(run.id()));
  absl::StatusOr<std::vector<v1::RunEvent>> events =
      this->store().ListRunEvents(run.id(), 0, 100);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 2u);
  for (size_t i = 0; i < events->size(); ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals((*events)[i], creation.events[i]));
  }
  EXPECT_THAT(this->ActiveRunIds(), ElementsAre(run.id()));
  // A run with no steps lists none.
  EXPECT_THAT(this->StepIds(run, Query(20, true)), IsEmpty());
}

TYPED_TEST(StoreTest, RunInMissingThread) {
  const std::string missing = NewId(kThreadPrefix);
  v1::Run run = MakeRun(missing);
  RunCreation creation = MakeCreation(run, MakeEvents(1, 1));
  creation.messages = {MakeMessage(missing)};
  ExpectError(this->store().CreateRun(creation), absl::StatusCode::kNotFound,
              "THREAD_NOT_FOUND");
  ExpectError(this->store().GetRun(missing, run.id()).status(),
              absl::StatusCode::kNotFound, "THREAD_NOT_FOUND");
  ExpectError(this->store().ListRuns(missing, Query(20, true)).status(),
              absl::StatusCode::kNotFound, "THREAD_NOT_FOUND");
  EXPECT_THAT(this->EventSequences(run.id()), IsEmpty());
  EXPECT_THAT(this->ActiveRunIds(), IsEmpty());
}

TYPED_TEST(StoreTest, RunWithNewThread) {
  v1::Thread thread = MakeThread();
  v1::Run run = MakeRun(thread.id());
  RunCreation creation = MakeCreation(run, MakeEvents(1, 3));
  creation.new_thread = &thread;
  creation.messages = {MakeMessage(thread.id(), "a"),
                       MakeMessage(thread.id(), "b")};
  ASSERT_TRUE(this->store().CreateRun(creation).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(*this->store().GetThread(thread.id()),
                                         thread));
  EXPECT_THAT(this->MessageIds(thread.id()),
              ElementsAreArray(Ids(creation.messages)));
  EXPECT_TRUE(MessageDifferencer::Equals(
      *this->store().GetRun(thread.id(), run.id()), run));
  EXPECT_THAT(this->EventSequences(run.id()), ElementsAre(1, 2, 3));

  // The new thread's id must be free...
  v1::Run again = MakeRun(thread.id());
  RunCreation duplicate = MakeCreation(again);
  duplicate.new_thread = &thread;
  ExpectError(this->store().CreateRun(duplicate),
              absl::StatusCode::kAlreadyExists, "OBJECT_ALREADY_EXISTS");
  ExpectError(this->store().GetRun(thread.id(), again.id()).status(),
              absl::StatusCode::kNotFound, "RUN_NOT_FOUND");

  // ...and be the run's thread.
  v1::Thread other = MakeThread();
  RunCreation mismatch = MakeCreation(MakeRun(thread.id()));
  mismatch.new_thread = &other;
  ExpectError(this->store().CreateRun(mismatch),
              absl::StatusCode::kInvalidArgument, "THREAD_ID_MISMATCH");
  ExpectError(this->store().GetThread(other.id()).status(),
              absl::StatusCode::kNotFound, "THREAD_NOT_FOUND");
}

TYPED_TEST(StoreTest, RunWithNewThreadRespectsMessageLimit) {
  this->UseMessageLimit(2);
  v1::Thread thread = MakeThread();
  RunCreation creation = MakeCreation(MakeRun(thread.id()));
  creation.new_thread = &thread;
  for (int i = 0; i < 3; ++i)
    creation.messages.push_back(MakeMessage(thread.id()));
  ExpectError(this->store().CreateRun(creation),
              absl::StatusCode::kFailedPrecondition, "THREAD_MESSAGE_LIMIT");
  ExpectError(this->store().GetThread(thread.id()).status(),
              absl::StatusCode::kNotFound, "THREAD_NOT_FOUND");
}

TYPED_TEST(StoreTest, RunAdditionalMessagesRespectMessageLimit) {
  this->UseMessageLimit(3);
  const std::string thread_id =
      this->NewThread({MakeMessage(""), MakeMessage("")});
  v1::Run run = MakeRun(thread_id);
  RunCreation creation = MakeCreation(run);
  creation.messages = {MakeMessage(thread_id), MakeMessage(thread_id)};
  ExpectError(this->store().CreateRun(creation),
              absl::StatusCode::kFailedPrecondition, "THREAD_MESSAGE_LIMIT");
  ExpectError(this->store().GetRun(thread_id, run.id()).status(),
              absl::StatusCode::kNotFound, "RUN_NOT_FOUND");
  EXPECT_EQ(this->MessageIds(thread_id).size(), 2u);
  creation.messages.pop_back();
  ASSERT_TRUE(this->store().CreateRun(creation).ok());
  // The run's own messages are not limited.
  RunChanges changes = ChangesFor(run);
  changes.messages = {MakeMessage(thread_id, "reply", run.id())};
  ASSERT_TRUE(this->Commit(changes).ok());
  EXPECT_EQ(this->MessageIds(thread_id).size(), 4u);
}

TYPED_TEST(StoreTest, RunDuplicateIdsCreateNothing) {
  const std::string thread_id = this->NewThread();
  v1::Run run = this->StartRun(thread_id, v1::RUN_STATUS_COMPLETED);
  ExpectError(this->store().CreateRun(MakeCreation(run)),
              absl::StatusCode::kAlreadyExists, "OBJECT_ALREADY_EXISTS");
  // A taken message id fails the whole creation.
  v1::Message taken = MakeMessage(thread_id);
  ASSERT_TRUE(this->store().CreateMessage(taken, nullptr).ok());
  v1::Run second = MakeRun(thread_id);
  RunCreation creation = MakeCreation(second, MakeEvents(1, 1));
  creation.messages = {MakeMessage(thread_id), taken};
  ExpectError(this->store().CreateRun(creation),
              absl::StatusCode::kAlreadyExists, "OBJECT_ALREADY_EXISTS");
  ExpectError(this->store().GetRun(thread_id, second.id()).status(),
              absl::StatusCode::kNotFound, "RUN_NOT_FOUND");
  EXPECT_THAT(this->MessageIds(thread_id), ElementsAre(taken.id()));
  EXPECT_THAT(this->EventSequences(second.id()), IsEmpty());
  EXPECT_THAT(this->RunIds(thread_id, Query(20, true)), ElementsAre(run.id()));
}

TYPED_TEST(StoreTest, ActiveRunBlocksMessagesDeleteAndRuns) {
  const std::string thread_id = this->NewThread();
  const std::string other_thread = this->NewThread();
  v1::Run run = this->StartRun(thread_id, v1::RUN_STATUS_QUEUED);
  for (v1::RunStatus status :
       {v1::RUN_STATUS_QUEUED, v1::RUN_STATUS_IN_PROGRESS,
        v1::RUN_STATUS_REQUIRES_ACTION, v1::RUN_STATUS_CANCELLING}) {
    SCOPED_TRACE(v1::RunStatus_Name(status));
    ASSERT_TRUE(this->SetStatus(run, status).ok());
    v1::Message message = MakeMessage(thread_id);
    absl::Status blocked = this->store().CreateMessage(message, nullptr);
    ExpectError(blocked, absl::StatusCode::kFailedPrecondition,
                "THREAD_HAS_ACTIVE_RUN");
    EXPECT_EQ(Metadata(blocked, "thread_id"), thread_id);
    EXPECT_EQ(Metadata(blocked, "run_id"), run.id());
    EXPECT_THAT(std::string(blocked.message()), ::testing::HasSubstr(run.id()));
    ExpectError(this->store().DeleteThread(thread_id),
                absl::StatusCode::kFailedPrecondition, "THREAD_HAS_ACTIVE_RUN");
    v1::Run second = MakeRun(thread_id);
    absl::Status second_status =
        this->store().CreateRun(MakeCreation(second, MakeEvents(1, 1)));
    ExpectError(second_status, absl::StatusCode::kFailedPrecondition,
                "THREAD_HAS_ACTIVE_RUN");
    EXPECT_EQ(Metadata(second_status, "run_id"), run.id());
    ExpectError(this->store().GetRun(thread_id, second.id()).status(),
                absl::StatusCode::kNotFound, "RUN_NOT_FOUND");
    EXPECT_THAT(this->EventSequences(second.id()), IsEmpty());
    EXPECT_THAT(this->MessageIds(thread_id), IsEmpty());
    EXPECT_TRUE(this->store().GetThread(thread_id).ok());
  }
  // Other threads are not affected.
  EXPECT_TRUE(
      this->store().CreateMessage(MakeMessage(other_thread), nullptr).ok());

  // Once the run is over the thread takes messages and runs again...
  ASSERT_TRUE(this->SetStatus(run, v1::RUN_STATUS_COMPLETED).ok());
  EXPECT_TRUE(
      this->store().CreateMessage(MakeMessage(thread_id), nullptr).ok());
  v1::Run next = this->StartRun(thread_id, v1::RUN_STATUS_QUEUED);
  ExpectError(this->store().DeleteThread(thread_id),
              absl::StatusCode::kFailedPrecondition, "THREAD_HAS_ACTIVE_RUN");
  // ...and can be deleted.
  ASSERT_TRUE(this->SetStatus(next, v1::RUN_STATUS_CANCELLED).ok());
  EXPECT_TRUE(this->store().DeleteThread(thread_id).ok());
}

TYPED_TEST(StoreTest, TerminalRunCreatedFinishedDoesNotBlock) {
  const std::string thread_id = this->NewThread();
  this->StartRun(thread_id, v1::RUN_STATUS_FAILED);
  EXPECT_TRUE(
      this->store().CreateMessage(MakeMessage(thread_id), nullptr).ok());
  EXPECT_THAT(this->ActiveRunIds(), IsEmpty());
}

TYPED_TEST(StoreTest, QueuePolicyAllowsASecondRun) {
  const std::string thread_id = this->NewThread();
  v1::Run first = this->StartRun(thread_id, v1::RUN_STATUS_IN_PROGRESS);
  v1::Run second = this->StartRun(thread_id, v1::RUN_STATUS_QUEUED, {},
                                  /*reject_if_thread_active=*/false);
  EXPECT_THAT(this->RunIds(thread_id, Query(20, true)),
              ElementsAre(first.id(), second.id()));
  EXPECT_THAT(this->ActiveRunIds(), ElementsAre(first.id(), second.id()));
  // The error names the oldest active run.
  absl::Status blocked =
      this->store().CreateMessage(MakeMessage(thread_id), nullptr);
  EXPECT_EQ(Metadata(blocked, "run_id"), first.id());
  ASSERT_TRUE(this->SetStatus(first, v1::RUN_STATUS_COMPLETED).ok());
  blocked = this->store().CreateMessage(MakeMessage(thread_id), nullptr);
  ExpectError(blocked, absl::StatusCode::kFailedPrecondition,
              "THREAD_HAS_ACTIVE_RUN");
  EXPECT_EQ(Metadata(blocked, "run_id"), second.id());
  ASSERT_TRUE(this->SetStatus(second, v1::RUN_STATUS_EXPIRED).ok());
  EXPECT_TRUE(
      this->store().CreateMessage(MakeMessage(thread_id), nullptr).ok());
}

TYPED_TEST(StoreTest, ProjectActiveRunLimitCountsTheProjectsActiveRuns) {
  auto thread_in = [&](const std::string& project) {
    v1::Thread thread = MakeThread();
    EXPECT_TRUE(this->store().CreateThread(thread, project, {}, nullptr).ok());
    return thread.id();
  };
  auto create = [&](const std::string& project, const std::string& thread_id,
                    v1::Run* out) {
    v1::Run run = MakeRun(thread_id, v1::RUN_STATUS_QUEUED);
    RunCreation creation = MakeCreation(run, MakeEvents(1, 1));
    creation.project = project;
    creation.max_active_runs_in_project = 2;
    if (out != nullptr) *out = run;
    return this->store().CreateRun(creation);
  };
  v1::Run first, second, refused;
  ASSERT_TRUE(create("proj_a", thread_in("proj_a"), &first).ok());
  // A finished run does not count.
  this->StartRun(thread_in("proj_a"), v1::RUN_STATUS_COMPLETED);
  ASSERT_TRUE(create("proj_a", thread_in("proj_a"), &second).ok());
  const std::string third_thread = thread_in("proj_a");
  absl::Status limited = create("proj_a", third_thread, &refused);
  ExpectError(limited, absl::StatusCode::kResourceExhausted,
              "PROJECT_ACTIVE_RUN_LIMIT");
  EXPECT_EQ(Metadata(limited, "project"), "proj_a");
  EXPECT_EQ(Metadata(limited, "limit"), "2");
  ExpectError(this->store().GetRun(third_thread, refused.id()).status(),
              absl::StatusCode::kNotFound, "RUN_NOT_FOUND");
  // A new thread with its run is refused whole.
  v1::Thread new_thread = MakeThread();
  v1::Run with_thread = MakeRun(new_thread.id(), v1::RUN_STATUS_QUEUED);
  RunCreation creation = MakeCreation(with_thread, MakeEvents(1, 1));
  creation.new_thread = &new_thread;
  creation.project = "proj_a";
  creation.max_active_runs_in_project = 2;
  ExpectError(this->store().CreateRun(creation),
              absl::StatusCode::kResourceExhausted, "PROJECT_ACTIVE_RUN_LIMIT");
  ExpectError(this->store().GetThread(new_thread.id()).status(),
              absl::StatusCode::kNotFound, "THREAD_NOT_FOUND");
  // Other projects have their own count; no limit means no count.
  EXPECT_TRUE(create("proj_b", thread_in("proj_b"), nullptr).ok());
  v1::Run unlimited = MakeRun(third_thread, v1::RUN_STATUS_QUEUED);
  RunCreation no_limit = MakeCreation(unlimited, MakeEvents(1, 1));
  no_limit.project = "proj_a";
  ASSERT_TRUE(this->store().CreateRun(no_limit).ok());
  ASSERT_TRUE(this->SetStatus(unlimited, v1::RUN_STATUS_CANCELLED).ok());
  // A run that ends frees its place.
  ASSERT_TRUE(this->SetStatus(first, v1::RUN_STATUS_REQUIRES_ACTION).ok());
  ExpectError(create("proj_a", third_thread, nullptr),
              absl::StatusCode::kResourceExhausted, "PROJECT_ACTIVE_RUN_LIMIT");
  ASSERT_TRUE(this->SetStatus(first, v1::RUN_STATUS_EXPIRED).ok());
  EXPECT_TRUE(create("proj_a", third_thread, nullptr).ok());
}

TYPED_TEST(StoreTest, ListActiveRunsOldestFirst) {
  const std::string a = this->NewThread();
  const std::string b = this->NewThread();
  const std::string c = this->NewThread();
  v1::Run r1 = this->StartRun(a, v1::RUN_STATUS_QUEUED);
  v1::Run r2 = this->StartRun(b, v1::RUN_STATUS_IN_PROGRESS);
  v1::Run r3 = this->StartRun(c, v1::RUN_STATUS_COMPLETED);
  v1::Run r4 = this->StartRun(a, v1::RUN_STATUS_QUEUED, {},
                              /*reject_if_thread_active=*/false);
  EXPECT_THAT(this->ActiveRunIds(), ElementsAre(r1.id(), r2.id(), r4.id()));
  // Updating a run keeps its place: the order is creation, not update.
  ASSERT_TRUE(this->SetStatus(r2, v1::RUN_STATUS_REQUIRES_ACTION).ok());
  ASSERT_TRUE(this->SetStatus(r1, v1::RUN_STATUS_IN_PROGRESS).ok());
  absl::StatusOr<std::vector<v1::Run>> runs = this->store().ListActiveRuns();
  ASSERT_TRUE(runs.ok()) << runs.status();
  EXPECT_THAT(Ids(*runs), ElementsAre(r1.id(), r2.id(), r4.id()));
  EXPECT_TRUE(MessageDifferencer::Equals((*runs)[0], r1));
  EXPECT_TRUE(MessageDifferencer::Equals((*runs)[1], r2));
  ASSERT_TRUE(this->SetStatus(r1, v1::RUN_STATUS_CANCELLED).ok());
  EXPECT_THAT(this->ActiveRunIds(), ElementsAre(r2.id(), r4.id()));
  // A finished run does not come back by being rewritten finished.
  ASSERT_TRUE(this->SetStatus(r3, v1::RUN_STATUS_COMPLETED).ok());
  EXPECT_THAT(this->ActiveRunIds(), ElementsAre(r2.id(), r4.id()));
}

TYPED_TEST(StoreTest, RunEventsAppendAndPage) {
  const std::string thread_id = this->NewThread();
  v1::Run run =
      this->StartRun(thread_id, v1::RUN_STATUS_QUEUED, MakeEvents(1, 2));
  RunChanges changes = ChangesFor(run);
  changes.events = MakeEvents(3, 5);
  ASSERT_TRUE(this->Commit(changes).ok());
  changes.events = MakeEvents(6, 6);
  ASSERT_TRUE(this->Commit(changes).ok());
  EXPECT_THAT(this->EventSequences(run.id()), ElementsAre(1, 2, 3, 4, 5, 6));

  auto page = [&](int64_t after, int limit) {
    absl::StatusOr<std::vector<v1::RunEvent>> events =
        this->store().ListRunEvents(run.id(), after, limit);
    EXPECT_TRUE(events.ok()) << events.status();
    return events.ok() ? Sequences(*events) : std::vector<int64_t>();
  };
  EXPECT_THAT(page(2, 2), ElementsAre(3, 4));
  EXPECT_THAT(page(4, 100), ElementsAre(5, 6));
  EXPECT_THAT(page(0, 1), ElementsAre(1));
  EXPECT_THAT(page(6, 10), IsEmpty());
  EXPECT_THAT(page(100, 10), IsEmpty());
  EXPECT_THAT(page(0, 0), IsEmpty());
  EXPECT_THAT(page(-5, 2), ElementsAre(1, 2));
  // Events come back whole.
  absl::StatusOr<std::vector<v1::RunEvent>> events =
      this->store().ListRunEvents(run.id(), 3, 1);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 1u);
  EXPECT_TRUE(MessageDifferencer::Equals((*events)[0], MakeEvent(4)));
  // An unknown run has an empty log.
  absl::StatusOr<std::vector<v1::RunEvent>> unknown =
      this->store().ListRunEvents(NewId(kRunPrefix), 0, 10);
  ASSERT_TRUE(unknown.ok()) << unknown.status();
  EXPECT_THAT(*unknown, IsEmpty());
}

TYPED_TEST(StoreTest, RunEventSequenceMustContinueTheLog) {
  const std::string thread_id = this->NewThread();
  v1::Run run =
      this->StartRun(thread_id, v1::RUN_STATUS_QUEUED, MakeEvents(1, 2));
  RunChanges changes = ChangesFor(run);
  for (const std::vector<v1::RunEvent>& bad :
       {MakeEvents(4, 4), MakeEvents(2, 3), MakeEvents(1, 1),
        std::vector<v1::RunEvent>{MakeEvent(3), MakeEvent(5)},
        std::vector<v1::RunEvent>{MakeEvent(3), MakeEvent(3)}}) {
    changes.events = bad;
    absl::Status status = this->Commit(changes);
    ExpectError(status, absl::StatusCode::kInternal, "RUN_EVENT_SEQUENCE");
    EXPECT_EQ(Metadata(status, "run_id"), run.id());
    EXPECT_THAT(this->EventSequences(run.id()), ElementsAre(1, 2));
  }
  // A run's first events start at 1.
  v1::Run other = MakeRun(this->NewThread());
  absl::Status status =
      this->store().CreateRun(MakeCreation(other, MakeEvents(2, 3)));
  ExpectError(status, absl::StatusCode::kInternal, "RUN_EVENT_SEQUENCE");
  ExpectError(this->store().GetRun(other.thread_id(), other.id()).status(),
              absl::StatusCode::kNotFound, "RUN_NOT_FOUND");
}

TYPED_TEST(StoreTest, CommitRunChangesBatchIsAllOrNothing) {
  const std::string thread_id = this->NewThread();
  v1::Run run =
      this->StartRun(thread_id, v1::RUN_STATUS_IN_PROGRESS, MakeEvents(1, 2));
  const std::string other_thread = this->NewThread();
  v1::Run other = this->StartRun(other_thread, v1::RUN_STATUS_IN_PROGRESS);

  // The first change is fine on its own; the last one's gap fails the batch.
  v1::Run finished = run;
  finished.set_status(v1::RUN_STATUS_COMPLETED);
  RunChanges good = ChangesFor(run);
  good.run = finished;
  good.steps = {MakeStep(run)};
  good.messages = {MakeMessage(thread_id, "reply", run.id())};
  good.events = MakeEvents(3, 4);
  IdempotencyRecord record = MakeRecord("SubmitToolOutputs/r1", 1);
  good.idempotency = &record;
  RunChanges other_changes = ChangesFor(other);
  other_changes.events = MakeEvents(1, 1);
  RunChanges same_run = ChangesFor(run);
  same_run.events = MakeEvents(5, 5);
  RunChanges gap = ChangesFor(run);
  gap.events = MakeEvents(7, 7);
  ExpectError(
      this->store().CommitRunChanges({&good, &other_changes, &same_run, &gap}),
      absl::StatusCode::kInternal, "RUN_EVENT_SEQUENCE");

  EXPECT_EQ(this->store().GetRun(thread_id, run.id())->status(),
            v1::RUN_STATUS_IN_PROGRESS);
  EXPECT_THAT(this->StepIds(run, Query(20, true)), IsEmpty());
  EXPECT_THAT(this->MessageIds(thread_id), IsEmpty());
  EXPECT_THAT(this->EventSequences(run.id()), ElementsAre(1, 2));
  EXPECT_THAT(this->EventSequences(other.id()), IsEmpty());
  EXPECT_FALSE(this->store().GetIdempotencyRecord(record.key)->has_value());
  EXPECT_THAT(this->ActiveRunIds(), ElementsAre(run.id(), other.id()));
  ExpectError(this->store().CreateMessage(MakeMessage(thread_id), nullptr),
              absl::StatusCode::kFailedPrecondition, "THREAD_HAS_ACTIVE_RUN");

  // Changes of one run in one batch continue each other's events.
  gap.events = MakeEvents(6, 6);
  ASSERT_TRUE(this->store()
                  .CommitRunChanges({&good, &other_changes, &same_run, &gap})
                  .ok());
  EXPECT_EQ(this->store().GetRun(thread_id, run.id())->status(),
            v1::RUN_STATUS_COMPLETED);
  EXPECT_THAT(this->StepIds(run, Query(20, true)),
              ElementsAre(good.steps[0].id()));
  EXPECT_THAT(this->MessageIds(thread_id), ElementsAre(good.messages[0].id()));
  EXPECT_THAT(this->EventSequences(run.id()), ElementsAre(1, 2, 3, 4, 5, 6));
  EXPECT_THAT(this->EventSequences(other.id()), ElementsAre(1));
  EXPECT_TRUE(this->store().GetIdempotencyRecord(record.key)->has_value());
  EXPECT_THAT(this->ActiveRunIds(), ElementsAre(other.id()));

  // A duplicate within one batch fails it too.
  RunChanges dup1 = ChangesFor(other);
  dup1.events = MakeEvents(2, 2);
  RunChanges dup2 = dup1;
  ExpectError(this->store().CommitRunChanges({&dup1, &dup2}),
              absl::StatusCode::kInternal, "RUN_EVENT_SEQUENCE");
  EXPECT_THAT(this->EventSequences(other.id()), ElementsAre(1));
  // A later change of the same run naming another thread fails the batch.
  RunChanges next = ChangesFor(other);
  next.events = MakeEvents(2, 2);
  RunChanges wrong_thread = ChangesFor(other);
  wrong_thread.thread_id = thread_id;
  wrong_thread.events = MakeEvents(3, 3);
  ExpectError(this->store().CommitRunChanges({&next, &wrong_thread}),
              absl::StatusCode::kNotFound, "RUN_NOT_FOUND");
  EXPECT_THAT(this->EventSequences(other.id()), ElementsAre(1));
  // An empty batch is a no-op.
  EXPECT_TRUE(this->store().CommitRunChanges({}).ok());
}

TYPED_TEST(StoreTest, CommitRunChangesUpsertKeepsListPosition) {
  v1::Message before = MakeMessage("");
  const std::string thread_id = this->NewThread({before});
  v1::Run run = MakeRun(thread_id, v1::RUN_STATUS_IN_PROGRESS);
  RunCreation creation = MakeCreation(run);
  creation.messages = {MakeMessage(thread_id, "additional")};
  ASSERT_TRUE(this->store().CreateRun(creation).ok());

  v1::RunStep s1 = MakeStep(run);
  v1::RunStep s2 = MakeStep(run);
  v1::Message reply = MakeMessage(thread_id, "partial", run.id());
  reply.set_role(v1::MESSAGE_ROLE_ASSISTANT);
  RunChanges changes = ChangesFor(run);
  changes.steps = {s1, s2};
  changes.messages = {reply};
  ASSERT_TRUE(this->Commit(changes).ok());
  v1::RunStep s3 = MakeStep(run);
  changes.steps = {s3};
  changes.messages = {};
  ASSERT_TRUE(this->Commit(changes).ok());

  // Rewrite the oldest step and the reply: both keep their place.
  s1.set_status(v1::RUN_STEP_STATUS_COMPLETED);
  reply.mutable_content(0)->mutable_text()->set_value("partial and more");
  changes.steps = {s1};
  changes.messages = {reply};
  ASSERT_TRUE(this->Commit(changes).ok());
  EXPECT_THAT(this->StepIds(run, Query(20, true)),
              ElementsAre(s1.id(), s2.id(), s3.id()));
  EXPECT_TRUE(MessageDifferencer::Equals(
      *this->store().GetRunStep(thread_id, run.id(), s1.id()), s1));
  const std::string additional = creation.messages[0].id();
  EXPECT_THAT(this->MessageIds(thread_id),
              ElementsAre(before.id(), additional, reply.id()));
  EXPECT_TRUE(MessageDifferencer::Equals(
      *this->store().GetMessage(thread_id, reply.id()), reply));
  EXPECT_THAT(this->MessageIds(thread_id, run.id()), ElementsAre(reply.id()));

  // Inserted then replaced within one batch: one step, the last version.
  v1::RunStep s4 = MakeStep(run);
  RunChanges insert = ChangesFor(run);
  insert.steps = {s4};
  s4.set_status(v1::RUN_STEP_STATUS_FAILED);
  RunChanges replace = ChangesFor(run);
  replace.steps = {s4};
  ASSERT_TRUE(this->store().CommitRunChanges({&insert, &replace}).ok());
  EXPECT_THAT(this->StepIds(run, Query(20, true)),
              ElementsAre(s1.id(), s2.id(), s3.id(), s4.id()));
  EXPECT_EQ(this->store().GetRunStep(thread_id, run.id(), s4.id())->status(),
            v1::RUN_STEP_STATUS_FAILED);
  // The run itself is replaced whole.
  v1::Run rewritten = run;
  rewritten.clear_metadata();
  rewritten.set_instructions("new");
  RunChanges whole = ChangesFor(run);
  whole.run = rewritten;
  ASSERT_TRUE(this->Commit(whole).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(
      *this->store().GetRun(thread_id, run.id()), rewritten));
}

TYPED_TEST(StoreTest, CommitRunChangesToMissingRun) {
  const std::string thread_id = this->NewThread();
  const std::string other_thread = this->NewThread();
  v1::Run run = this->StartRun(thread_id, v1::RUN_STATUS_COMPLETED);
  RunChanges unknown = ChangesFor(MakeRun(thread_id));
  ExpectError(this->Commit(unknown), absl::StatusCode::kNotFound,
              "RUN_NOT_FOUND");
  // The run exists, but not in the named thread.
  RunChanges wrong_thread = ChangesFor(run);
  wrong_thread.thread_id = other_thread;
  wrong_thread.events = MakeEvents(1, 1);
  ExpectError(this->Commit(wrong_thread), absl::StatusCode::kNotFound,
              "RUN_NOT_FOUND");
  EXPECT_THAT(this->EventSequences(run.id()), IsEmpty());
  // Deleted with its thread.
  ASSERT_TRUE(this->store().DeleteThread(thread_id).ok());
  RunChanges gone = ChangesFor(run);
  gone.events = MakeEvents(1, 1);
  ExpectError(this->Commit(gone), absl::StatusCode::kNotFound, "RUN_NOT_FOUND");
}

TYPED_TEST(StoreTest, CommitRunChangesChecksOwnership) {
  const std::string thread_id = this->NewThread();
  v1::Run run = this->StartRun(thread_id, v1::RUN_STATUS_IN_PROGRESS);
  v1::Run other = this->StartRun(this->NewThread(), v1::RUN_STATUS_IN_PROGRESS);
  v1::RunStep other_step = MakeStep(other);
  RunChanges setup = ChangesFor(other);
  setup.steps = {other_step};
  ASSERT_TRUE(this->Commit(setup).ok());
  v1::Message user = MakeMessage(this->NewThread());
  ASSERT_TRUE(this->store().CreateMessage(user, nullptr).ok());

  RunChanges changes = ChangesFor(run);
  // A step of another run.
  changes.steps = {MakeStep(other)};
  ExpectError(this->Commit(changes), absl::StatusCode::kInvalidArgument,
              "RUN_ID_MISMATCH");
  // A message of another thread.
  changes.steps = {};
  changes.messages = {MakeMessage(other.thread_id())};
  ExpectError(this->Commit(changes), absl::StatusCode::kInvalidArgument,
              "THREAD_ID_MISMATCH");
  // The run may not change its id or thread.
  changes.messages = {};
  changes.run = run;
  changes.run->set_id(NewId(kRunPrefix));
  ExpectError(this->Commit(changes), absl::StatusCode::kInternal,
              "STORE_IMMUTABLE_FIELD");
  changes.run = run;
  changes.run->set_thread_id(other.thread_id());
  ExpectError(this->Commit(changes), absl::StatusCode::kInternal,
              "STORE_IMMUTABLE_FIELD");
  // Ids taken by other objects: another run's step, a message elsewhere.
  changes.run.reset();
  v1::RunStep stolen = other_step;
  stolen.set_run_id(run.id());
  stolen.set_thread_id(thread_id);
  changes.steps = {stolen};
  ExpectError(this->Commit(changes), absl::StatusCode::kAlreadyExists,
              "OBJECT_ALREADY_EXISTS");
  changes.steps = {};
  v1::Message moved = user;
  moved.set_thread_id(thread_id);
  changes.messages = {moved};
  ExpectError(this->Commit(changes), absl::StatusCode::kAlreadyExists,
              "OBJECT_ALREADY_EXISTS");
  // An id first used in the batch cannot be reused as another kind in it.
  v1::RunStep step = MakeStep(run);
  v1::Message clash = MakeMessage(thread_id, "x", run.id());
  clash.set_id(step.id());
  RunChanges first = ChangesFor(run);
  first.steps = {step};
  RunChanges second = ChangesFor(run);
  second.messages = {clash};
  ExpectError(this->store().CommitRunChanges({&first, &second}),
              absl::StatusCode::kAlreadyExists, "OBJECT_ALREADY_EXISTS");

  EXPECT_THAT(this->StepIds(run, Query(20, true)), IsEmpty());
  EXPECT_THAT(this->MessageIds(thread_id), IsEmpty());
  EXPECT_THAT(this->StepIds(other, Query(20, true)),
              ElementsAre(other_step.id()));
  EXPECT_TRUE(MessageDifferencer::Equals(
      *this->store().GetRun(thread_id, run.id()), run));
}

TYPED_TEST(StoreTest, RunWrongParentsAreNotFound) {
  const std::string thread_id = this->NewThread();
  const std::string other_thread = this->NewThread();
  v1::Run run = this->StartRun(thread_id, v1::RUN_STATUS_COMPLETED);
  v1::Run sibling = this->StartRun(thread_id, v1::RUN_STATUS_COMPLETED);
  v1::RunStep step = MakeStep(run);
  RunChanges changes = ChangesFor(run);
  changes.steps = {step};
  ASSERT_TRUE(this->Commit(changes).ok());
  const std::string missing_thread = NewId(kThreadPrefix);

  ASSERT_TRUE(this->store().GetRunStep(thread_id, run.id(), step.id()).ok());
  absl::Status status = this->store().GetRun(other_thread, run.id()).status();
  ExpectError(status, absl::StatusCode::kNotFound, "RUN_NOT_FOUND");
  EXPECT_EQ(Metadata(status, "run_id"), run.id());
  ExpectError(this->store().GetRun(missing_thread, run.id()).status(),
              absl::StatusCode::kNotFound, "THREAD_NOT_FOUND");
  ExpectError(this->store().GetRun(thread_id, NewId(kRunPrefix)).status(),
              absl::StatusCode::kNotFound, "RUN_NOT_FOUND");

  ExpectError(
      this->store().GetRunStep(other_thread, run.id(), step.id()).status(),
      absl::StatusCode::kNotFound, "RUN_NOT_FOUND");
  ExpectError(
      this->store().GetRunStep(missing_thread, run.id(), step.id()).status(),
      absl::StatusCode::kNotFound, "THREAD_NOT_FOUND");
  status =
      this->store().GetRunStep(thread_id, sibling.id(), step.id()).status();
  ExpectError(status, absl::StatusCode::kNotFound, "RUN_STEP_NOT_FOUND");
  EXPECT_EQ(Metadata(status, "run_step_id"), step.id());
  ExpectError(this->store()
                  .GetRunStep(thread_id, run.id(), NewId(kStepPrefix))
                  .status(),
              absl::StatusCode::kNotFound, "RUN_STEP_NOT_FOUND");
  // A run id is not a step id.
  ExpectError(
      this->store().GetRunStep(thread_id, run.id(), sibling.id()).status(),
      absl::StatusCode::kNotFound, "RUN_STEP_NOT_FOUND");

  ExpectError(this->store()
                  .ListRunSteps(other_thread, run.id(), Query(20, true))
                  .status(),
              absl::StatusCode::kNotFound, "RUN_NOT_FOUND");
  ExpectError(this->store()
                  .ListRunSteps(missing_thread, run.id(), Query(20, true))
                  .status(),
              absl::StatusCode::kNotFound, "THREAD_NOT_FOUND");
  EXPECT_THAT(this->StepIds(sibling, Query(20, true)), IsEmpty());
  EXPECT_THAT(this->RunIds(other_thread, Query(20, true)), IsEmpty());
}

TYPED_TEST(StoreTest, DeleteThreadRemovesRunsStepsAndEvents) {
  const std::string thread_id = this->NewThread();
  const std::string kept_thread = this->NewThread();
  v1::Run r1 =
      this->StartRun(thread_id, v1::RUN_STATUS_IN_PROGRESS, MakeEvents(1, 3));
  v1::RunStep step = MakeStep(r1);
  RunChanges changes = ChangesFor(r1);
  changes.steps = {step};
  changes.messages = {MakeMessage(thread_id, "reply", r1.id())};
  changes.events = MakeEvents(4, 4);
  ASSERT_TRUE(this->Commit(changes).ok());
  ASSERT_TRUE(this->SetStatus(r1, v1::RUN_STATUS_COMPLETED).ok());
  v1::Run r2 =
      this->StartRun(thread_id, v1::RUN_STATUS_FAILED, MakeEvents(1, 1));
  v1::Run kept =
      this->StartRun(kept_thread, v1::RUN_STATUS_QUEUED, MakeEvents(1, 2));

  ASSERT_TRUE(this->store().DeleteThread(thread_id).ok());
  ExpectError(this->store().GetRun(thread_id, r1.id()).status(),
              absl::StatusCode::kNotFound, "THREAD_NOT_FOUND");
  ExpectError(this->store().GetRunStep(thread_id, r1.id(), step.id()).status(),
              absl::StatusCode::kNotFound, "THREAD_NOT_FOUND");
  ExpectError(this->store().ListRuns(thread_id, Query(20, true)).status(),
              absl::StatusCode::kNotFound, "THREAD_NOT_FOUND");
  EXPECT_THAT(this->EventSequences(r1.id()), IsEmpty());
  EXPECT_THAT(this->EventSequences(r2.id()), IsEmpty());
  // Nothing of the old thread is still holding its ids.
  RunCreation reuse = MakeCreation(r1);
  reuse.run.set_thread_id(kept_thread);
  reuse.run.set_status(v1::RUN_STATUS_QUEUED);
  reuse.reject_if_thread_active = false;
  EXPECT_TRUE(this->store().CreateRun(reuse).ok());
  // The other thread keeps its run.
  EXPECT_TRUE(MessageDifferencer::Equals(
      *this->store().GetRun(kept_thread, kept.id()), kept));
  EXPECT_THAT(this->EventSequences(kept.id()), ElementsAre(1, 2));
  EXPECT_THAT(this->ActiveRunIds(), ElementsAre(kept.id(), r1.id()));
}

TYPED_TEST(StoreTest, RunIdempotencyRecords) {
  const std::string thread_id = this->NewThread();
  IdempotencyRecord record = MakeRecord("CreateRun/r1", 5);
  v1::Run run = MakeRun(thread_id, v1::RUN_STATUS_COMPLETED);
  RunCreation creation = MakeCreation(run);
  creation.idempotency = &record;
  ASSERT_TRUE(this->store().CreateRun(creation).ok());
  absl::StatusOr<std::optional<IdempotencyRecord>> got =
      this->store().GetIdempotencyRecord(record.key);
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->response, record.response);
  EXPECT_EQ((*got)->request_fingerprint, record.request_fingerprint);

  // The same key again: nothing of the second run is written.
  v1::Run second = MakeRun(thread_id);
  RunCreation again = MakeCreation(second, MakeEvents(1, 1));
  again.messages = {MakeMessage(thread_id)};
  again.idempotency = &record;
  ExpectError(this->store().CreateRun(again), absl::StatusCode::kAborted,
              "IDEMPOTENCY_CONFLICT");
  ExpectError(this->store().GetRun(thread_id, second.id()).status(),
              absl::StatusCode::kNotFound, "RUN_NOT_FOUND");
  EXPECT_THAT(this->MessageIds(thread_id), IsEmpty());

  // CommitRunChanges stores its record, and a taken key fails the batch.
  v1::Run active = this->StartRun(thread_id, v1::RUN_STATUS_REQUIRES_ACTION);
  IdempotencyRecord submit = MakeRecord("SubmitToolOutputs/r2", 6);
  RunChanges changes = ChangesFor(active);
  changes.events = MakeEvents(1, 1);
  changes.idempotency = &submit;
  ASSERT_TRUE(this->Commit(changes).ok());
  EXPECT_TRUE(this->store().GetIdempotencyRecord(submit.key)->has_value());
  changes.events = MakeEvents(2, 2);
  ExpectError(this->Commit(changes), absl::StatusCode::kAborted,
              "IDEMPOTENCY_CONFLICT");
  EXPECT_THAT(this->EventSequences(active.id()), ElementsAre(1));
  // Two changes of one batch may not carry the same new key either.
  IdempotencyRecord fresh = MakeRecord("SubmitToolOutputs/r3", 7);
  RunChanges c1 = ChangesFor(active);
  c1.idempotency = &fresh;
  c1.events = MakeEvents(2, 2);
  RunChanges c2 = ChangesFor(active);
  c2.idempotency = &fresh;
  ExpectError(this->store().CommitRunChanges({&c1, &c2}),
              absl::StatusCode::kAborted, "IDEMPOTENCY_CONFLICT");
  EXPECT_FALSE(this->store().GetIdempotencyRecord(fresh.key)->has_value());
  EXPECT_THAT(this->EventSequences(active.id()), ElementsAre(1));
}

TYPED_TEST(StoreTest, ListRunsPaging) {
  const std::string thread_id = this->NewThread();
  const std::string other_thread = this->NewThread();
  std::vector<std::string> r;
  for (int i = 0; i < 5; ++i) {
    r.push_back(this->StartRun(thread_id, v1::RUN_STATUS_COMPLETED).id());
  }
  const std::string foreign =
      this->StartRun(other_thread, v1::RUN_STATUS_COMPLETED).id();
  bool more = false;
  EXPECT_THAT(this->RunIds(thread_id, Query(2, true), &more),
              ElementsAre(r[0], r[1]));
  EXPECT_TRUE(more);
  EXPECT_THAT(this->RunIds(thread_id, Query(2, true, r[1]), &more),
              ElementsAre(r[2], r[3]));
  EXPECT_TRUE(more);
  EXPECT_THAT(this->RunIds(thread_id, Query(2, true, r[3]), &more),
              ElementsAre(r[4]));
  EXPECT_FALSE(more);
  EXPECT_THAT(this->RunIds(thread_id, Query(20, false), &more),
              ElementsAre(r[4], r[3], r[2], r[1], r[0]));
  EXPECT_FALSE(more);
  EXPECT_THAT(this->RunIds(thread_id, Query(2, false, r[3]), &more),
              ElementsAre(r[2], r[1]));
  EXPECT_TRUE(more);
  EXPECT_THAT(this->RunIds(thread_id, Query(2, false, "", r[1]), &more),
              ElementsAre(r[3], r[2]));
  EXPECT_TRUE(more);
  EXPECT_THAT(this->RunIds(thread_id, Query(10, true, r[0], r[4]), &more),
              ElementsAre(r[1], r[2], r[3]));
  EXPECT_FALSE(more);
  // Status changes do not move runs.
  v1::Run first = *this->store().GetRun(thread_id, r[0]);
  ASSERT_TRUE(this->SetStatus(first, v1::RUN_STATUS_EXPIRED).ok());
  EXPECT_THAT(this->RunIds(thread_id, Query(1, true)), ElementsAre(r[0]));

  // Cursors must be runs of this thread.
  for (const std::string& cursor :
       {NewId(kRunPrefix), foreign, thread_id, other_thread}) {
    ExpectError(
        this->store().ListRuns(thread_id, Query(10, true, cursor)).status(),
        absl::StatusCode::kInvalidArgument, "INVALID_CURSOR");
    ExpectError(
        this->store().ListRuns(thread_id, Query(10, true, "", cursor)).status(),
        absl::StatusCode::kInvalidArgument, "INVALID_CURSOR");
  }
  // Runs of another thread are not listed.
  EXPECT_THAT(this->RunIds(other_thread, Query(20, true)),
              ElementsAre(foreign));
}

TYPED_TEST(StoreTest, ListRunStepsPaging) {
  const std::string thread_id = this->NewThread();
  v1::Run run = this->StartRun(thread_id, v1::RUN_STATUS_IN_PROGRESS);
  v1::Run other = this->StartRun(thread_id, v1::RUN_STATUS_QUEUED, {},
                                 /*reject_if_thread_active=*/false);
  std::vector<std::string> s;
  for (int i = 0; i < 5; ++i) {
    v1::RunStep step = MakeStep(run);
    RunChanges changes = ChangesFor(run);
    changes.steps = {step};
    ASSERT_TRUE(this->Commit(changes).ok());
    s.push_back(step.id());
  }
  v1::RunStep foreign = MakeStep(other);
  RunChanges changes = ChangesFor(other);
  changes.steps = {foreign};
  ASSERT_TRUE(this->Commit(changes).ok());

  bool more = false;
  EXPECT_THAT(this->StepIds(run, Query(2, true), &more),
              ElementsAre(s[0], s[1]));
  EXPECT_TRUE(more);
  EXPECT_THAT(this->StepIds(run, Query(2, true, s[1]), &more),
              ElementsAre(s[2], s[3]));
  EXPECT_TRUE(more);
  EXPECT_THAT(this->StepIds(run, Query(20, false), &more),
              ElementsAre(s[4], s[3], s[2], s[1], s[0]));
  EXPECT_FALSE(more);
  EXPECT_THAT(this->StepIds(run, Query(2, false, "", s[1]), &more),
              ElementsAre(s[3], s[2]));
  EXPECT_TRUE(more);
  EXPECT_THAT(this->StepIds(run, Query(2, true, "", s[1]), &more),
              ElementsAre(s[0]));
  EXPECT_FALSE(more);
  EXPECT_THAT(this->StepIds(other, Query(20, true)), ElementsAre(foreign.id()));

  for (const std::string& cursor :
       {NewId(kStepPrefix), foreign.id(), run.id()}) {
    ExpectError(this->store()
                    .ListRunSteps(thread_id, run.id(), Query(10, true, cursor))
                    .status(),
                absl::StatusCode::kInvalidArgument, "INVALID_CURSOR");
  }
}

// --- Concurrency ---

TYPED_TEST(StoreTest, ConcurrentCreatesAreAllKept) {
  v1::Thread thread = MakeThread();
  ASSERT_TRUE(
      this->store().CreateThread(thread, kDefaultProject, {}, nullptr).ok());
  constexpr int kWorkers = 4;
  constexpr int kPerWorker = 25;
  std::vector<std::vector<std::string>> assistant_ids(kWorkers);
  std::vector<std::vector<std::string>> message_ids(kWorkers);
  std::atomic<int> failures{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      for (int i = 0; i < kPerWorker; ++i) {
        v1::Assistant assistant = MakeAssistant();
        v1::Message message = MakeMessage(thread.id());
        IdempotencyRecord record = MakeRecord(absl::StrCat("w", w, "-", i), i);
        if (!this->store()
                 .CreateAssistant(assistant, kDefaultProject, &record)
                 .ok())
          ++failures;
        if (!this->store().CreateMessage(message, nullptr).ok()) ++failures;
        // Interleave reads with the writes.
        if (!this->store()
                 .ListMessages(thread.id(), "", Query(5, false))
                 .ok()) {
          ++failures;
        }
        assistant_ids[w].push_back(assistant.id());
        message_ids[w].push_back(message.id());
      }
    });
  }
  for (std::thread& worker : workers) worker.join();
  EXPECT_EQ(failures.load(), 0);

  std::vector<std::string> all_assistants, all_messages;
  for (int w = 0; w < kWorkers; ++w) {
    all_assistants.insert(all_assistants.end(), assistant_ids[w].begin(),
                          assistant_ids[w].end());
    all_messages.insert(all_messages.end(), message_ids[w].begin(),
                        message_ids[w].end());
  }
  auto [listed, more] = this->ListIds(Query(100, true));
  EXPECT_FALSE(more);
  EXPECT_THAT(listed, UnorderedElementsAreArray(all_assistants));
  absl::StatusOr<Page<v1::Message>> page =
      this->store().ListMessages(thread.id(), "", Query(100, true));
  ASSERT_TRUE(page.ok());
  EXPECT_FALSE(page->has_more);
  EXPECT_THAT(Ids(page->items), UnorderedElementsAreArray(all_messages));
  // Each worker's own messages appear in the order it created them.
  for (int w = 0; w < kWorkers; ++w) {
    std::vector<std::string> mine;
    for (const std::string& id : Ids(page->items)) {
      if (std::find(message_ids[w].begin(), message_ids[w].end(), id) !=
          message_ids[w].end()) {
        mine.push_back(id);
      }
    }
    EXPECT_THAT(mine, ElementsAreArray(message_ids[w]));
  }
}

TYPED_TEST(StoreTest, ConcurrentRunCommitsKeepEveryLogWhole) {
  constexpr int kWorkers = 4;
  constexpr int kBatches = 20;
  std::vector<v1::Run> runs;
  for (int w = 0; w < kWorkers; ++w) {
    runs.push_back(
        this->StartRun(this->NewThread(), v1::RUN_STATUS_IN_PROGRESS));
  }
  std::atomic<int> failures{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      const v1::Run& run = runs[w];
      v1::RunStep step = MakeStep(run);
      for (int b = 0; b < kBatches; ++b) {
        RunChanges changes = ChangesFor(run);
        changes.steps = {step};
        changes.events = MakeEvents(3 * b + 1, 3 * b + 3);
        if (!this->Commit(changes).ok()) ++failures;
        if (!this->store().ListRunEvents(run.id(), 3 * b, 3).ok()) ++failures;
        if (!this->store().ListActiveRuns().ok()) ++failures;
      }
    });
  }
  for (std::thread& worker : workers) worker.join();
  EXPECT_EQ(failures.load(), 0);
  std::vector<int64_t> expected;
  for (int64_t i = 1; i <= 3 * kBatches; ++i) expected.push_back(i);
  for (const v1::Run& run : runs) {
    EXPECT_THAT(this->EventSequences(run.id()), ElementsAreArray(expected));
    EXPECT_EQ(this->StepIds(run, Query(20, true)).size(), 1u);
  }
}

// --- SQLite only ---

// Runs `sql` on the database file through a separate raw connection, the way
// an operator (or a damaged disk) could.
void RawExec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* error = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
  EXPECT_EQ(rc, SQLITE_OK) << (error != nullptr ? error : "") << " in " << sql;
  sqlite3_free(error);
  sqlite3_close(db);
}

std::string RawQueryText(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK);
  std::string result;
  if (stmt != nullptr && sqlite3_step(stmt) == SQLITE_ROW) {
    const unsigned char* text = sqlite3_column_text(stmt, 0);
    if (text != nullptr) result = reinterpret_cast<const char*>(text);
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return result;
}

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    path_ = dir_ + "/store.db";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<SqliteStore> OpenStore() {
    absl::StatusOr<std::unique_ptr<SqliteStore>> store =
        SqliteStore::Open(path_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(store).value() : nullptr;
  }

  std::string dir_;
  std::string path_;
};

TEST_F(SqliteStoreTest, DataSurvivesReopening) {
  v1::Assistant assistant = MakeAssistant();
  v1::Thread thread = MakeThread();
  std::vector<v1::Message> messages = {MakeMessage(thread.id(), "a"),
                                       MakeMessage(thread.id(), "b", "run_x"),
                                       MakeMessage(thread.id(), "c")};
  IdempotencyRecord record = MakeRecord("CreateThread/r", 42);
  {
    std::unique_ptr<SqliteStore> store = OpenStore();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(
        store->CreateAssistant(assistant, kDefaultProject, nullptr).ok());
    ASSERT_TRUE(
        store->CreateThread(thread, kDefaultProject, messages, &record).ok());
    ASSERT_TRUE(store->DeleteMessage(thread.id(), messages[1].id()).ok());
  }
  std::unique_ptr<SqliteStore> store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(MessageDifferencer::Equals(*store->GetAssistant(assistant.id()),
                                         assistant));
  EXPECT_TRUE(
      MessageDifferencer::Equals(*store->GetThread(thread.id()), thread));
  absl::StatusOr<Page<v1::Message>> page =
      store->ListMessages(thread.id(), "", Query(20, true));
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_THAT(Ids(page->items),
              ElementsAre(messages[0].id(), messages[2].id()));
  // Tombstones survive too: the deleted message still works as a cursor.
  page =
      store->ListMessages(thread.id(), "", Query(20, true, messages[1].id()));
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_THAT(Ids(page->items), ElementsAre(messages[2].id()));
  absl::StatusOr<std::optional<IdempotencyRecord>> got =
      store->GetIdempotencyRecord(record.key);
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->response, record.response);
  // New objects still sort after the old ones (seq is never reused).
  v1::Message later = MakeMessage(thread.id(), "d");
  ASSERT_TRUE(store->CreateMessage(later, nullptr).ok());
  page = store->ListMessages(thread.id(), "", Query(1, false));
  ASSERT_TRUE(page.ok());
  EXPECT_THAT(Ids(page->items), ElementsAre(later.id()));
}

TEST_F(SqliteStoreTest, FileUsesWalAndCurrentSchemaVersion) {
  ASSERT_NE(OpenStore(), nullptr);
  EXPECT_EQ(RawQueryText(path_, "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(RawQueryText(path_, "PRAGMA user_version"),
            absl::StrCat(SqliteStore::SchemaVersion()));
  // Opening again is a no-op migration.
  ASSERT_NE(OpenStore(), nullptr);
  EXPECT_EQ(RawQueryText(path_, "PRAGMA user_version"),
            absl::StrCat(SqliteStore::SchemaVersion()));
}

TEST_F(SqliteStoreTest, NewerSchemaIsRefused) {
  ASSERT_NE(OpenStore(), nullptr);
  RawExec(path_, absl::StrCat("PRAGMA user_version = ",
                              SqliteStore::SchemaVersion() + 1));
  absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(path_);
  ASSERT_FALSE(store.ok());
  ExpectError(store.status(), absl::StatusCode::kFailedPrecondition,
              "STORE_SCHEMA_TOO_NEW");
  EXPECT_THAT(std::string(store.status().message()),
              ::testing::HasSubstr("newer"));
}

TEST_F(SqliteStoreTest, OpenInMemory) {
  absl::StatusOr<std::unique_ptr<SqliteStore>> store =
      SqliteStore::Open(":memory:");
  ASSERT_TRUE(store.ok()) << store.status();
  v1::Assistant assistant = MakeAssistant();
  ASSERT_TRUE(
      (*store)->CreateAssistant(assistant, kDefaultProject, nullptr).ok());
  EXPECT_TRUE((*store)->GetAssistant(assistant.id()).ok());
}

TEST_F(SqliteStoreTest, UnopenablePathIsUnavailable) {
  absl::StatusOr<std::unique_ptr<SqliteStore>> store =
      SqliteStore::Open(dir_ + "/no/such/dir/store.db");
  ASSERT_FALSE(store.ok());
  ExpectError(store.status(), absl::StatusCode::kUnavailable,
              "STORE_UNAVAILABLE");
}

TEST_F(SqliteStoreTest, NotADatabaseIsDataLoss) {
  {
    FILE* file = fopen(path_.c_str(), "wb");
    ASSERT_NE(file, nullptr);
    const std::string garbage(8192, 'x');
    fwrite(garbage.data(), 1, garbage.size(), file);
    fclose(file);
  }
  absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(path_);
  ASSERT_FALSE(store.ok());
  ExpectError(store.status(), absl::StatusCode::kDataLoss, "STORE_CORRUPT");
}

TEST_F(SqliteStoreTest, CorruptBodyIsAnErrorNotACrash) {
  v1::Assistant assistant = MakeAssistant();
  v1::Thread thread = MakeThread();
  v1::Message message = MakeMessage(thread.id());
  {
    std::unique_ptr<SqliteStore> store = OpenStore();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(
        store->CreateAssistant(assistant, kDefaultProject, nullptr).ok());
    ASSERT_TRUE(
        store->CreateThread(thread, kDefaultProject, {message}, nullptr).ok());
  }
  // An over-long varint: no protobuf parser accepts it.
  const std::string garbage = "X'FFFFFFFFFFFFFFFFFFFFFFFF'";
  for (const std::string& id : {assistant.id(), thread.id(), message.id()}) {
    RawExec(path_, absl::StrCat("UPDATE objects SET body = ", garbage,
                                " WHERE id = '", id, "'"));
  }
  std::unique_ptr<SqliteStore> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ExpectError(store->GetAssistant(assistant.id()).status(),
              absl::StatusCode::kDataLoss, "STORE_CORRUPT");
  ExpectError(store->ListAssistants(kDefaultProject, Query(20, true)).status(),
              absl::StatusCode::kDataLoss, "STORE_CORRUPT");
  ExpectError(
      store
          ->UpdateAssistant(assistant.id(),
                            [](v1::Assistant&) { return absl::OkStatus(); })
          .status(),
      absl::StatusCode::kDataLoss, "STORE_CORRUPT");
  ExpectError(store->GetThread(thread.id()).status(),
              absl::StatusCode::kDataLoss, "STORE_CORRUPT");
  ExpectError(store->GetMessage(thread.id(), message.id()).status(),
              absl::StatusCode::kDataLoss, "STORE_CORRUPT");
  ExpectError(store->ListMessages(thread.id(), "", Query(20, true)).status(),
              absl::StatusCode::kDataLoss, "STORE_CORRUPT");
  // A damaged object can still be deleted, and the store keeps working.
  EXPECT_TRUE(store->DeleteAssistant(assistant.id()).ok());
  EXPECT_TRUE(store->DeleteThread(thread.id()).ok());
  v1::Assistant fresh = MakeAssistant();
  ASSERT_TRUE(store->CreateAssistant(fresh, kDefaultProject, nullptr).ok());
  EXPECT_THAT(
      Ids(store->ListAssistants(kDefaultProject, Query(20, true))->items),
      ElementsAre(fresh.id()));
}

TEST_F(SqliteStoreTest, FailedWritesRollBack) {
  v1::Thread thread = MakeThread();
  v1::Message message = MakeMessage(thread.id(), "original");
  IdempotencyRecord record = MakeRecord("k", 1);
  {
    std::unique_ptr<SqliteStore> store = OpenStore();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(
        store->CreateThread(thread, kDefaultProject, {message}, &record).ok());
    // The mutation runs inside the transaction; its error must roll it back.
    EXPECT_FALSE(
        store
            ->UpdateMessage(thread.id(), message.id(),
                            [](v1::Message& m) {
                              m.mutable_content(0)->mutable_text()->set_value(
                                  "changed");
                              return absl::InternalError("boom");
                            })
            .ok());
    // A multi-row create that fails late (duplicate message id after the
    // thread row went in) leaves no thread behind.
    v1::Thread second = MakeThread();
    v1::Message a = MakeMessage(second.id());
    v1::Message dup = a;
    EXPECT_EQ(
        store->CreateThread(second, kDefaultProject, {a, dup}, nullptr).code(),
        absl::StatusCode::kAlreadyExists);
    EXPECT_EQ(store->GetThread(second.id()).status().code(),
              absl::StatusCode::kNotFound);
    // Idempotency conflict: nothing of the second thread is written.
    v1::Thread third = MakeThread();
    EXPECT_EQ(store
                  ->CreateThread(third, kDefaultProject,
                                 {MakeMessage(third.id())}, &record)
                  .code(),
              absl::StatusCode::kAborted);
    // No transaction was left open: writes still work.
    ASSERT_TRUE(store->CreateMessage(MakeMessage(thread.id()), nullptr).ok());
  }
  EXPECT_EQ(RawQueryText(path_, "SELECT COUNT(*) FROM objects"), "3");
  EXPECT_EQ(RawQueryText(path_, "SELECT COUNT(*) FROM idempotency"), "1");
  std::unique_ptr<SqliteStore> store = OpenStore();
  ASSERT_NE(store, nullptr);
  absl::StatusOr<v1::Message> got =
      store->GetMessage(thread.id(), message.id());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->content(0).text().value(), "original");
}

TEST_F(SqliteStoreTest, DeleteThreadLeavesOnlyTheThreadTombstone) {
  {
    std::unique_ptr<SqliteStore> store = OpenStore();
    ASSERT_NE(store, nullptr);
    v1::Thread thread = MakeThread();
    v1::Message m1 = MakeMessage(thread.id());
    v1::Message m2 = MakeMessage(thread.id());
    ASSERT_TRUE(
        store->CreateThread(thread, kDefaultProject, {m1, m2}, nullptr).ok());
    ASSERT_TRUE(store->DeleteMessage(thread.id(), m1.id()).ok());
    ASSERT_TRUE(store->DeleteThread(thread.id()).ok());
  }
  EXPECT_EQ(RawQueryText(path_, "SELECT COUNT(*) FROM objects"), "0");
  EXPECT_EQ(RawQueryText(path_, "SELECT kind FROM tombstones"), "thread");
  EXPECT_EQ(RawQueryText(path_, "SELECT COUNT(*) FROM tombstones"), "1");
}

TEST_F(SqliteStoreTest, BusyDatabaseIsUnavailable) {
  SqliteStoreOptions options;
  options.busy_timeout_ms = 100;
  absl::StatusOr<std::unique_ptr<SqliteStore>> opened =
      SqliteStore::Open(path_, options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::unique_ptr<SqliteStore> store = std::move(opened).value();
  // Another connection holds the write lock past the store's busy timeout:
  // the write gives up with UNAVAILABLE instead of hanging.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr),
            SQLITE_OK);
  ExpectError(store->CreateAssistant(MakeAssistant(), kDefaultProject, nullptr),
              absl::StatusCode::kUnavailable, "STORE_UNAVAILABLE");
  ASSERT_EQ(sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  // Reads were never blocked (WAL), and writes resume once the lock is gone.
  EXPECT_TRUE(store->ListAssistants(kDefaultProject, Query(20, true)).ok());
  EXPECT_TRUE(
      store->CreateAssistant(MakeAssistant(), kDefaultProject, nullptr).ok());
}

TEST_F(SqliteStoreTest, RunsSurviveReopening) {
  v1::Thread thread = MakeThread();
  v1::Run done = MakeRun(thread.id(), v1::RUN_STATUS_COMPLETED);
  v1::Run active = MakeRun(thread.id(), v1::RUN_STATUS_REQUIRES_ACTION);
  v1::RunStep s1 = MakeStep(active);
  v1::RunStep s2 = MakeStep(active);
  {
    std::unique_ptr<SqliteStore> store = OpenStore();
    ASSERT_NE(store, nullptr);
    RunCreation creation = MakeCreation(done, MakeEvents(1, 2));
    creation.new_thread = &thread;
    ASSERT_TRUE(store->CreateRun(creation).ok());
    ASSERT_TRUE(store->CreateRun(MakeCreation(active, MakeEvents(1, 1))).ok());
    RunChanges changes = ChangesFor(active);
    changes.steps = {s1, s2};
    changes.events = MakeEvents(2, 4);
    ASSERT_TRUE(store->CommitRunChanges({&changes}).ok());
  }
  std::unique_ptr<SqliteStore> store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(
      MessageDifferencer::Equals(*store->GetRun(thread.id(), done.id()), done));
  EXPECT_TRUE(MessageDifferencer::Equals(
      *store->GetRun(thread.id(), active.id()), active));
  EXPECT_THAT(Ids(store->ListRuns(thread.id(), Query(20, true))->items),
              ElementsAre(done.id(), active.id()));
  EXPECT_THAT(Ids(store->ListActiveRuns().value()), ElementsAre(active.id()));
  EXPECT_THAT(Sequences(*store->ListRunEvents(done.id(), 0, 100)),
              ElementsAre(1, 2));
  EXPECT_THAT(Sequences(*store->ListRunEvents(active.id(), 0, 100)),
              ElementsAre(1, 2, 3, 4));
  // The active-run rule holds across restarts.
  ExpectError(store->CreateMessage(MakeMessage(thread.id()), nullptr),
              absl::StatusCode::kFailedPrecondition, "THREAD_HAS_ACTIVE_RUN");
  // The log continues where it stood, and steps keep their places.
  RunChanges changes = ChangesFor(active);
  changes.events = MakeEvents(1, 1);
  ExpectError(store->CommitRunChanges({&changes}), absl::StatusCode::kInternal,
              "RUN_EVENT_SEQUENCE");
  s1.set_status(v1::RUN_STEP_STATUS_COMPLETED);
  changes.steps = {s1};
  changes.events = MakeEvents(5, 5);
  ASSERT_TRUE(store->CommitRunChanges({&changes}).ok());
  EXPECT_THAT(Ids(store->ListRunSteps(thread.id(), active.id(), Query(20, true))
                      ->items),
              ElementsAre(s1.id(), s2.id()));
  EXPECT_EQ(store->GetRunStep(thread.id(), active.id(), s1.id())->status(),
            v1::RUN_STEP_STATUS_COMPLETED);
}

// Checkpoints run on a background connection once the WAL passes the
// threshold (never inside a commit), and lose nothing.
TEST_F(SqliteStoreTest, CheckpointsInTheBackground) {
  v1::Thread thread = MakeThread();
  v1::Run run = MakeRun(thread.id(), v1::RUN_STATUS_IN_PROGRESS);
  SqliteStoreOptions options;
  options.checkpoint_pages = 8;
  {
    absl::StatusOr<std::unique_ptr<SqliteStore>> opened =
        SqliteStore::Open(path_, options);
    ASSERT_TRUE(opened.ok()) << opened.status();
    SqliteStore& store = **opened;
    RunCreation creation = MakeCreation(run, MakeEvents(1, 1));
    creation.new_thread = &thread;
    ASSERT_TRUE(store.CreateRun(creation).ok());
    // About 40 pages of events, one commit per event as a streaming run.
    for (int64_t seq = 2; seq <= 41; ++seq) {
      RunChanges changes = ChangesFor(run);
      changes.events = MakeEvents(seq, seq);
      changes.events[0].mutable_message()->set_id(std::string(4000, 'x'));
      ASSERT_TRUE(store.CommitRunChanges({&changes}).ok());
    }
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (store.checkpoints() == 0 &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_GT(store.checkpoints(), 0);
    // Another connection (a backup, the CLI) still sees every row.
    EXPECT_EQ(RawQueryText(path_, "SELECT COUNT(*) FROM run_events"), "41");
  }
  std::unique_ptr<SqliteStore> store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->ListRunEvents(run.id(), 0, 100)->size(), 41u);
}

// Concurrent writes share commits (group commit), yet each succeeds or
// fails on its own: a failed check undoes only its own writes.
TEST_F(SqliteStoreTest, ConcurrentWritesSucceedOrFailAlone) {
  std::unique_ptr<SqliteStore> store = OpenStore();
  ASSERT_NE(store, nullptr);
  std::vector<v1::Thread> threads(4);
  for (v1::Thread& thread : threads) {
    thread = MakeThread();
    ASSERT_TRUE(store->CreateThread(thread, kDefaultProject, {}, nullptr).ok());
  }
  const std::string missing = NewId(kThreadPrefix);
  std::atomic<int> ok{0}, not_found{0}, other{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < 8; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < 40; ++i) {
        // Every fifth write names a thread that does not exist.
        const bool bad = i % 5 == 4;
        const std::string thread_id =
            bad ? missing : threads[static_cast<size_t>((w + i) % 4)].id();
        const absl::Status status =
            store->CreateMessage(MakeMessage(thread_id), nullptr);
        if (status.ok()) {
          ++ok;
        } else if (status.code() == absl::StatusCode::kNotFound) {
          ++not_found;
        } else {
          ++other;
        }
      }
    });
  }
  for (std::thread& writer : writers) writer.join();
  EXPECT_EQ(ok.load(), 8 * 32);
  EXPECT_EQ(not_found.load(), 8 * 8);
  EXPECT_EQ(other.load(), 0);
  int64_t listed = 0;
  for (const v1::Thread& thread : threads) {
    listed += static_cast<int64_t>(
        store->ListMessages(thread.id(), "", Query(100, true))->items.size());
  }
  EXPECT_EQ(listed, 8 * 32);
  EXPECT_EQ(RawQueryText(path_, "SELECT SUM(messages) FROM message_counts"),
            absl::StrCat(8 * 32));
  EXPECT_EQ(RawQueryText(path_,
                         "SELECT COUNT(*) FROM objects WHERE kind = 'message'"),
            absl::StrCat(8 * 32));
}

TEST_F(SqliteStoreTest, SchemaVersion1Migrates) {
  // The schema exactly as migration 1 created it, frozen here: a database
  // written by the build before runs existed.
  const std::string kSchemaV1 = R"sql(
CREATE TABLE objects (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL,
  parent_id TEXT REFERENCES objects(id) ON DELETE CASCADE,
  run_id TEXT NOT NULL DEFAULT '',
  body BLOB NOT NULL
);
CREATE INDEX objects_by_kind_parent ON objects(kind, parent_id, seq);
CREATE INDEX objects_by_parent_run ON objects(parent_id, run_id, seq);
CREATE TABLE tombstones (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  parent_id TEXT,
  seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX tombstones_by_parent ON tombstones(parent_id);
CREATE TABLE idempotency (
  key TEXT PRIMARY KEY,
  fingerprint BLOB NOT NULL,
  response BLOB NOT NULL,
  created_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX idempotency_by_age ON idempotency(created_at_ms);
PRAGMA user_version = 1;
)sql";
  v1::Thread thread = MakeThread();
  v1::Message message = MakeMessage(thread.id());
  RawExec(
      path_,
      absl::StrCat(kSchemaV1,
                   "INSERT INTO objects (id, kind, parent_id, body) "
                   "VALUES ('",
                   thread.id(), "', 'thread', NULL, X'",
                   absl::BytesToHexString(thread.SerializeAsString()),
                   "'); INSERT INTO objects (id, kind, parent_id, run_id, "
                   "body) VALUES ('",
                   message.id(), "', 'message', '", thread.id(), "', '', X'",
                   absl::BytesToHexString(message.SerializeAsString()), "');"));
  ASSERT_EQ(RawQueryText(path_, "PRAGMA user_version"), "1");

  std::unique_ptr<SqliteStore> store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(RawQueryText(path_, "PRAGMA user_version"),
            absl::StrCat(SqliteStore::SchemaVersion()));
  EXPECT_TRUE(
      MessageDifferencer::Equals(*store->GetThread(thread.id()), thread));
  EXPECT_THAT(Ids(store->ListMessages(thread.id(), "", Query(20, true))->items),
              ElementsAre(message.id()));
  // Migration 3 counted the thread's existing messages.
  EXPECT_EQ(RawQueryText(path_, "SELECT messages FROM message_counts"), "1");
  // Migration 4 gave what existed to the default project.
  EXPECT_EQ(*store->GetProject(OwnedKind::kThread, thread.id()),
            kDefaultProject);
  // Old objects are not runs, so nothing is active until a run starts.
  EXPECT_THAT(store->ListActiveRuns().value(), IsEmpty());
  v1::Run run = MakeRun(thread.id(), v1::RUN_STATUS_QUEUED);
  ASSERT_TRUE(store->CreateRun(MakeCreation(run, MakeEvents(1, 1))).ok());
  EXPECT_THAT(Ids(store->ListActiveRuns().value()), ElementsAre(run.id()));
  ExpectError(store->CreateMessage(MakeMessage(thread.id()), nullptr),
              absl::StatusCode::kFailedPrecondition, "THREAD_HAS_ACTIVE_RUN");
  v1::Run finished = run;
  finished.set_status(v1::RUN_STATUS_COMPLETED);
  RunChanges changes = ChangesFor(run);
  changes.run = finished;
  changes.events = MakeEvents(2, 2);
  ASSERT_TRUE(store->CommitRunChanges({&changes}).ok());
  ASSERT_TRUE(store->CreateMessage(MakeMessage(thread.id()), nullptr).ok());
  EXPECT_EQ(RawQueryText(path_, "SELECT messages FROM message_counts"), "2");
  EXPECT_TRUE(store->DeleteThread(thread.id()).ok());
  EXPECT_EQ(RawQueryText(path_, "SELECT COUNT(*) FROM message_counts"), "0");
}

TEST_F(SqliteStoreTest, DeleteThreadLeavesNoRunRows) {
  {
    std::unique_ptr<SqliteStore> store = OpenStore();
    ASSERT_NE(store, nullptr);
    v1::Thread thread = MakeThread();
    v1::Run run = MakeRun(thread.id(), v1::RUN_STATUS_IN_PROGRESS);
    RunCreation creation = MakeCreation(run, MakeEvents(1, 2));
    creation.new_thread = &thread;
    creation.messages = {MakeMessage(thread.id())};
    ASSERT_TRUE(store->CreateRun(creation).ok());
    v1::Run finished = run;
    finished.set_status(v1::RUN_STATUS_COMPLETED);
    RunChanges changes = ChangesFor(run);
    changes.run = finished;
    changes.steps = {MakeStep(run), MakeStep(run)};
    changes.messages = {MakeMessage(thread.id(), "reply", run.id())};
    changes.events = MakeEvents(3, 5);
    ASSERT_TRUE(store->CommitRunChanges({&changes}).ok());
    ASSERT_TRUE(store->DeleteThread(thread.id()).ok());
  }
  EXPECT_EQ(RawQueryText(path_, "SELECT COUNT(*) FROM objects"), "0");
  EXPECT_EQ(RawQueryText(path_, "SELECT COUNT(*) FROM run_events"), "0");
  EXPECT_EQ(RawQueryText(path_, "SELECT COUNT(*) FROM tombstones"), "1");
}

}  // namespace
}  // namespace assistants
