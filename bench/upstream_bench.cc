// upstream_bench: what the gateway's upstream path costs, measured against
// baselines in the same run (the machine is shared and noisy, so only
// ratios and differences are meaningful).
//
//   1. Stream relay: one turn whose fake upstream streams N text deltas with
//      no delay, consumed three ways: plain libcurl discarding the bytes (the
//      floor), our CurlHttpClient discarding the bytes, and a full provider
//      (SSE parse + translation to ProviderEvents). Reports events/s and this
//      process's CPU per event for each.
//   2. Small turns: requests/s and CPU per request, sequential and with 16
//      in flight, plus connection reuse from fake-openai's accept count.
//
// It starts its own fake-openai (path from argv[1]) on loopback.
#include <curl/curl.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "bench/bench_support.h"
#include "nlohmann/json.hpp"
#include "tests/support/server_process.h"
#include "upstream/chat_completions_provider.h"
#include "upstream/http/curl_http_client.h"
#include "upstream/responses_provider.h"

namespace assistants::upstream {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

size_t Discard(char*, size_t size, size_t n, void* counter) {
  *static_cast<size_t*>(counter) += size * n;
  return size * n;
}

struct Fake {
  test_support::ServerProcess process;
  std::string base;
  void Script(const json& steps) { bench::ScriptFake(process.port(), steps); }
  int Connections() {
    return bench::FakeStats(process.port())["connections_accepted"].get<int>();
  }
};

// Counts events and waits for the end of a turn.
class CountingObserver : public TurnObserver {
 public:
  void OnEvent(const ProviderEvent&) override { events_.fetch_add(1); }
  void OnDone(const std::optional<TurnError>& error) override {
    absl::MutexLock lock(&mu_);
    failed_ = error.has_value();
    done_ = true;
  }
  bool Wait() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
    return !failed_;
  }
  int64_t events() const { return events_.load(); }

 private:
  std::atomic<int64_t> events_{0};
  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool failed_ ABSL_GUARDED_BY(mu_) = false;
};

// An HttpStreamHandler that only counts bytes (our client without parsing).
class DiscardHandler : public HttpStreamHandler {
 public:
  void OnHeaders(const HttpResponseHead&) override {}
  void OnBody(absl::string_view chunk) override { bytes_ += chunk.size(); }
  void OnComplete(const absl::Status&, const HttpTransferStats&) override {
    absl::MutexLock lock(&mu_);
    done_ = true;
  }
  void Wait() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
  }

 private:
  size_t bytes_ = 0;
  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

struct Row {
  std::string name;
  double seconds;
  double cpu_seconds;
  int64_t events;
};

void PrintRelay(const std::vector<Row>& rows, const Row& floor) {
  std::printf(
      "| consumer | events/s | CPU us/event | CPU us/event over plain curl |\n"
      "|---|---|---|---|\n");
  for (const Row& row : rows) {
    double per_event = row.cpu_seconds * 1e6 / row.events;
    double floor_per_event = floor.cpu_seconds * 1e6 / floor.events;
    std::printf("| %s | %.0f | %.2f | %+.2f |\n", row.name.c_str(),
                row.events / row.seconds, per_event,
                per_event - floor_per_event);
  }
}

Turn SmallTurn() {
  Turn turn;
  turn.model = "gpt-4o";
  turn.items.push_back(TurnItem::UserText("hi"));
  return turn;
}

int Main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: upstream_bench FAKE_OPENAI_BIN [DELTAS]\n");
    return 2;
  }
  const int deltas = argc > 2 ? std::atoi(argv[2]) : 20000;
  const int repeats = 5;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  Fake fake;
  std::string error;
  if (!fake.process.Start(argv[1], {}, &error)) {
    std::fprintf(stderr, "cannot start fake-openai: %s\n", error.c_str());
    return 1;
  }
  fake.base = absl::StrCat("http://127.0.0.1:", fake.process.port());
  const std::string text(deltas, 'x');
  const json long_step = {{"text", text}, {"tokens", deltas}};
  const std::string responses_body =
      R"({"model":"gpt-4o","input":"hi","stream":true,"store":false})";

  // 1. Stream relay.
  auto measure = [&](const std::string& name, auto&& run) {
    Row row{name, 0, 0, 0};
    for (int i = 0; i < repeats; ++i) {
      fake.Script(json::array({long_step}));
      double cpu = CpuSeconds();
      auto start = Clock::now();
      run();
      row.seconds +=
          std::chrono::duration<double>(Clock::now() - start).count();
      row.cpu_seconds += CpuSeconds() - cpu;
      row.events += deltas;
    }
    return row;
  };
  Row floor = measure("plain libcurl, discard", [&] {
    size_t bytes = 0;
    CURL* curl = curl_easy_init();
    std::string url = fake.base + "/v1/responses";
    curl_slist* headers =
        curl_slist_append(nullptr, "Authorization: Bearer sk-fake");
    headers = curl_slist_append(headers, "Content-Type: application/json");
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, responses_body.c_str());
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &Discard);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &bytes);
    curl_easy_perform(curl);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
  });
  CurlHttpClient http;
  Row client = measure("CurlHttpClient, discard", [&] {
    HttpRequest request;
    request.url = fake.base + "/v1/responses";
    request.headers = {{"Authorization", "Bearer sk-fake"},
                       {"Content-Type", "application/json"}};
    request.body = responses_body;
    auto handler = std::make_shared<DiscardHandler>();
    http.Start(request, handler);
    handler->Wait();
  });
  ProviderConfig config;
  config.base_url = fake.base + "/v1";
  config.api_key = "sk-fake";
  ResponsesProvider responses(config, &http);
  ChatCompletionsProvider chat(config, &http);
  auto provider_row = [&](const std::string& name, Provider& provider) {
    return measure(name, [&] {
      auto observer = std::make_shared<CountingObserver>();
      auto call = provider.StreamTurn(SmallTurn(), observer);
      if (!observer->Wait())
        std::fprintf(stderr, "%s: turn failed\n", name.c_str());
    });
  };
  Row responses_row =
      provider_row("ResponsesProvider (parse + translate)", responses);
  Row chat_row =
      provider_row("ChatCompletionsProvider (parse + translate)", chat);
  std::printf("## Stream relay: %d deltas per turn, %d turns each\n\n", deltas,
              repeats);
  PrintRelay({floor, client, responses_row, chat_row}, floor);

  // 2. Small turns: throughput and connection reuse.
  std::printf("\n## Small turns (one delta each)\n\n");
  std::printf(
      "| provider | in flight | turns | turns/s | CPU us/turn | new "
      "connections | reuse |\n|---|---|---|---|---|---|---|\n");
  for (Provider* provider :
       {static_cast<Provider*>(&responses), static_cast<Provider*>(&chat)}) {
    for (int in_flight : {1, 16}) {
      const int turns = 2000;
      fake.Script(json::array({{{"text", "ok"}, {"repeat", turns}}}));
      int connections_before = fake.Connections();
      double cpu = CpuSeconds();
      auto start = Clock::now();
      int started = 0;
      std::vector<std::shared_ptr<CountingObserver>> window;
      std::vector<std::unique_ptr<TurnCall>> calls;
      while (started < turns) {
        window.clear();
        calls.clear();
        for (int i = 0; i < in_flight && started < turns; ++i, ++started) {
          window.push_back(std::make_shared<CountingObserver>());
          calls.push_back(provider->StreamTurn(SmallTurn(), window.back()));
        }
        for (auto& observer : window) observer->Wait();
      }
      double seconds =
          std::chrono::duration<double>(Clock::now() - start).count();
      double cpu_used = CpuSeconds() - cpu;
      // The two control calls (script, stats) open one connection each.
      int opened = fake.Connections() - connections_before - 1;
      std::printf("| %s | %d | %d | %.0f | %.1f | %d | %.2f %% |\n",
                  provider == &responses ? "Responses" : "Chat", in_flight,
                  turns, turns / seconds, cpu_used * 1e6 / turns, opened,
                  100.0 * (turns - opened) / turns);
    }
  }
  fake.process.Stop();
  return 0;
}

}  // namespace
}  // namespace assistants::upstream

int main(int argc, char** argv) {
  return assistants::upstream::Main(argc, argv);
}
