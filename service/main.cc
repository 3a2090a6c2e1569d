// assistants-gateway: serves the Assistants API over gRPC with an embedded
// store. Configuration: flags, each defaulting to an environment variable.
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
#include "absl/strings/ascii.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/util/json_util.h"
#include "service/api/metrics_interceptor.h"
#include "service/api/server.h"
#include "service/common/clock.h"
#include "service/common/executor.h"
#include "service/common/timers.h"
#include "service/observability/metered_provider.h"
#include "service/observability/metered_tool_dispatcher.h"
#include "service/observability/metrics.h"
#include "service/observability/run_metrics.h"
#include "service/runs/engine.h"
#include "service/runs/tool_dispatcher.h"
#include "service/store/memory_store.h"
#include "service/store/sqlite_store.h"
#include "tool_workers/dispatcher.h"
#include "tool_workers/registry.h"
#include "tool_workers/worker_transport.h"
#include "upstream/http/curl_http_client.h"
#include "upstream/provider_registry.h"

namespace {

std::string EnvOr(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

}  // namespace

ABSL_FLAG(std::string, listen, EnvOr("ASSISTANTS_LISTEN", "127.0.0.1:50051"),
          "host:port to serve gRPC on (env ASSISTANTS_LISTEN); port 0 picks a "
          "free port");
ABSL_FLAG(std::string, db, EnvOr("ASSISTANTS_DB", "assistants.db"),
          "SQLite database file, or :memory: for the in-memory store (env "
          "ASSISTANTS_DB)");
ABSL_FLAG(int, shutdown_grace_ms, 5000,
          "on SIGTERM/SIGINT, how long calls in flight may finish");
ABSL_FLAG(
    int, requires_action_timeout_s,
    std::atoi(EnvOr("ASSISTANTS_REQUIRES_ACTION_TIMEOUT_S", "600").c_str()),
    "how long a run may wait for tool outputs before it expires (env "
    "ASSISTANTS_REQUIRES_ACTION_TIMEOUT_S)");
ABSL_FLAG(std::string, active_run_policy,
          EnvOr("ASSISTANTS_ACTIVE_RUN_POLICY", "reject"),
          "default for a run created on a thread with an active run: reject, "
          "queue or interrupt (env ASSISTANTS_ACTIVE_RUN_POLICY)");
ABSL_FLAG(int, heartbeat_ms, 15000,
          "silence after which a RunEvents stream gets a heartbeat event");
ABSL_FLAG(int, engine_threads, 4, "threads that drive runs");
ABSL_FLAG(std::string, worker_token_file,
          EnvOr("ASSISTANTS_WORKER_TOKEN_FILE", ""),
          "file holding the token tool workers register with (env "
          "ASSISTANTS_WORKER_TOKEN_FILE, or the token itself in "
          "ASSISTANTS_WORKER_TOKEN); without one, only static workers serve");
ABSL_FLAG(std::string, worker_allowlist,
          EnvOr("ASSISTANTS_WORKER_ALLOWLIST", "127.0.0.0/8,[::1],localhost"),
          "endpoints tool workers may register, comma-separated: IPv4 "
          "blocks (10.0.0.0/8), addresses, host globs (*.svc.cluster.local) "
          "or * (env ASSISTANTS_WORKER_ALLOWLIST)");
ABSL_FLAG(std::string, workers_config, EnvOr("ASSISTANTS_WORKERS_CONFIG", ""),
          "JSON file of static tool workers, {\"workers\": [{\"worker_id\", "
          "\"endpoint\", \"tools\": [...]}]} as in ListWorkers (env "
          "ASSISTANTS_WORKERS_CONFIG)");
ABSL_FLAG(std::string, metrics_listen, EnvOr("ASSISTANTS_METRICS_LISTEN", ""),
          "IP:port to serve Prometheus metrics on, GET /metrics (env "
          "ASSISTANTS_METRICS_LISTEN); empty turns metrics off; port 0 picks "
          "a free port");
ABSL_FLAG(int, worker_lease_ttl_ms, 15000,
          "default lease of a registered tool worker");
ABSL_FLAG(int, worker_wait_ms, 15000,
          "how long a resumed run's tool call waits for its worker to "
          "register again after a gateway restart");

namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot read " + path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The registry from the worker flags: token, allow-list, static workers.
absl::StatusOr<std::unique_ptr<assistants::tool_workers::ToolRegistry>>
MakeToolRegistry(const assistants::Clock* clock) {
  namespace tw = assistants::tool_workers;
  tw::RegistryOptions options;
  const std::string token_file = absl::GetFlag(FLAGS_worker_token_file);
  if (!token_file.empty()) {
    auto token = ReadFile(token_file);
    if (!token.ok()) return token.status();
    options.registration_token =
        std::string(absl::StripAsciiWhitespace(*token));
    if (options.registration_token.empty()) {
      return absl::InvalidArgumentError("--worker_token_file " + token_file +
                                        " is empty");
    }
  } else {
    options.registration_token = EnvOr("ASSISTANTS_WORKER_TOKEN", "");
  }
  auto allowlist =
      tw::EndpointAllowList::Parse(absl::GetFlag(FLAGS_worker_allowlist));
  if (!allowlist.ok()) return allowlist.status();
  options.allowlist = *std::move(allowlist);
  if (absl::GetFlag(FLAGS_worker_lease_ttl_ms) < options.min_lease_ttl_ms) {
    return absl::InvalidArgumentError(
        "--worker_lease_ttl_ms must be at least 1000");
  }
  options.default_lease_ttl_ms = absl::GetFlag(FLAGS_worker_lease_ttl_ms);
  auto registry = std::make_unique<tw::ToolRegistry>(options, clock);
  const std::string config = absl::GetFlag(FLAGS_workers_config);
  if (!config.empty()) {
    auto text = ReadFile(config);
    if (!text.ok()) return text.status();
    assistants::v1::ListWorkersResponse workers;
    auto parsed = google::protobuf::util::JsonStringToMessage(*text, &workers);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError("--workers_config " + config + ": " +
                                        parsed.ToString());
    }
    for (const assistants::v1::Worker& worker : workers.workers()) {
      if (absl::Status added = registry->AddStatic(worker); !added.ok()) {
        return absl::InvalidArgumentError("--workers_config " + config +
                                          ": worker " + worker.worker_id() +
                                          ": " + std::string(added.message()));
      }
    }
  }
  return registry;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Serves the Assistants API (assistants, threads, messages, runs) over "
      "gRPC.\nUsage: assistants-gateway [--listen=HOST:PORT] [--db=PATH]");
  absl::ParseCommandLine(argc, argv);
  // Debian's Abseil is built with Mutex deadlock detection on: every lock
  // taken while holding another walks a lock graph (1-2 % of the gateway's
  // CPU under load). The tests keep it on to catch lock-order inversions.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  // Block the shutdown signals in every thread; one thread waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const std::string db = absl::GetFlag(FLAGS_db);
  std::unique_ptr<assistants::Store> store;
  if (db == ":memory:") {
    store = std::make_unique<assistants::MemoryStore>();
  } else {
    auto sqlite = assistants::SqliteStore::Open(db);
    if (!sqlite.ok()) {
      std::cerr << "assistants-gateway: cannot open database " << db << ": "
                << sqlite.status().message() << "\n";
      return 1;
    }
    store = *std::move(sqlite);
  }

  // Upstream backends (environment until the configuration file exists).
  std::string default_upstream;
  auto backends =
      assistants::upstream::BackendsFromEnvironment(&default_upstream);
  if (!backends.ok()) {
    std::cerr << "assistants-gateway: " << backends.status().message() << "\n";
    return 1;
  }
  // Metrics, when enabled, are recorded by decorators around the seams and
  // an RPC interceptor; when off, none of them is in the path.
  namespace obs = assistants::observability;
  const std::string metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  std::unique_ptr<obs::Metrics> metrics;
  if (!metrics_listen.empty()) {
    metrics = std::make_unique<obs::Metrics>();
    obs::CountUpstreamRetries(metrics.get(), &*backends);
  }
  auto http = std::make_unique<assistants::upstream::CurlHttpClient>();
  auto providers = assistants::upstream::ProviderRegistry::Create(
      *backends, default_upstream, http.get());
  if (!providers.ok()) {
    std::cerr << "assistants-gateway: " << providers.status().message() << "\n";
    return 1;
  }

  assistants::runs::EngineOptions engine_options;
  engine_options.requires_action_timeout_ms =
      int64_t{absl::GetFlag(FLAGS_requires_action_timeout_s)} * 1000;
  engine_options.default_upstream = (*providers)->default_backend();
  const std::string policy = absl::GetFlag(FLAGS_active_run_policy);
  if (policy == "reject") {
    engine_options.default_active_run_policy =
        assistants::v1::ACTIVE_RUN_POLICY_REJECT;
  } else if (policy == "queue") {
    engine_options.default_active_run_policy =
        assistants::v1::ACTIVE_RUN_POLICY_QUEUE;
  } else if (policy == "interrupt") {
    engine_options.default_active_run_policy =
        assistants::v1::ACTIVE_RUN_POLICY_INTERRUPT;
  } else {
    std::cerr << "assistants-gateway: --active_run_policy must be reject, "
                 "queue or interrupt, not \""
              << policy << "\"\n";
    return 1;
  }
  if (engine_options.requires_action_timeout_ms <= 0) {
    std::cerr << "assistants-gateway: --requires_action_timeout_s must be "
                 "positive\n";
    return 1;
  }

  assistants::SystemClock clock;
  assistants::ThreadTimers timers(&clock);
  assistants::Executor engine_executor(
      static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_engine_threads))));
  auto tool_registry = MakeToolRegistry(&clock);
  if (!tool_registry.ok()) {
    std::cerr << "assistants-gateway: " << tool_registry.status().message()
              << "\n";
    return 1;
  }
  assistants::tool_workers::GrpcWorkerTransport worker_transport(&clock);
  assistants::tool_workers::DispatcherOptions dispatcher_options;
  dispatcher_options.no_worker_wait_ms = absl::GetFlag(FLAGS_worker_wait_ms);
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
  auto engine = std::make_unique<assistants::runs::RunEngine>(
      store.get(), std::move(resolver), engine_dispatcher, &clock, &timers,
      &engine_executor, engine_options);
  if (absl::Status recovered = engine->Recover(); !recovered.ok()) {
    std::cerr << "assistants-gateway: cannot resume runs: "
              << recovered.message() << "\n";
    return 1;
  }

  std::unique_ptr<obs::MetricsServer> metrics_server;
  if (metrics != nullptr) {
    auto started = obs::MetricsServer::Start(metrics_listen, metrics.get());
    if (!started.ok()) {
      std::cerr << "assistants-gateway: " << started.status().message() << "\n";
      return 1;
    }
    metrics_server = *std::move(started);
  }

  assistants::ServerOptions options;
  options.listen = absl::GetFlag(FLAGS_listen);
  options.streams.heartbeat_ms = absl::GetFlag(FLAGS_heartbeat_ms);
  options.tool_registry = tool_registry->get();
  if (metrics != nullptr) {
    options.interceptors.push_back([m = metrics.get()] {
      return std::make_unique<assistants::RpcMetricsInterceptorFactory>(m);
    });
  }
  auto server = assistants::GatewayServer::Start(options, store.get(), &clock,
                                                 engine.get(), &timers);
  if (!server.ok()) {
    std::cerr << "assistants-gateway: " << server.status().message() << "\n";
    return 1;
  }
  std::string host = options.listen.substr(0, options.listen.rfind(':'));
  std::cerr << "assistants-gateway listening on " << host << ":"
            << (*server)->port()
            << " (store: " << (db == ":memory:" ? "memory" : "sqlite " + db)
            << ")" << std::endl;

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
    std::cerr << "assistants-gateway: signal " << signal_number
              << ", shutting down" << std::endl;
    (*server)->Shutdown(
        std::chrono::milliseconds(absl::GetFlag(FLAGS_shutdown_grace_ms)));
  });
  (*server)->Wait();
  signal_waiter.join();
  metrics_server.reset();
  // Turns in flight hold requests of the HTTP client: the engine goes first.
  engine->Stop();
  dispatcher.Shutdown();
  server->reset();
  engine.reset();
  http.reset();
  std::cerr << "assistants-gateway: stopped" << std::endl;
  return 0;
}
