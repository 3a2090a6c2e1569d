// assistants-gateway: serves the Assistants API over gRPC with an embedded
// store. Configuration: flags, each defaulting to an environment variable.
#include <signal.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "service/api/server.h"
#include "service/common/clock.h"
#include "service/store/memory_store.h"
#include "service/store/sqlite_store.h"

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

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Serves the Assistants API (assistants, threads, messages, runs) over "
      "gRPC.\nUsage: assistants-gateway [--listen=HOST:PORT] [--db=PATH]");
  absl::ParseCommandLine(argc, argv);

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

  assistants::SystemClock clock;
  assistants::ServerOptions options;
  options.listen = absl::GetFlag(FLAGS_listen);
  auto server = assistants::GatewayServer::Start(options, store.get(), &clock);
  if (!server.ok()) {
    std::cerr << "assistants-gateway: " << server.status().message() << "\n";
    return 1;
  }
  std::string host = options.listen.substr(0, options.listen.rfind(':'));
  std::cerr << "assistants-gateway listening on " << host << ":"
            << (*server)->port()
            << " (store: " << (db == ":memory:" ? "memory" : "sqlite " + db)
            << ")" << std::endl;

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
  std::cerr << "assistants-gateway: stopped" << std::endl;
  return 0;
}
