// assistants-gateway: serves the Assistants API over gRPC with an embedded
// store. Configuration: one GatewayConfig (service/config/config.h) from
// defaults, a JSON file, the environment and flags; logs are JSON lines.
#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/util/json_util.h"
#include "service/api/metrics_interceptor.h"
#include "service/api/server.h"
#include "service/auth/api_keys.h"
#include "service/auth/rate_limiter.h"
#include "service/cluster/replica.h"
#include "service/common/clock.h"
#include "service/common/executor.h"
#include "service/common/log.h"
#include "service/common/timers.h"
#include "service/common/tls.h"
#include "service/config/config.h"
#include "service/observability/metered_provider.h"
#include "service/observability/metered_tool_dispatcher.h"
#include "service/observability/metrics.h"
#include "service/observability/run_metrics.h"
#include "service/runs/engine.h"
#include "service/runs/tool_dispatcher.h"
#include "service/store/memory_store.h"
#include "service/store/pg/pg_store.h"
#include "service/store/sqlite_store.h"
#include "tool_workers/dispatcher.h"
#include "tool_workers/pg_registration_store.h"
#include "tool_workers/registry.h"
#include "tool_workers/registry_sync.h"
#include "tool_workers/worker_transport.h"
#include "upstream/http/curl_http_client.h"
#include "upstream/provider_registry.h"

ABSL_FLAG(bool, print_config, false,
          "print the effective configuration as JSON (secrets redacted) and "
          "exit");

namespace {

using assistants::config::GatewayConfig;

// Exit codes: 2 for configuration errors (nothing started), 1 for failures
// while starting with a valid configuration.
constexpr int kConfigError = 2;
constexpr int kStartError = 1;

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot read " + path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The registry from the workers.* keys: token, allow-list, static workers.
// Errors name the key at fault.
absl::StatusOr<std::unique_ptr<assistants::tool_workers::ToolRegistry>>
MakeToolRegistry(const GatewayConfig::Workers& workers,
                 const std::string& allowlist_origin,
                 const assistants::Clock* clock,
                 assistants::tool_workers::WorkerRegistrationStore* shared) {
  namespace tw = assistants::tool_workers;
  tw::RegistryOptions options;
  options.registration_token = workers.token;
  auto allowlist =
      tw::EndpointAllowList::Parse(absl::StrJoin(workers.allowlist, ","));
  if (!allowlist.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(allowlist_origin,
                     ": workers.allowlist: ", allowlist.status().message()));
  }
  options.allowlist = *std::move(allowlist);
  options.default_lease_ttl_ms = workers.lease_ttl_ms;
  auto registry = std::make_unique<tw::ToolRegistry>(options, clock, shared);
  const std::string& config = workers.static_file;
  if (!config.empty()) {
    auto text = ReadFile(config);
    if (!text.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("workers.static_file: ", text.status().message()));
    }
    assistants::v1::ListWorkersResponse static_workers;
    auto parsed =
        google::protobuf::util::JsonStringToMessage(*text, &static_workers);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError("workers.static_file " + config + ": " +
                                        parsed.ToString());
    }
    for (const assistants::v1::Worker& worker : static_workers.workers()) {
      if (absl::Status added = registry->AddStatic(worker); !added.ok()) {
        return absl::InvalidArgumentError("workers.static_file " + config +
                                          ": worker " + worker.worker_id() +
                                          ": " + std::string(added.message()));
      }
    }
  }
  return registry;
}

// The upstream backends from the upstream.* keys: "openai" (Responses API)
// and "openai-chat" (Chat Completions) on the OpenAI endpoint, plus "chat"
// when upstream.chat.base_url names a compatible server.
std::vector<assistants::upstream::BackendConfig> UpstreamBackends(
    const GatewayConfig::Upstream& upstream) {
  namespace up = assistants::upstream;
  up::ProviderConfig base;
  base.timeouts.connect =
      std::chrono::milliseconds(upstream.connect_timeout_ms);
  base.timeouts.first_byte =
      std::chrono::milliseconds(upstream.first_byte_timeout_ms);
  base.timeouts.idle = std::chrono::milliseconds(upstream.idle_timeout_ms);
  base.timeouts.total = std::chrono::milliseconds(upstream.total_timeout_ms);
  base.retry.max_attempts = static_cast<int>(upstream.max_attempts);

  std::vector<up::BackendConfig> backends;
  up::ProviderConfig openai = base;
  openai.name = "openai";
  openai.base_url = upstream.openai.base_url;
  openai.api_key = upstream.openai.api_key;
  openai.organization = upstream.openai.organization;
  openai.project = upstream.openai.project;
  backends.push_back({up::WireApi::kResponses, openai});
  up::ProviderConfig openai_chat = openai;
  openai_chat.name = "openai-chat";
  backends.push_back({up::WireApi::kChatCompletions, openai_chat});
  if (!upstream.chat.base_url.empty()) {
    up::ProviderConfig chat = base;
    chat.name = "chat";
    chat.base_url = upstream.chat.base_url;
    chat.api_key = upstream.chat.api_key;
    backends.push_back({up::WireApi::kChatCompletions, chat});
  }
  return backends;
}

assistants::v1::ActiveRunPolicy ActiveRunPolicy(const std::string& name) {
  if (name == "queue") return assistants::v1::ACTIVE_RUN_POLICY_QUEUE;
  if (name == "interrupt") return assistants::v1::ACTIVE_RUN_POLICY_INTERRUPT;
  return assistants::v1::ACTIVE_RUN_POLICY_REJECT;  // Validated by config.
}

int Fail(int code, absl::string_view message) {
  assistants::Log(assistants::LogLevel::kError, message);
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Serves the Assistants API (assistants, threads, messages, runs) over "
      "gRPC.\nUsage: assistants-gateway [--config=FILE] [--listen=HOST:PORT] "
      "[--db=PATH] [--print_config]\nEvery configuration key is also an "
      "environment variable and a flag; see README \"Configuration\".");
  absl::ParseCommandLine(argc, argv);
  // Debian's Abseil is built with Mutex deadlock detection on: every lock
  // taken while holding another walks a lock graph (1-2 % of the gateway's
  // CPU under load). The tests keep it on to catch lock-order inversions.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  // Configuration errors are plain text: logging is not configured yet, and
  // an operator reads them straight off the terminal or the pod's events.
  absl::StatusOr<GatewayConfig> loaded =
      assistants::config::LoadConfig(assistants::config::ProcessSources());
  if (!loaded.ok()) {
    std::cerr << "assistants-gateway: " << loaded.status().message() << "\n";
    return kConfigError;
  }
  const GatewayConfig& config = *loaded;
  if (absl::GetFlag(FLAGS_print_config)) {
    std::cout << assistants::config::ConfigToJson(config) << std::endl;
    return 0;
  }
  assistants::SetLogLevel(config.log.level);

  // Block the shutdown signals in every thread; one thread waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const std::string& db = config.store.path;
  std::unique_ptr<assistants::Store> store;
  assistants::PgStore* pg_store = nullptr;  // set when store is PgStore
  std::string store_kind = db == ":memory:" ? "memory" : "sqlite";
  std::string store_name = db == ":memory:" ? "memory" : "sqlite " + db;
  if (!config.store.postgres_url.empty()) {
    assistants::PgStoreOptions pg_options;
    pg_options.pool_size = static_cast<int>(config.store.postgres_pool_size);
    auto pg = assistants::PgStore::Open(config.store.postgres_url, pg_options);
    if (!pg.ok()) {
      return Fail(kStartError,
                  absl::StrCat("cannot open the PostgreSQL store: ",
                               pg.status().message()));
    }
    pg_store = pg->get();
    store = *std::move(pg);
    // Never the URL itself: it may hold a password.
    store_kind = "postgres";
    store_name = absl::StrCat("postgres ", assistants::pg::DescribeConninfo(
                                               config.store.postgres_url));
  } else if (db == ":memory:") {
    store = std::make_unique<assistants::MemoryStore>();
  } else {
    auto sqlite = assistants::SqliteStore::Open(db);
    if (!sqlite.ok()) {
      return Fail(kStartError, absl::StrCat("cannot open database ", db, ": ",
                                            sqlite.status().message()));
    }
    store = *std::move(sqlite);
  }

  // A private upstream's CA (env only, like the upstream keys); checked now
  // so a typo fails the start, not every run.
  assistants::upstream::CurlHttpClientOptions http_options;
  if (const char* ca_file = std::getenv("ASSISTANTS_UPSTREAM_CA_FILE");
      ca_file != nullptr && *ca_file != '\0') {
    http_options.ca_file = ca_file;
    auto ca = assistants::tls::ReadPemFile(http_options.ca_file,
                                           "ASSISTANTS_UPSTREAM_CA_FILE CA");
    if (!ca.ok()) return Fail(kConfigError, ca.status().message());
  }
  // Metrics, when enabled, are recorded by decorators around the seams and
  // an RPC interceptor; when off, none of them is in the path.
  namespace obs = assistants::observability;
  const std::string metrics_listen = config.metrics.listen;
  std::unique_ptr<obs::Metrics> metrics;
  std::vector<assistants::upstream::BackendConfig> backends =
      UpstreamBackends(config.upstream);
  if (!metrics_listen.empty()) {
    metrics = std::make_unique<obs::Metrics>();
    obs::CountUpstreamRetries(metrics.get(), &backends);
  }
  auto http =
      std::make_unique<assistants::upstream::CurlHttpClient>(http_options);
  auto providers = assistants::upstream::ProviderRegistry::Create(
      backends, config.upstream.default_backend, http.get());
  if (!providers.ok()) {
    return Fail(kConfigError, providers.status().message());
  }

  assistants::runs::EngineOptions engine_options;
  engine_options.max_active_runs_per_project =
      static_cast<int>(config.limits.max_active_runs_per_project);
  engine_options.requires_action_timeout_ms =
      config.runs.requires_action_timeout_s * 1000;
  engine_options.default_upstream = (*providers)->default_backend();
  engine_options.default_active_run_policy =
      ActiveRunPolicy(config.runs.active_run_policy);

  assistants::SystemClock clock;
  assistants::ThreadTimers timers(&clock);
  assistants::Executor engine_executor(
      static_cast<size_t>(config.runs.engine_threads));
  // Replicas on one PostgreSQL database share tool-worker registrations
  // (doc/adr/0011-shared-worker-registry.md).
  std::unique_ptr<assistants::tool_workers::PgWorkerRegistrationStore>
      worker_store;
  if (pg_store != nullptr) {
    auto opened = assistants::tool_workers::PgWorkerRegistrationStore::Open(
        &pg_store->pool());
    if (!opened.ok()) {
      return Fail(kStartError,
                  absl::StrCat("cannot open the shared worker registry: ",
                               opened.status().message()));
    }
    worker_store = *std::move(opened);
  }
  auto origin = config.origins.find("workers.allowlist");
  auto tool_registry = MakeToolRegistry(
      config.workers,
      origin == config.origins.end() ? "default" : origin->second, &clock,
      worker_store.get());
  if (!tool_registry.ok()) {
    std::cerr << "assistants-gateway: " << tool_registry.status().message()
              << "\n";
    return kConfigError;
  }
  std::unique_ptr<assistants::tool_workers::RegistrySync> registry_sync;
  if (worker_store != nullptr) {
    registry_sync = std::make_unique<assistants::tool_workers::RegistrySync>(
        tool_registry->get(), worker_store.get(),
        absl::Milliseconds(config.cluster.worker_sync_ms));
    registry_sync->Start();
  }
  auto worker_credentials = assistants::tls::ChannelCredentials(
      {config.workers.tls.cert_file, config.workers.tls.key_file,
       config.workers.tls.ca_file});
  if (!worker_credentials.ok()) {
    return Fail(
        kConfigError,
        absl::StrCat("worker TLS: ", worker_credentials.status().message()));
  }
  assistants::tool_workers::GrpcWorkerTransport worker_transport(
      &clock, *worker_credentials);
  assistants::tool_workers::DispatcherOptions dispatcher_options;
  dispatcher_options.no_worker_wait_ms = config.workers.wait_ms;
  assistants::tool_workers::WorkerDispatcher dispatcher(
      tool_registry->get(), &worker_transport, &clock, &timers,
      dispatcher_options);
  assistants::runs::ToolDispatcher* engine_dispatcher = &dispatcher;
  assistants::runs::ProviderResolver resolver =
      [registry = providers->get()](absl::string_view name) {
        return registry->Resolve(name);
      };
  std::unique_ptr<obs::MeteredToolDispatcher> metered_dispatcher;
  std::unique_ptr<obs::MeteredProviders> metered_providers;
  std::unique_ptr<obs::RunMetrics> run_metrics;
  if (metrics != nullptr) {
    metered_dispatcher = std::make_unique<obs::MeteredToolDispatcher>(
        &dispatcher, metrics.get());
    engine_dispatcher = metered_dispatcher.get();
    metered_providers = std::make_unique<obs::MeteredProviders>(
        providers->get(), metrics.get());
    resolver = [metered = metered_providers.get()](absl::string_view name) {
      return metered->Resolve(name);
    };
    run_metrics = std::make_unique<obs::RunMetrics>(metrics.get());
    engine_options.observer = run_metrics.get();
  }
  // Leases are kept up four times per TTL: one missed round loses no run.
  engine_options.lease_maintenance_ms =
      std::max<int64_t>(100, config.cluster.run_lease_ttl_ms / 4);
  // Several replicas share a PostgreSQL store. Declared before the engine,
  // which uses its leases until it is destroyed.
  std::unique_ptr<assistants::cluster::Replica> replica;
  if (!config.store.postgres_url.empty()) {
    auto opened = assistants::cluster::Replica::Open(
        config.store.postgres_url,
        config.cluster.replica_id.empty()
            ? assistants::cluster::DefaultReplicaId()
            : config.cluster.replica_id,
        config.cluster.run_lease_ttl_ms);
    if (!opened.ok()) {
      return Fail(kStartError, absl::StrCat("cannot join the cluster: ",
                                            opened.status().message()));
    }
    replica = *std::move(opened);
    assistants::Log(assistants::LogLevel::kInfo, "cluster replica",
                    {{"replica_id", replica->replica_id()}});
  }
  auto engine = std::make_unique<assistants::runs::RunEngine>(
      store.get(), std::move(resolver), engine_dispatcher, &clock, &timers,
      &engine_executor, engine_options);
  // Declared after the engine: destroyed (stopped) before it.
  std::unique_ptr<assistants::cluster::PgListener> cluster_listener;
  if (replica != nullptr) {
    engine->EnableCluster(replica->leases());
    cluster_listener = replica->Listen(engine.get());
  }
  if (absl::Status recovered = engine->Recover(); !recovered.ok()) {
    return Fail(kStartError,
                absl::StrCat("cannot resume runs: ", recovered.message()));
  }

  std::unique_ptr<obs::MetricsServer> metrics_server;
  if (metrics != nullptr) {
    auto started = obs::MetricsServer::Start(metrics_listen, metrics.get());
    if (!started.ok()) return Fail(kStartError, started.status().message());
    metrics_server = *std::move(started);
  }

  assistants::ServerOptions options;
  options.listen = config.listen;
  options.tls = {config.tls.cert_file, config.tls.key_file,
                 config.tls.client_ca_file,
                 static_cast<int>(config.tls.reload_interval_s)};
  options.streams.heartbeat_ms = static_cast<int>(config.streams.heartbeat_ms);
  std::unique_ptr<assistants::auth::ApiKeysFile> api_keys;
  if (!config.auth.api_keys_file.empty()) {
    auto loaded = assistants::auth::ApiKeysFile::Open(
        config.auth.api_keys_file,
        absl::Seconds(config.auth.reload_interval_s));
    if (!loaded.ok()) return Fail(kConfigError, loaded.status().message());
    api_keys = *std::move(loaded);
    options.admission.api_keys = api_keys.get();
  } else {
    assistants::Log(assistants::LogLevel::kWarning,
                    "no API keys file: authentication is off, every caller "
                    "acts for project \"default\"");
  }
  std::unique_ptr<assistants::auth::RateLimiter> rate_limiter;
  if (const double rate = config.limits.requests_per_second_per_key; rate > 0) {
    const double burst = static_cast<double>(config.limits.burst_per_key);
    rate_limiter = std::make_unique<assistants::auth::RateLimiter>(
        rate, burst >= 1 ? burst : std::max(1.0, rate), &clock);
    options.admission.rate_limiter = rate_limiter.get();
  }
  options.admission.max_request_bytes =
      static_cast<size_t>(config.limits.max_message_bytes);
  options.admission.max_streams_per_project =
      static_cast<int>(config.limits.max_streams_per_project);
  options.admission.open_methods = config.auth.open_methods;
  options.tool_registry = tool_registry->get();
  if (metrics != nullptr) {
    options.interceptors.push_back(
        std::make_shared<assistants::RpcMetricsInterceptorFactory>(
            metrics.get()));
  }
  auto server = assistants::GatewayServer::Start(options, store.get(), &clock,
                                                 engine.get(), &timers);
  if (!server.ok()) return Fail(kStartError, server.status().message());
  // Tooling (tests, scripts, bench) waits for this text in the msg: keep it
  // verbatim, with a space after the address, and log it at any level.
  const std::string host = options.listen.substr(0, options.listen.rfind(':'));
  const std::string address = absl::StrCat(host, ":", (*server)->port());
  assistants::LogAlways(
      absl::StrCat("assistants-gateway listening on ", address,
                   " (store: ", store_name,
                   options.tls.cert_file.empty() ? ""
                   : options.tls.ca_file.empty() ? ", tls"
                                                 : ", mutual tls",
                   ")"),
      {{"listen", address},
       {"store", store_kind},
       {"log_level", assistants::LogLevelName(config.log.level)}});

  if (metrics != nullptr) {
    // After the gateway's line: tests and scripts take the first
    // "listening on" line for the gRPC port.
    std::cerr << "metrics listening on "
              << metrics_listen.substr(0, metrics_listen.rfind(':')) << ":"
              << metrics_server->port() << std::endl;
    // Sampled at scrape time; the server stops before what they read goes.
    assistants::GatewayServer* gateway = server->get();
    metrics->AddSampledGauge(
        "assistants_open_streams", "RunEvents streams open now", "", "",
        [gateway] { return static_cast<double>(gateway->open_streams()); });
    metrics->AddSampledGauge(
        "assistants_active_runs", "runs driven by this gateway now", "", "",
        [&engine] { return static_cast<double>(engine->active_runs()); });
    metrics->AddSampledGauge(
        "assistants_executor_queue_depth",
        "tasks waiting for an executor thread", "executor", "blocking",
        [gateway] {
          return static_cast<double>(gateway->executor_queue_depth());
        });
    metrics->AddSampledGauge(
        "assistants_executor_queue_depth",
        "tasks waiting for an executor thread", "executor", "engine",
        [&engine_executor] {
          return static_cast<double>(engine_executor.queue_depth());
        });
    metrics->AddSampledGauge(
        "assistants_commit_queue_depth",
        "run changes waiting for the group committer", "", "", [&engine] {
          return static_cast<double>(engine->commit_queue_depth());
        });
    metrics->AddSampledGauge(
        "assistants_tool_calls_waiting",
        "tool calls waiting for a worker slot or registration", "", "",
        [&dispatcher] { return static_cast<double>(dispatcher.waiting()); });
  }

  std::thread signal_waiter([&] {
    int signal_number = 0;
    sigwait(&signals, &signal_number);
    assistants::Log(assistants::LogLevel::kInfo, "shutting down",
                    {{"signal", signal_number}});
    (*server)->Shutdown(std::chrono::milliseconds(config.shutdown.grace_ms));
  });
  (*server)->Wait();
  signal_waiter.join();
  metrics_server.reset();
  // No more commands or wake-ups from other replicas, then the engine
  // stops and hands its runs' leases back (the replica's leases outlive it).
  cluster_listener.reset();
  // Turns in flight hold requests of the HTTP client: the engine goes first.
  engine->Stop();
  dispatcher.Shutdown();
  server->reset();
  engine.reset();
  http.reset();
  assistants::Log(assistants::LogLevel::kInfo, "stopped");
  return 0;
}
