// Unit tests of the tool worker registry (tool_workers/registry.h) through
// its public API with a FakeClock: registration (token, allow-list,
// validation, definition conflicts), leases and heartbeats, unregistration
// and draining, health, static workers, the List RPCs, and the balancing of
// Acquire/Release with the capacity listener.
#include "tool_workers/registry.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/clock.h"
#include "service/common/errors.h"
#include "service/core/validation.h"

namespace assistants::tool_workers {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

constexpr char kToken[] = "registration-token-0123456789";

// A tool; zero timeout and concurrency mean the registry's defaults.
v1::WorkerTool MakeTool(const std::string& name,
                        const std::string& description = "Does things.",
                        bool idempotent = false, int32_t timeout_ms = 0,
                        int32_t max_concurrency = 0) {
  v1::WorkerTool tool;
  tool.mutable_function()->set_name(name);
  tool.mutable_function()->set_description(description);
  (*tool.mutable_function()->mutable_parameters()->mutable_fields())["type"]
      .set_string_value("object");
  tool.set_idempotent(idempotent);
  tool.set_timeout_ms(timeout_ms);
  tool.set_max_concurrency(max_concurrency);
  return tool;
}

v1::RegisterWorkerRequest MakeRequest(const std::string& worker_id,
                                      const std::string& endpoint,
                                      std::vector<v1::WorkerTool> tools,
                                      int32_t lease_ttl_ms = 0) {
  v1::RegisterWorkerRequest request;
  request.set_worker_id(worker_id);
  request.set_endpoint(endpoint);
  for (v1::WorkerTool& tool : tools) *request.add_tools() = std::move(tool);
  request.set_lease_ttl_ms(lease_ttl_ms);
  return request;
}

// A worker on loopback serving `tools`.
v1::RegisterWorkerRequest Replica(const std::string& worker_id,
                                  std::vector<v1::WorkerTool> tools,
                                  int32_t lease_ttl_ms = 0) {
  return MakeRequest(worker_id,
                     "127.0.0.1:" + std::to_string(50000 + worker_id.size()),
                     std::move(tools), lease_ttl_ms);
}

v1::Worker StaticWorker(const std::string& worker_id,
                        const std::string& endpoint,
                        std::vector<v1::WorkerTool> tools) {
  v1::Worker worker;
  worker.set_worker_id(worker_id);
  worker.set_endpoint(endpoint);
  for (v1::WorkerTool& tool : tools) *worker.add_tools() = std::move(tool);
  return worker;
}

void ExpectError(const absl::Status& status, absl::StatusCode code,
                 absl::string_view reason) {
  EXPECT_EQ(status.code(), code) << status;
  EXPECT_EQ(ErrorReason(status), reason) << status;
}

// ErrorInfo.metadata[key] of `status`, or "<none>".
std::string Metadata(const absl::Status& status, const std::string& key) {
  auto info = GetErrorInfo(status);
  if (!info.has_value()) return "<no ErrorInfo>";
  auto it = info->metadata().find(key);
  return it == info->metadata().end() ? "<none>" : it->second;
}

// INVALID_ARGUMENT with `reason` naming `field` (ErrorInfo and BadRequest).
void ExpectFieldError(const absl::Status& status, absl::string_view reason,
                      const std::string& field) {
  ExpectError(status, absl::StatusCode::kInvalidArgument, reason);
  EXPECT_EQ(Metadata(status, "field"), field) << status;
  auto bad_request = GetBadRequest(status);
  ASSERT_TRUE(bad_request.has_value()) << status;
  ASSERT_EQ(bad_request->field_violations_size(), 1);
  EXPECT_EQ(bad_request->field_violations(0).field(), field);
}

RegistryOptions TokenOptions() {
  RegistryOptions options;
  options.registration_token = kToken;
  return options;
}

class RegistryTest : public ::testing::Test {
 protected:
  RegistryTest() : registry_(TokenOptions(), &clock_) {}

  void Advance(int64_t ms) { clock_.Advance(std::chrono::milliseconds(ms)); }
  int64_t Now() const { return clock_.NowMillis(); }

  v1::RegisterWorkerResponse MustRegister(
      const v1::RegisterWorkerRequest& request) {
    auto response = registry_.Register(kToken, request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : v1::RegisterWorkerResponse();
  }

  absl::Status Heartbeat(const std::string& worker_id,
                         const std::string& lease_id) {
    v1::HeartbeatRequest request;
    request.set_worker_id(worker_id);
    request.set_lease_id(lease_id);
    return registry_.Heartbeat(kToken, request).status();
  }

  absl::Status Unregister(const std::string& worker_id,
                          const std::string& lease_id) {
    v1::UnregisterWorkerRequest request;
    request.set_worker_id(worker_id);
    request.set_lease_id(lease_id);
    return registry_.Unregister(kToken, request);
  }

  std::vector<std::string> WorkerIds() const {
    std::vector<std::string> ids;
    const v1::ListWorkersResponse list = registry_.ListWorkers();
    for (const v1::Worker& worker : list.workers()) {
      ids.push_back(worker.worker_id());
    }
    return ids;
  }

  // The listed worker `id` (a default Worker when it is not listed).
  v1::Worker Listed(const std::string& id) const {
    const v1::ListWorkersResponse list = registry_.ListWorkers();
    for (const v1::Worker& worker : list.workers()) {
      if (worker.worker_id() == id) return worker;
    }
    ADD_FAILURE() << "worker " << id << " is not listed";
    return v1::Worker();
  }

  v1::WorkerHealth HealthOf(const std::string& id) const {
    return Listed(id).health();
  }

  // Acquires `tool` and returns the worker id, or "" when none was free.
  std::string AcquireOn(const std::string& tool,
                        const std::set<std::string>& exclude = {},
                        WorkerSlot* out = nullptr) {
    WorkerSlot slot;
    if (registry_.Acquire(tool, exclude, &slot) != AcquireResult::kAcquired) {
      return "";
    }
    slots_.push_back(slot);
    if (out != nullptr) *out = slot;
    return slot.worker_id;
  }

  FakeClock clock_;
  ToolRegistry registry_;
  std::vector<WorkerSlot> slots_;
};

// --- Register ---

TEST_F(RegistryTest, RegisterGrantsADefaultLease) {
  const int64_t start = Now();
  v1::RegisterWorkerResponse response =
      MustRegister(MakeRequest("calc-1", "127.0.0.1:50051", {MakeTool("add")}));
  EXPECT_THAT(response.lease_id(), StartsWith("lease_"));
  EXPECT_EQ(response.lease_ttl_ms(), 15000);
  EXPECT_EQ(response.heartbeat_interval_ms(), 5000);

  v1::Worker worker = Listed("calc-1");
  EXPECT_EQ(worker.endpoint(), "127.0.0.1:50051");
  EXPECT_EQ(worker.health(), v1::WORKER_HEALTH_SERVING);
  EXPECT_EQ(worker.lease_expires_at_ms(), start + 15000);
  EXPECT_EQ(worker.in_flight(), 0);
  EXPECT_FALSE(worker.static_());
  ASSERT_EQ(worker.tools_size(), 1);
  EXPECT_EQ(worker.tools(0).function().name(), "add");
  EXPECT_TRUE(registry_.Serves("add"));
  EXPECT_FALSE(registry_.Serves("sub"));
}

TEST_F(RegistryTest, LeaseTtlIsClampedAndHeartbeatIsAThird) {
  struct Case {
    int32_t requested;
    int32_t granted;
  };
  for (const Case& c : {Case{1, 1000}, Case{999, 1000}, Case{1000, 1000},
                        Case{6000, 6000}, Case{300000, 300000},
                        Case{300001, 300000}, Case{2'000'000'000, 300000}}) {
    SCOPED_TRACE(c.requested);
    v1::RegisterWorkerResponse response = MustRegister(
        Replica("w", {MakeTool("add")}, /*lease_ttl_ms=*/c.requested));
    EXPECT_EQ(response.lease_ttl_ms(), c.granted);
    EXPECT_EQ(response.heartbeat_interval_ms(), c.granted / 3);
    EXPECT_EQ(Listed("w").lease_expires_at_ms(), Now() + c.granted);
  }
}

TEST_F(RegistryTest, NegativeLeaseTtlIsRefused) {
  ExpectFieldError(
      registry_.Register(kToken, Replica("w", {MakeTool("add")}, -1)).status(),
      kValueOutOfRange, "lease_ttl_ms");
  EXPECT_THAT(WorkerIds(), IsEmpty());
}

TEST_F(RegistryTest, EachRegistrationGetsANewLease) {
  const std::string first =
      MustRegister(Replica("w", {MakeTool("add")})).lease_id();
  const std::string second =
      MustRegister(Replica("w", {MakeTool("add")})).lease_id();
  EXPECT_NE(first, second);
  EXPECT_THAT(WorkerIds(), ElementsAre("w"));
}

// --- Token ---

TEST(RegistryTokenTest, NoTokenConfiguredDisablesRegistration) {
  FakeClock clock;
  ToolRegistry registry(RegistryOptions(), &clock);
  for (const char* token : {"", "anything", kToken}) {
    SCOPED_TRACE(token);
    auto registered = registry.Register(token, Replica("w", {MakeTool("add")}));
    ExpectError(registered.status(), absl::StatusCode::kPermissionDenied,
                "REGISTRATION_DISABLED");
    v1::HeartbeatRequest heartbeat;
    heartbeat.set_worker_id("w");
    ExpectError(registry.Heartbeat(token, heartbeat).status(),
                absl::StatusCode::kPermissionDenied, "REGISTRATION_DISABLED");
    v1::UnregisterWorkerRequest unregister;
    unregister.set_worker_id("w");
    ExpectError(registry.Unregister(token, unregister),
                absl::StatusCode::kPermissionDenied, "REGISTRATION_DISABLED");
  }
  EXPECT_EQ(registry.ListWorkers().workers_size(), 0);
  // Static workers still serve.
  ASSERT_TRUE(
      registry
          .AddStatic(StaticWorker("static-1", "calc:50051", {MakeTool("add")}))
          .ok());
  EXPECT_TRUE(registry.Serves("add"));
}

TEST_F(RegistryTest, WrongOrMissingTokenIsUnauthenticated) {
  const std::string token = kToken;
  for (const std::string& bad :
       {std::string(), std::string("wrong"), token.substr(0, token.size() - 1),
        token + "x", std::string(token.size(), 'x'), "Bearer " + token}) {
    SCOPED_TRACE(bad);
    ExpectError(
        registry_.Register(bad, Replica("w", {MakeTool("add")})).status(),
        absl::StatusCode::kUnauthenticated, "BAD_REGISTRATION_TOKEN");
  }
  EXPECT_THAT(WorkerIds(), IsEmpty());

  const std::string lease =
      MustRegister(Replica("w", {MakeTool("add")})).lease_id();
  v1::HeartbeatRequest heartbeat;
  heartbeat.set_worker_id("w");
  heartbeat.set_lease_id(lease);
  ExpectError(registry_.Heartbeat("wrong", heartbeat).status(),
              absl::StatusCode::kUnauthenticated, "BAD_REGISTRATION_TOKEN");
  v1::UnregisterWorkerRequest unregister;
  unregister.set_worker_id("w");
  unregister.set_lease_id(lease);
  ExpectError(registry_.Unregister("", unregister),
              absl::StatusCode::kUnauthenticated, "BAD_REGISTRATION_TOKEN");
  EXPECT_THAT(WorkerIds(), ElementsAre("w"));  // not unregistered
}

TEST_F(RegistryTest, MissingTokenMessageSaysHowToSendIt) {
  auto registered = registry_.Register("", Replica("w", {MakeTool("add")}));
  EXPECT_THAT(std::string(registered.status().message()),
              HasSubstr("authorization: Bearer"));
}

// --- Allow-list ---

TEST_F(RegistryTest, EndpointOutsideTheAllowListIsRefused) {
  for (const std::string& endpoint :
       {std::string("10.0.0.1:50051"), std::string("example.com:443"),
        std::string("[2001:db8::1]:80")}) {
    SCOPED_TRACE(endpoint);
    auto registered = registry_.Register(
        kToken, MakeRequest("w", endpoint, {MakeTool("add")}));
    ExpectError(registered.status(), absl::StatusCode::kPermissionDenied,
                "ENDPOINT_NOT_ALLOWED");
    EXPECT_EQ(Metadata(registered.status(), "endpoint"), endpoint);
    EXPECT_THAT(std::string(registered.status().message()),
                HasSubstr("127.0.0.0/8"));  // the allow-list in force
  }
  EXPECT_THAT(WorkerIds(), IsEmpty());
  for (const std::string& endpoint :
       {std::string("127.0.0.1:1"), std::string("localhost:50051"),
        std::string("[::1]:50051")}) {
    SCOPED_TRACE(endpoint);
    MustRegister(MakeRequest("w", endpoint, {MakeTool("add")}));
  }
}

TEST(RegistryAllowListTest, ConfiguredAllowList) {
  RegistryOptions options = TokenOptions();
  auto list = EndpointAllowList::Parse("10.0.0.0/8,*.svc.cluster.local");
  ASSERT_TRUE(list.ok()) << list.status();
  options.allowlist = *list;
  FakeClock clock;
  ToolRegistry registry(options, &clock);
  EXPECT_TRUE(registry
                  .Register(kToken, MakeRequest("a", "10.1.2.3:50051",
                                                {MakeTool("add")}))
                  .ok());
  EXPECT_TRUE(
      registry
          .Register(kToken, MakeRequest("b", "calc.tools.svc.cluster.local:80",
                                        {MakeTool("add")}))
          .ok());
  ExpectError(registry
                  .Register(kToken, MakeRequest("c", "127.0.0.1:50051",
                                                {MakeTool("add")}))
                  .status(),
              absl::StatusCode::kPermissionDenied, "ENDPOINT_NOT_ALLOWED");
}

// --- Validation ---

struct InvalidCase {
  std::string name;
  std::function<void(v1::RegisterWorkerRequest*)> mutate;
  std::string reason;
  std::string field;
};

class RegistryValidationTest
    : public RegistryTest,
      public ::testing::WithParamInterface<InvalidCase> {};

TEST_P(RegistryValidationTest, NamesTheField) {
  v1::RegisterWorkerRequest request =
      Replica("calc-1", {MakeTool("add"), MakeTool("sub")});
  GetParam().mutate(&request);
  ExpectFieldError(registry_.Register(kToken, request).status(),
                   GetParam().reason, GetParam().field);
  EXPECT_THAT(WorkerIds(), IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(
    Requests, RegistryValidationTest,
    ::testing::Values(
        InvalidCase{"WorkerIdEmpty",
                    [](v1::RegisterWorkerRequest* r) { r->clear_worker_id(); },
                    std::string(kFieldRequired), "worker_id"},
        InvalidCase{
            "WorkerIdBadCharacters",
            [](v1::RegisterWorkerRequest* r) { r->set_worker_id("calc 1"); },
            std::string(kInvalidFormat), "worker_id"},
        InvalidCase{
            "WorkerIdSlash",
            [](v1::RegisterWorkerRequest* r) { r->set_worker_id("calc/1"); },
            std::string(kInvalidFormat), "worker_id"},
        InvalidCase{"WorkerIdTooLong",
                    [](v1::RegisterWorkerRequest* r) {
                      r->set_worker_id(std::string(129, 'w'));
                    },
                    std::string(kFieldTooLong), "worker_id"},
        InvalidCase{"EndpointEmpty",
                    [](v1::RegisterWorkerRequest* r) { r->clear_endpoint(); },
                    std::string(kFieldRequired), "endpoint"},
        InvalidCase{
            "EndpointNoPort",
            [](v1::RegisterWorkerRequest* r) { r->set_endpoint("127.0.0.1"); },
            std::string(kInvalidFormat), "endpoint"},
        InvalidCase{"EndpointPortZero",
                    [](v1::RegisterWorkerRequest* r) {
                      r->set_endpoint("127.0.0.1:0");
                    },
                    std::string(kInvalidFormat), "endpoint"},
        InvalidCase{"ToolsEmpty",
                    [](v1::RegisterWorkerRequest* r) { r->clear_tools(); },
                    std::string(kFieldRequired), "tools"},
        InvalidCase{"TooManyTools",
                    [](v1::RegisterWorkerRequest* r) {
                      r->clear_tools();
                      for (int i = 0; i < 129; ++i) {
                        *r->add_tools() = MakeTool(absl::StrCat("t", i));
                      }
                    },
                    std::string(kValueOutOfRange), "tools"},
        InvalidCase{"ToolNameBad",
                    [](v1::RegisterWorkerRequest* r) {
                      r->mutable_tools(1)->mutable_function()->set_name(
                          "sub tract");
                    },
                    std::string(kInvalidFormat), "tools[1].function.name"},
        InvalidCase{"ToolNameEmpty",
                    [](v1::RegisterWorkerRequest* r) {
                      r->mutable_tools(1)->mutable_function()->clear_name();
                    },
                    std::string(kFieldRequired), "tools[1].function.name"},
        InvalidCase{"ToolParametersNotAnObject",
                    [](v1::RegisterWorkerRequest* r) {
                      (*r->mutable_tools(0)
                            ->mutable_function()
                            ->mutable_parameters()
                            ->mutable_fields())["type"]
                          .set_string_value("array");
                    },
                    std::string(kInvalidValue),
                    "tools[0].function.parameters.type"},
        InvalidCase{"DuplicateTool",
                    [](v1::RegisterWorkerRequest* r) {
                      r->mutable_tools(1)->mutable_function()->set_name("add");
                    },
                    std::string(kDuplicateValue), "tools[1].function.name"},
        InvalidCase{"TimeoutNegative",
                    [](v1::RegisterWorkerRequest* r) {
                      r->mutable_tools(0)->set_timeout_ms(-1);
                    },
                    std::string(kValueOutOfRange), "tools[0].timeout_ms"},
        InvalidCase{"TimeoutTooLarge",
                    [](v1::RegisterWorkerRequest* r) {
                      r->mutable_tools(1)->set_timeout_ms(600001);
                    },
                    std::string(kValueOutOfRange), "tools[1].timeout_ms"},
        InvalidCase{"MaxConcurrencyNegative",
                    [](v1::RegisterWorkerRequest* r) {
                      r->mutable_tools(1)->set_max_concurrency(-1);
                    },
                    std::string(kValueOutOfRange), "tools[1].max_concurrency"},
        InvalidCase{"MaxConcurrencyTooLarge",
                    [](v1::RegisterWorkerRequest* r) {
                      r->mutable_tools(0)->set_max_concurrency(4097);
                    },
                    std::string(kValueOutOfRange), "tools[0].max_concurrency"}),
    [](const ::testing::TestParamInfo<InvalidCase>& info) {
      return info.param.name;
    });

TEST_F(RegistryTest, LimitsAreInclusive) {
  v1::RegisterWorkerRequest request = Replica(
      std::string(128, 'w'), {MakeTool("slow", "", false, /*timeout_ms=*/600000,
                                       /*max_concurrency=*/4096),
                              MakeTool(std::string(64, 'n'))});
  for (int i = 2; i < 128; ++i) {
    *request.add_tools() = MakeTool(absl::StrCat("t", i));
  }
  MustRegister(request);
  v1::Worker worker = Listed(std::string(128, 'w'));
  EXPECT_EQ(worker.tools_size(), 128);
  std::optional<v1::WorkerTool> slow = registry_.Tool("slow");
  ASSERT_TRUE(slow.has_value());
  EXPECT_EQ(slow->timeout_ms(), 600000);
  EXPECT_EQ(slow->max_concurrency(), 4096);
}

TEST_F(RegistryTest, WorkerIdMayUseDotsColonsDashesUnderscores) {
  MustRegister(Replica("calc-7f9c.pod_2:a", {MakeTool("add")}));
  EXPECT_THAT(WorkerIds(), ElementsAre("calc-7f9c.pod_2:a"));
}

// --- Definition conflicts ---

TEST_F(RegistryTest, ConflictingDefinitionFromAnotherWorkerIsRefused) {
  MustRegister(Replica("a", {MakeTool("add", "Adds two numbers.")}));
  auto registered = registry_.Register(
      kToken, Replica("b", {MakeTool("mul"), MakeTool("add", "Adds.")}));
  ExpectError(registered.status(), absl::StatusCode::kAlreadyExists,
              "TOOL_DEFINITION_CONFLICT");
  EXPECT_EQ(Metadata(registered.status(), "tool"), "add");
  EXPECT_EQ(Metadata(registered.status(), "worker_id"), "a");
  // Nothing of b was registered, not even its other tool.
  EXPECT_THAT(WorkerIds(), ElementsAre("a"));
  EXPECT_FALSE(registry_.Serves("mul"));
}

TEST_F(RegistryTest, EveryPartOfTheDefinitionMustAgree) {
  const v1::WorkerTool base = MakeTool("add", "Adds.", /*idempotent=*/false);
  MustRegister(Replica("a", {base}));

  std::vector<std::pair<std::string, v1::WorkerTool>> variants;
  v1::WorkerTool description = base;
  description.mutable_function()->set_description("Adds numbers.");
  variants.emplace_back("description", description);
  v1::WorkerTool idempotent = base;
  idempotent.set_idempotent(true);
  variants.emplace_back("idempotent", idempotent);
  v1::WorkerTool strict = base;
  strict.mutable_function()->set_strict(true);
  variants.emplace_back("strict", strict);
  v1::WorkerTool parameters = base;
  (*parameters.mutable_function()
        ->mutable_parameters()
        ->mutable_fields())["required"]
      .mutable_list_value()
      ->add_values()
      ->set_string_value("x");
  variants.emplace_back("parameters", parameters);
  for (const auto& [what, tool] : variants) {
    SCOPED_TRACE(what);
    ExpectError(registry_.Register(kToken, Replica("b", {tool})).status(),
                absl::StatusCode::kAlreadyExists, "TOOL_DEFINITION_CONFLICT");
  }
  EXPECT_THAT(WorkerIds(), ElementsAre("a"));
}

TEST_F(RegistryTest, SameDefinitionFromTwoReplicasIsFine) {
  MustRegister(Replica("a", {MakeTool("add", "Adds.", true)}));
  // Timeout and concurrency are per replica: they may differ.
  MustRegister(Replica("b", {MakeTool("add", "Adds.", true, 900, 3)}));
  EXPECT_THAT(WorkerIds(), ElementsAre("a", "b"));
  v1::ListToolsResponse tools = registry_.ListTools();
  ASSERT_EQ(tools.tools_size(), 1);
  EXPECT_THAT(tools.tools(0).worker_ids(), ElementsAre("a", "b"));
}

TEST_F(RegistryTest, ReRegistrationMayChangeTheDefinitionOfItsOwnTools) {
  MustRegister(Replica("a", {MakeTool("add", "Adds.")}));
  MustRegister(Replica("a", {MakeTool("add", "Adds two numbers.", true)}));
  std::optional<v1::WorkerTool> add = registry_.Tool("add");
  ASSERT_TRUE(add.has_value());
  EXPECT_EQ(add->function().description(), "Adds two numbers.");
  EXPECT_TRUE(add->idempotent());
  // Tools it no longer lists are gone.
  MustRegister(Replica("a", {MakeTool("mul")}));
  EXPECT_FALSE(registry_.Serves("add"));
  EXPECT_TRUE(registry_.Serves("mul"));
}

TEST_F(RegistryTest, ReRegistrationMayNotDivergeFromOtherReplicas) {
  MustRegister(Replica("a", {MakeTool("add", "Adds.")}));
  MustRegister(Replica("b", {MakeTool("add", "Adds.")}));
  ExpectError(
      registry_.Register(kToken, Replica("a", {MakeTool("add", "New.")}))
          .status(),
      absl::StatusCode::kAlreadyExists, "TOOL_DEFINITION_CONFLICT");
  EXPECT_EQ(registry_.Tool("add")->function().description(), "Adds.");
}

TEST_F(RegistryTest, ExpiredWorkersDoNotHoldADefinition) {
  MustRegister(Replica("a", {MakeTool("add", "Adds.")}));
  Advance(15000);
  MustRegister(Replica("b", {MakeTool("add", "Adds, differently.")}));
  EXPECT_THAT(WorkerIds(), ElementsAre("b"));
}

// --- Leases and heartbeats ---

TEST_F(RegistryTest, HeartbeatExtendsTheLease) {
  const std::string lease =
      MustRegister(Replica("w", {MakeTool("add")})).lease_id();
  Advance(10000);
  v1::HeartbeatRequest request;
  request.set_worker_id("w");
  request.set_lease_id(lease);
  auto response = registry_.Heartbeat(kToken, request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->lease_expires_at_ms(), Now() + 15000);
  EXPECT_EQ(Listed("w").lease_expires_at_ms(), Now() + 15000);
  Advance(10000);  // past the first lease
  EXPECT_TRUE(registry_.Serves("add"));
  EXPECT_THAT(WorkerIds(), ElementsAre("w"));
  Advance(5000);  // past the extended one
  EXPECT_FALSE(registry_.Serves("add"));
}

TEST_F(RegistryTest, LeaseExpiryRemovesTheWorker) {
  const std::string lease =
      MustRegister(Replica("w", {MakeTool("add")})).lease_id();
  Advance(14999);
  EXPECT_TRUE(registry_.Serves("add"));
  EXPECT_THAT(WorkerIds(), ElementsAre("w"));
  Advance(1);
  EXPECT_FALSE(registry_.Serves("add"));
  EXPECT_FALSE(registry_.Tool("add").has_value());
  EXPECT_THAT(WorkerIds(), IsEmpty());
  EXPECT_EQ(registry_.ListTools().tools_size(), 0);
  WorkerSlot slot;
  EXPECT_EQ(registry_.Acquire("add", {}, &slot), AcquireResult::kNoWorker);
  absl::Status heartbeat = Heartbeat("w", lease);
  ExpectError(heartbeat, absl::StatusCode::kNotFound, "LEASE_NOT_FOUND");
  EXPECT_EQ(Metadata(heartbeat, "worker_id"), "w");
}

TEST_F(RegistryTest, ExpiredWorkerMayRegisterAgain) {
  MustRegister(Replica("w", {MakeTool("add")}));
  Advance(20000);
  const std::string lease =
      MustRegister(Replica("w", {MakeTool("add")})).lease_id();
  EXPECT_TRUE(registry_.Serves("add"));
  EXPECT_TRUE(Heartbeat("w", lease).ok());
}

TEST_F(RegistryTest, HeartbeatWithAStaleLeaseIsNotFound) {
  const std::string old_lease =
      MustRegister(Replica("w", {MakeTool("add")})).lease_id();
  const std::string new_lease =
      MustRegister(Replica("w", {MakeTool("add")})).lease_id();
  ExpectError(Heartbeat("w", old_lease), absl::StatusCode::kNotFound,
              "LEASE_NOT_FOUND");
  EXPECT_TRUE(Heartbeat("w", new_lease).ok());
  ExpectError(Heartbeat("w", ""), absl::StatusCode::kNotFound,
              "LEASE_NOT_FOUND");
  ExpectError(Heartbeat("unknown", new_lease), absl::StatusCode::kNotFound,
              "LEASE_NOT_FOUND");
}

// --- Unregister ---

TEST_F(RegistryTest, UnregisterRemovesTheWorker) {
  const std::string lease =
      MustRegister(Replica("w", {MakeTool("add")})).lease_id();
  EXPECT_TRUE(Unregister("w", lease).ok());
  EXPECT_THAT(WorkerIds(), IsEmpty());
  EXPECT_FALSE(registry_.Serves("add"));
  ExpectError(Heartbeat("w", lease), absl::StatusCode::kNotFound,
              "LEASE_NOT_FOUND");
  // Idempotent.
  EXPECT_TRUE(Unregister("w", lease).ok());
  EXPECT_TRUE(Unregister("never-registered", "lease_x").ok());
}

TEST_F(RegistryTest, UnregisterWithAStaleLeaseKeepsTheNewRegistration) {
  const std::string old_lease =
      MustRegister(Replica("w", {MakeTool("add")})).lease_id();
  MustRegister(Replica("w", {MakeTool("add")}));
  EXPECT_TRUE(Unregister("w", old_lease).ok());
  EXPECT_THAT(WorkerIds(), ElementsAre("w"));
  EXPECT_TRUE(registry_.Serves("add"));
}

TEST_F(RegistryTest, UnregisteredWorkerDrainsItsCallsInFlight) {
  const std::string lease =
      MustRegister(Replica("w", {MakeTool("add")})).lease_id();
  WorkerSlot slot;
  ASSERT_EQ(AcquireOn("add", {}, &slot), "w");
  EXPECT_TRUE(Unregister("w", lease).ok());

  v1::Worker worker = Listed("w");
  EXPECT_EQ(worker.health(), v1::WORKER_HEALTH_DRAINING);
  EXPECT_EQ(worker.in_flight(), 1);
  // It takes no new calls and is no longer a live server of its tools.
  EXPECT_FALSE(registry_.Serves("add"));
  EXPECT_EQ(registry_.ListTools().tools_size(), 0);
  WorkerSlot other;
  EXPECT_EQ(registry_.Acquire("add", {}, &other), AcquireResult::kNoWorker);
  ExpectError(Heartbeat("w", lease), absl::StatusCode::kNotFound,
              "LEASE_NOT_FOUND");

  registry_.Release(slot, CallOutcome::kOk);
  EXPECT_THAT(WorkerIds(), IsEmpty());
}

TEST_F(RegistryTest, DrainingWorkerDoesNotHoldItsDefinition) {
  const std::string lease =
      MustRegister(Replica("a", {MakeTool("add", "Adds.")})).lease_id();
  ASSERT_EQ(AcquireOn("add"), "a");
  ASSERT_TRUE(Unregister("a", lease).ok());
  MustRegister(Replica("b", {MakeTool("add", "Adds, v2.")}));
  EXPECT_EQ(registry_.Tool("add")->function().description(), "Adds, v2.");
}

// --- Health ---

TEST_F(RegistryTest, MissedHeartbeatsMakeAWorkerSuspect) {
  const std::string lease =
      MustRegister(Replica("w", {MakeTool("add")})).lease_id();  // every 5 s
  Advance(10000);
  EXPECT_EQ(HealthOf("w"), v1::WORKER_HEALTH_SERVING);
  Advance(1);
  EXPECT_EQ(HealthOf("w"), v1::WORKER_HEALTH_SUSPECT);
  EXPECT_TRUE(registry_.Serves("add"));  // suspect, still live
  ASSERT_TRUE(Heartbeat("w", lease).ok());
  EXPECT_EQ(HealthOf("w"), v1::WORKER_HEALTH_SERVING);
}

TEST_F(RegistryTest, UnavailableCallMakesAWorkerSuspectForAWhile) {
  MustRegister(Replica("w", {MakeTool("add")}, /*lease_ttl_ms=*/60000));
  WorkerSlot slot;
  ASSERT_EQ(AcquireOn("add", {}, &slot), "w");
  registry_.Release(slot, CallOutcome::kUnavailable);
  EXPECT_EQ(HealthOf("w"), v1::WORKER_HEALTH_SUSPECT);
  Advance(4999);
  EXPECT_EQ(HealthOf("w"), v1::WORKER_HEALTH_SUSPECT);
  Advance(1);
  EXPECT_EQ(HealthOf("w"), v1::WORKER_HEALTH_SERVING);
}

TEST_F(RegistryTest, SuccessfulCallClearsSuspicion) {
  MustRegister(Replica("w", {MakeTool("add")}, /*lease_ttl_ms=*/60000));
  WorkerSlot slot;
  ASSERT_EQ(AcquireOn("add", {}, &slot), "w");
  registry_.Release(slot, CallOutcome::kUnavailable);
  ASSERT_EQ(AcquireOn("add", {}, &slot), "w");
  registry_.Release(slot, CallOutcome::kOther);  // says nothing of health
  EXPECT_EQ(HealthOf("w"), v1::WORKER_HEALTH_SUSPECT);
  ASSERT_EQ(AcquireOn("add", {}, &slot), "w");
  registry_.Release(slot, CallOutcome::kOk);
  EXPECT_EQ(HealthOf("w"), v1::WORKER_HEALTH_SERVING);
}

// --- Static workers ---

TEST_F(RegistryTest, StaticWorkersNeverExpire) {
  // Static endpoints are the operator's: no allow-list.
  ASSERT_TRUE(registry_
                  .AddStatic(StaticWorker("calc-svc", "calc.tools:50051",
                                          {MakeTool("add")}))
                  .ok());
  Advance(24 * 3600 * 1000);
  v1::Worker worker = Listed("calc-svc");
  EXPECT_TRUE(worker.static_());
  EXPECT_EQ(worker.lease_expires_at_ms(), 0);
  EXPECT_EQ(worker.health(), v1::WORKER_HEALTH_SERVING);  // no heartbeats
  EXPECT_EQ(worker.endpoint(), "calc.tools:50051");
  EXPECT_TRUE(registry_.Serves("add"));
  EXPECT_EQ(AcquireOn("add"), "calc-svc");
}

TEST_F(RegistryTest, StaticWorkersCanBeSuspect) {
  ASSERT_TRUE(registry_
                  .AddStatic(StaticWorker("calc-svc", "calc.tools:50051",
                                          {MakeTool("add")}))
                  .ok());
  WorkerSlot slot;
  ASSERT_EQ(AcquireOn("add", {}, &slot), "calc-svc");
  registry_.Release(slot, CallOutcome::kUnavailable);
  EXPECT_EQ(HealthOf("calc-svc"), v1::WORKER_HEALTH_SUSPECT);
}

TEST_F(RegistryTest, StaticWorkersAreValidated) {
  ExpectFieldError(
      registry_.AddStatic(StaticWorker("calc svc", "calc:1", {MakeTool("a")})),
      kInvalidFormat, "worker_id");
  ExpectFieldError(
      registry_.AddStatic(StaticWorker("calc", "calc", {MakeTool("a")})),
      kInvalidFormat, "endpoint");
  ExpectFieldError(registry_.AddStatic(StaticWorker("calc", "calc:1", {})),
                   kFieldRequired, "tools");
  EXPECT_THAT(WorkerIds(), IsEmpty());
}

TEST_F(RegistryTest, StaticWorkerIdsAreUnique) {
  ASSERT_TRUE(
      registry_.AddStatic(StaticWorker("calc", "calc:1", {MakeTool("add")}))
          .ok());
  absl::Status again =
      registry_.AddStatic(StaticWorker("calc", "calc:2", {MakeTool("add")}));
  ExpectError(again, absl::StatusCode::kAlreadyExists, "WORKER_ID_TAKEN");
  EXPECT_EQ(Metadata(again, "worker_id"), "calc");
  EXPECT_EQ(Listed("calc").endpoint(), "calc:1");
}

TEST_F(RegistryTest, StaticAndDynamicDefinitionsMustAgree) {
  MustRegister(Replica("dyn", {MakeTool("add", "Adds.")}));
  absl::Status added = registry_.AddStatic(
      StaticWorker("static", "calc:1", {MakeTool("add", "Adds!")}));
  ExpectError(added, absl::StatusCode::kAlreadyExists,
              "TOOL_DEFINITION_CONFLICT");
  EXPECT_EQ(Metadata(added, "tool"), "add");

  ASSERT_TRUE(registry_
                  .AddStatic(StaticWorker("static", "calc:1",
                                          {MakeTool("mul", "Multiplies.")}))
                  .ok());
  auto registered = registry_.Register(
      kToken, Replica("dyn2", {MakeTool("mul", "Multiplies!")}));
  ExpectError(registered.status(), absl::StatusCode::kAlreadyExists,
              "TOOL_DEFINITION_CONFLICT");
  EXPECT_EQ(Metadata(registered.status(), "tool"), "mul");
}

TEST_F(RegistryTest, DynamicWorkerMayNotTakeAStaticId) {
  ASSERT_TRUE(
      registry_.AddStatic(StaticWorker("calc", "calc:1", {MakeTool("add")}))
          .ok());
  auto registered =
      registry_.Register(kToken, Replica("calc", {MakeTool("add")}));
  ExpectError(registered.status(), absl::StatusCode::kAlreadyExists,
              "WORKER_ID_TAKEN");
  EXPECT_EQ(Metadata(registered.status(), "worker_id"), "calc");
  v1::Worker worker = Listed("calc");
  EXPECT_TRUE(worker.static_());
  EXPECT_EQ(worker.endpoint(), "calc:1");
  // Nor heartbeat or unregister it.
  ExpectError(Heartbeat("calc", ""), absl::StatusCode::kNotFound,
              "LEASE_NOT_FOUND");
  EXPECT_TRUE(Unregister("calc", "").ok());
  EXPECT_THAT(WorkerIds(), ElementsAre("calc"));
}

// --- ListTools / ListWorkers ---

TEST_F(RegistryTest, ListToolsGroupsWorkersPerTool) {
  MustRegister(Replica("c", {MakeTool("add")}));
  MustRegister(Replica("a", {MakeTool("echo"), MakeTool("add")}));
  ASSERT_TRUE(
      registry_.AddStatic(StaticWorker("b", "calc:1", {MakeTool("add")})).ok());
  v1::ListToolsResponse tools = registry_.ListTools();
  ASSERT_EQ(tools.tools_size(), 2);
  EXPECT_EQ(tools.tools(0).tool().function().name(), "add");
  EXPECT_THAT(tools.tools(0).worker_ids(), ElementsAre("a", "b", "c"));
  EXPECT_EQ(tools.tools(1).tool().function().name(), "echo");
  EXPECT_THAT(tools.tools(1).worker_ids(), ElementsAre("a"));
  // With the effective defaults.
  EXPECT_EQ(tools.tools(0).tool().timeout_ms(), 30000);
  EXPECT_EQ(tools.tools(0).tool().max_concurrency(), 16);
}

TEST_F(RegistryTest, ListWorkersShowsInFlightAndEffectiveSettings) {
  MustRegister(
      Replica("b", {MakeTool("add"), MakeTool("slow", "", false, 120000, 2)}));
  MustRegister(Replica("a", {MakeTool("add")}));
  ASSERT_EQ(AcquireOn("slow"), "b");
  ASSERT_EQ(AcquireOn("slow"), "b");
  ASSERT_EQ(AcquireOn("add", {"a"}), "b");

  v1::ListWorkersResponse list = registry_.ListWorkers();
  ASSERT_EQ(list.workers_size(), 2);
  EXPECT_EQ(list.workers(0).worker_id(), "a");  // sorted by id
  EXPECT_EQ(list.workers(0).in_flight(), 0);
  const v1::Worker& b = list.workers(1);
  EXPECT_EQ(b.worker_id(), "b");
  EXPECT_EQ(b.in_flight(), 3);
  ASSERT_EQ(b.tools_size(), 2);
  std::map<std::string, v1::WorkerTool> tools;
  for (const v1::WorkerTool& tool : b.tools()) {
    tools[tool.function().name()] = tool;
  }
  EXPECT_EQ(tools["add"].timeout_ms(), 30000);
  EXPECT_EQ(tools["add"].max_concurrency(), 16);
  EXPECT_EQ(tools["slow"].timeout_ms(), 120000);
  EXPECT_EQ(tools["slow"].max_concurrency(), 2);
}

TEST(RegistryDefaultsTest, DefaultsComeFromTheOptions) {
  RegistryOptions options = TokenOptions();
  options.default_timeout_ms = 1234;
  options.default_max_concurrency = 5;
  options.default_lease_ttl_ms = 9000;
  FakeClock clock;
  ToolRegistry registry(options, &clock);
  auto response = registry.Register(kToken, Replica("w", {MakeTool("add")}));
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->lease_ttl_ms(), 9000);
  EXPECT_EQ(response->heartbeat_interval_ms(), 3000);
  std::optional<v1::WorkerTool> add = registry.Tool("add");
  ASSERT_TRUE(add.has_value());
  EXPECT_EQ(add->timeout_ms(), 1234);
  EXPECT_EQ(add->max_concurrency(), 5);
}

// --- Acquire / Release ---

TEST_F(RegistryTest, AcquireWithoutAWorker) {
  WorkerSlot slot;
  EXPECT_EQ(registry_.Acquire("add", {}, &slot), AcquireResult::kNoWorker);
  MustRegister(Replica("w", {MakeTool("mul")}));
  EXPECT_EQ(registry_.Acquire("add", {}, &slot), AcquireResult::kNoWorker);
}

TEST_F(RegistryTest, AcquireFillsTheSlot) {
  MustRegister(MakeRequest("w", "localhost:7000",
                           {MakeTool("add", "", /*idempotent=*/true,
                                     /*timeout_ms=*/2500)}));
  WorkerSlot slot;
  ASSERT_EQ(registry_.Acquire("add", {}, &slot), AcquireResult::kAcquired);
  EXPECT_EQ(slot.worker_id, "w");
  EXPECT_EQ(slot.endpoint, "localhost:7000");
  EXPECT_EQ(slot.tool, "add");
  EXPECT_EQ(slot.timeout_ms, 2500);
  EXPECT_TRUE(slot.idempotent);
  EXPECT_EQ(Listed("w").in_flight(), 1);
}

TEST_F(RegistryTest, AcquireStopsAtMaxConcurrency) {
  MustRegister(Replica("w", {MakeTool("add", "", false, 0, 2),
                             MakeTool("mul", "", false, 0, 1)}));
  WorkerSlot first;
  ASSERT_EQ(AcquireOn("add", {}, &first), "w");
  ASSERT_EQ(AcquireOn("add"), "w");
  WorkerSlot slot;
  EXPECT_EQ(registry_.Acquire("add", {}, &slot), AcquireResult::kAllBusy);
  // The cap is per tool.
  EXPECT_EQ(AcquireOn("mul"), "w");
  EXPECT_EQ(registry_.Acquire("mul", {}, &slot), AcquireResult::kAllBusy);
  // Release frees a slot.
  registry_.Release(first, CallOutcome::kOk);
  EXPECT_EQ(Listed("w").in_flight(), 2);
  EXPECT_EQ(AcquireOn("add"), "w");
  EXPECT_EQ(registry_.Acquire("add", {}, &slot), AcquireResult::kAllBusy);
}

TEST_F(RegistryTest, AcquireBalancesOverReplicas) {
  MustRegister(Replica("a", {MakeTool("add", "", false, 0, 4)}));
  MustRegister(Replica("b", {MakeTool("add", "", false, 0, 4)}));
  std::map<std::string, int> counts;
  for (int i = 0; i < 4; ++i) ++counts[AcquireOn("add")];
  EXPECT_EQ(counts["a"], 2);
  EXPECT_EQ(counts["b"], 2);
  EXPECT_EQ(Listed("a").in_flight(), 2);
  EXPECT_EQ(Listed("b").in_flight(), 2);
}

TEST_F(RegistryTest, AcquirePicksTheLeastLoaded) {
  MustRegister(Replica("a", {MakeTool("add", "", false, 0, 4)}));
  MustRegister(Replica("b", {MakeTool("add", "", false, 0, 4)}));
  ASSERT_EQ(AcquireOn("add", {"b"}), "a");
  ASSERT_EQ(AcquireOn("add", {"b"}), "a");
  EXPECT_EQ(AcquireOn("add"), "b");
  EXPECT_EQ(AcquireOn("add"), "b");
}

TEST_F(RegistryTest, AcquireComparesLoadAsAShareOfTheCap) {
  MustRegister(Replica("a", {MakeTool("add", "", false, 0, 1)}));
  MustRegister(Replica("b", {MakeTool("add", "", false, 0, 8)}));
  ASSERT_EQ(AcquireOn("add", {"b"}), "a");  // a is full
  for (int i = 0; i < 8; ++i) EXPECT_EQ(AcquireOn("add"), "b");
  WorkerSlot slot;
  EXPECT_EQ(registry_.Acquire("add", {}, &slot), AcquireResult::kAllBusy);
}

TEST_F(RegistryTest, AcquirePrefersHealthyReplicas) {
  MustRegister(Replica("a", {MakeTool("add", "", false, 0, 2)}, 60000));
  MustRegister(Replica("b", {MakeTool("add", "", false, 0, 2)}, 60000));
  WorkerSlot slot;
  ASSERT_EQ(AcquireOn("add", {"b"}, &slot), "a");
  registry_.Release(slot, CallOutcome::kUnavailable);  // a is suspect
  // b, though it gets busier than a, until it is full.
  EXPECT_EQ(AcquireOn("add"), "b");
  EXPECT_EQ(AcquireOn("add"), "b");
  EXPECT_EQ(AcquireOn("add"), "a");
  EXPECT_EQ(AcquireOn("add"), "a");
  EXPECT_EQ(registry_.Acquire("add", {}, &slot), AcquireResult::kAllBusy);
}

TEST_F(RegistryTest, AcquirePrefersReplicasThatHeartbeat) {
  const std::string lease_a =
      MustRegister(Replica("a", {MakeTool("add")}, 60000)).lease_id();
  MustRegister(Replica("b", {MakeTool("add")}, 60000));  // every 20 s
  Advance(40001);
  ASSERT_TRUE(Heartbeat("a", lease_a).ok());
  EXPECT_EQ(HealthOf("b"), v1::WORKER_HEALTH_SUSPECT);
  EXPECT_EQ(AcquireOn("add"), "a");
  EXPECT_EQ(AcquireOn("add"), "a");
}

TEST_F(RegistryTest, AcquireRespectsExclude) {
  MustRegister(Replica("a", {MakeTool("add")}));
  MustRegister(Replica("b", {MakeTool("add")}));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(AcquireOn("add", {"a"}), "b");
  WorkerSlot slot;
  EXPECT_EQ(registry_.Acquire("add", {"a", "b"}, &slot),
            AcquireResult::kNoWorker);
}

TEST_F(RegistryTest, ReleaseOfAnUnknownWorkerIsHarmless) {
  MustRegister(Replica("w", {MakeTool("add", "", false, 0, 1)}));
  WorkerSlot ghost;
  ghost.worker_id = "ghost";
  ghost.tool = "add";
  registry_.Release(ghost, CallOutcome::kUnavailable);
  WorkerSlot wrong_tool;
  wrong_tool.worker_id = "w";
  wrong_tool.tool = "mul";
  registry_.Release(wrong_tool, CallOutcome::kOk);
  EXPECT_EQ(AcquireOn("add"), "w");
  // A second release of the same slot does not go below zero.
  registry_.Release(slots_.back(), CallOutcome::kOk);
  registry_.Release(slots_.back(), CallOutcome::kOk);
  EXPECT_EQ(Listed("w").in_flight(), 0);
  EXPECT_EQ(AcquireOn("add"), "w");
  WorkerSlot slot;
  EXPECT_EQ(registry_.Acquire("add", {}, &slot), AcquireResult::kAllBusy);
}

TEST_F(RegistryTest, ReRegistrationKeepsCallsInFlight) {
  MustRegister(Replica("w", {MakeTool("add", "", false, 0, 1)}));
  WorkerSlot slot;
  ASSERT_EQ(AcquireOn("add", {}, &slot), "w");
  MustRegister(Replica("w", {MakeTool("add", "", false, 0, 1)}));
  EXPECT_EQ(Listed("w").in_flight(), 1);
  WorkerSlot other;
  EXPECT_EQ(registry_.Acquire("add", {}, &other), AcquireResult::kAllBusy);
  registry_.Release(slot, CallOutcome::kOk);
  EXPECT_EQ(AcquireOn("add"), "w");
}

// BUG (not fixed, see the report): a worker whose lease ran out with a
// call in flight is dropped at once; when it registers again, the old call's
// Release() lowers the new registration's count, so the new registration
// can run more calls than its cap. WorkerSlot would need to name the
// registration (lease) it was acquired on.
TEST_F(RegistryTest, CallsFromAnExpiredRegistrationDoNotFreeTheNewOnesSlots) {
  MustRegister(Replica("w", {MakeTool("add", "", false, 0, 1)}));
  WorkerSlot old_slot;
  ASSERT_EQ(AcquireOn("add", {}, &old_slot), "w");
  Advance(15000);  // lease gone, call still running
  MustRegister(Replica("w", {MakeTool("add", "", false, 0, 1)}));
  ASSERT_EQ(AcquireOn("add"), "w");
  registry_.Release(old_slot, CallOutcome::kOk);
  EXPECT_EQ(Listed("w").in_flight(), 1);
  WorkerSlot slot;
  EXPECT_EQ(registry_.Acquire("add", {}, &slot), AcquireResult::kAllBusy);
}

// --- Capacity listener ---

TEST_F(RegistryTest, CapacityListenerRunsOnRegisterAndRelease) {
  int calls = 0;
  registry_.set_capacity_listener([&] { ++calls; });
  MustRegister(Replica("w", {MakeTool("add")}));
  EXPECT_EQ(calls, 1);
  ASSERT_TRUE(
      registry_.AddStatic(StaticWorker("s", "calc:1", {MakeTool("add")})).ok());
  EXPECT_EQ(calls, 2);
  WorkerSlot slot;
  ASSERT_EQ(AcquireOn("add", {}, &slot), "s");
  EXPECT_EQ(calls, 2);  // acquiring takes capacity
  registry_.Release(slot, CallOutcome::kOk);
  EXPECT_EQ(calls, 3);
  // Refused registrations add nothing.
  EXPECT_FALSE(registry_.Register("wrong", Replica("x", {MakeTool("a")})).ok());
  EXPECT_FALSE(
      registry_.Register(kToken, Replica("x", {MakeTool("add", "other")}))
          .ok());
  EXPECT_EQ(calls, 3);
}

TEST_F(RegistryTest, CapacityListenerMayCallBackIntoTheRegistry) {
  std::vector<int> seen_in_flight;
  std::vector<std::string> acquired;
  registry_.set_capacity_listener([&] {
    // Would deadlock if the listener ran under the registry's lock.
    v1::ListWorkersResponse list = registry_.ListWorkers();
    seen_in_flight.push_back(
        list.workers_size() > 0 ? list.workers(0).in_flight() : -1);
    EXPECT_TRUE(registry_.Serves("add"));
    registry_.ListTools();
    if (seen_in_flight.size() == 2) {
      WorkerSlot slot;
      if (registry_.Acquire("add", {}, &slot) == AcquireResult::kAcquired) {
        acquired.push_back(slot.worker_id);
      }
    }
  });
  MustRegister(Replica("w", {MakeTool("add", "", false, 0, 1)}));
  WorkerSlot slot;
  ASSERT_EQ(AcquireOn("add", {}, &slot), "w");
  registry_.Release(slot, CallOutcome::kOk);
  // The listener saw the state after the change.
  EXPECT_THAT(seen_in_flight, ElementsAre(0, 0));
  EXPECT_THAT(acquired, ElementsAre("w"));
  EXPECT_EQ(Listed("w").in_flight(), 1);
}

}  // namespace
}  // namespace assistants::tool_workers
