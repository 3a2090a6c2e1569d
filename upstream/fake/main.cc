// fake-openai: a faithful, scriptable fake of OpenAI's Responses and Chat
// Completions HTTP APIs for tests, benchmarks and demos. Listens on
// 127.0.0.1 only, prints "fake-openai listening on 127.0.0.1:PORT" to
// stderr when ready, and exits 0 on SIGTERM/SIGINT.
#include <event2/event.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "upstream/fake/fake_openai_server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:0",
          "Address to listen on; only 127.0.0.1 is accepted. Port 0 picks a "
          "free port.");
ABSL_FLAG(std::string, api_key, "",
          "Bearer key clients must send (default: $FAKE_OPENAI_API_KEY, else "
          "sk-fake).");
ABSL_FLAG(std::string, scenario_file, "",
          "Optional JSON file {\"responses\":[steps...]} queued at start-up.");
ABSL_FLAG(int, idle_timeout_s, 120,
          "Close idle keep-alive connections after this many seconds.");
ABSL_FLAG(int, max_recorded_requests, 1000,
          "Keep at most this many requests for GET /_fake/requests (0: do "
          "not record).");
ABSL_FLAG(uint64_t, seed, 0, "Seed for generated ids (0: from the clock).");

namespace {

void OnSignal(evutil_socket_t, short, void* arg) {
  event_base_loopbreak(static_cast<event_base*>(arg));
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  using assistants::fake_openai::FakeOpenAiServer;
  using assistants::fake_openai::Json;
  using assistants::fake_openai::ParseScript;
  using assistants::fake_openai::Step;

  FakeOpenAiServer::Options options;
  const std::string listen = absl::GetFlag(FLAGS_listen);
  const size_t colon = listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    std::fprintf(stderr, "fake-openai: bad --listen=%s (want HOST:PORT)\n",
                 listen.c_str());
    return 2;
  }
  options.host = listen.substr(0, colon);
  if (options.host != "127.0.0.1" && options.host != "localhost") {
    std::fprintf(stderr,
                 "fake-openai: refusing to listen on %s; 127.0.0.1 "
                 "only\n",
                 options.host.c_str());
    return 2;
  }
  options.host = "127.0.0.1";
  options.port = port;
  options.api_key = absl::GetFlag(FLAGS_api_key);
  if (options.api_key.empty()) {
    const char* env = std::getenv("FAKE_OPENAI_API_KEY");
    options.api_key = env != nullptr && *env != '\0' ? env : "sk-fake";
  }
  options.idle_timeout_s = absl::GetFlag(FLAGS_idle_timeout_s);
  options.max_recorded_requests = static_cast<size_t>(
      std::max(0, absl::GetFlag(FLAGS_max_recorded_requests)));
  options.seed = absl::GetFlag(FLAGS_seed);

  // Writes to a peer that vanished must surface as errors, not kill us.
  std::signal(SIGPIPE, SIG_IGN);

  event_base* base = event_base_new();
  if (base == nullptr) {
    std::fprintf(stderr, "fake-openai: event_base_new failed\n");
    return 1;
  }
  int exit_code = 0;
  {
    FakeOpenAiServer server(base, options);
    const std::string scenario = absl::GetFlag(FLAGS_scenario_file);
    if (!scenario.empty()) {
      std::ifstream in(scenario);
      std::stringstream text;
      text << in.rdbuf();
      const Json j = Json::parse(text.str(), nullptr, false);
      std::vector<Step> steps;
      std::string error;
      if (!in || j.is_discarded() || !ParseScript(j, &steps, &error)) {
        std::fprintf(stderr, "fake-openai: bad --scenario_file %s: %s\n",
                     scenario.c_str(),
                     error.empty() ? "not readable JSON" : error.c_str());
        event_base_free(base);
        return 2;
      }
      server.model().Enqueue(std::move(steps));
    }
    std::string error;
    if (!server.Start(&error)) {
      std::fprintf(stderr, "fake-openai: %s\n", error.c_str());
      exit_code = 1;
    } else {
      event* sigterm = evsignal_new(base, SIGTERM, &OnSignal, base);
      event* sigint = evsignal_new(base, SIGINT, &OnSignal, base);
      evsignal_add(sigterm, nullptr);
      evsignal_add(sigint, nullptr);
      std::fprintf(stderr, "fake-openai listening on 127.0.0.1:%d\n",
                   server.port());
      std::fflush(stderr);
      event_base_dispatch(base);
      event_free(sigterm);
      event_free(sigint);
    }
    server.Shutdown();
  }
  event_base_free(base);
  return exit_code;
}
