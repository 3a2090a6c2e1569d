#include "bench/bench_support.h"

#include <curl/curl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace assistants::bench {

double Seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

double Micros(Clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

double ProcessCpuSeconds(pid_t pid) {
  clockid_t clock;
  timespec now{};
  if (clock_getcpuclockid(pid, &clock) == 0 &&
      clock_gettime(clock, &now) == 0) {
    return now.tv_sec + now.tv_nsec / 1e9;
  }
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(stat)),
                   std::istreambuf_iterator<char>());
  const size_t name_end = text.rfind(')');
  if (name_end == std::string::npos) return 0;
  // The fields after the command name, which may contain spaces: "(...)".
  std::istringstream fields(text.substr(name_end + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; fields >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);  // utime, stime
    if (i == 15) break;
  }
  return ticks / sysconf(_SC_CLK_TCK);
}

int64_t RssKiB(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return 0;
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t index = static_cast<size_t>(p * (values.size() - 1) + 0.5);
  return values[std::min(index, values.size() - 1)];
}

double Median(const std::vector<double>& values) {
  return Percentile(values, 0.5);
}

LatencySummary Summarize(std::vector<double> values) {
  LatencySummary summary;
  summary.count = values.size();
  if (values.empty()) return summary;
  std::sort(values.begin(), values.end());
  auto at = [&](double p) {
    const size_t index = static_cast<size_t>(p * (values.size() - 1) + 0.5);
    return values[std::min(index, values.size() - 1)];
  };
  summary.p50 = at(0.5);
  summary.p90 = at(0.9);
  summary.p99 = at(0.99);
  summary.p999 = at(0.999);
  summary.max = values.back();
  return summary;
}

std::unique_ptr<grpc::ClientContext> Context(int seconds) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(seconds));
  return context;
}

std::string Describe(const grpc::Status& status) {
  return absl::StrCat(status.error_code(), " ", status.error_message());
}

long HttpCall(const std::string& url, const std::string& body,
              std::string* out) {
  std::string ignored;
  if (out == nullptr) out = &ignored;
  out->clear();
  CURL* curl = curl_easy_init();
  curl_slist* headers =
      curl_slist_append(nullptr, "Content-Type: application/json");
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  if (!body.empty()) {
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE,
                     static_cast<long>(body.size()));
  }
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION,
      +[](char* data, size_t size, size_t n, void* sink) {
        static_cast<std::string*>(sink)->append(data, size * n);
        return size * n;
      });
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, out);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
  const CURLcode code = curl_easy_perform(curl);
  long status = 0;
  if (code == CURLE_OK)
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return status;
}

bool ScriptFake(int port, const nlohmann::json& steps) {
  return HttpCall(absl::StrCat("http://127.0.0.1:", port, "/_fake/script"),
                  nlohmann::json{{"responses", steps}}.dump()) == 200;
}

nlohmann::json FakeStats(int port) {
  std::string body;
  if (HttpCall(absl::StrCat("http://127.0.0.1:", port, "/_fake/stats"), "",
               &body) != 200) {
    return nullptr;
  }
  return nlohmann::json::parse(body, nullptr, false);
}

std::string Format(const char* format, double a, double b) {
  char text[96];
  std::snprintf(text, sizeof(text), format, a, b);
  return text;
}

std::string MiB(int64_t kib) { return Format("%.1f MiB", kib / 1024.0); }

bool ResetFakeScript(int port, const nlohmann::json& steps) {
  const std::string url =
      absl::StrCat("http://127.0.0.1:", port, "/_fake/script");
  const std::string body = nlohmann::json{{"responses", steps}}.dump();
  CURL* curl = curl_easy_init();
  curl_slist* headers =
      curl_slist_append(nullptr, "Content-Type: application/json");
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "PUT");
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION,
      +[](char*, size_t size, size_t n, void*) { return size * n; });
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
  long status = 0;
  if (curl_easy_perform(curl) == CURLE_OK) {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return status == 200;
}

SseClient::SseClient(const std::string& url, const std::string& body,
                     long timeout_ms)
    : url_(url), body_(body) {
  headers_ = curl_slist_append(nullptr, "Authorization: Bearer sk-fake");
  headers_ = curl_slist_append(headers_, "Content-Type: application/json");
  headers_ = curl_slist_append(headers_, "Expect:");
  curl_ = curl_easy_init();
  curl_easy_setopt(curl_, CURLOPT_URL, url_.c_str());
  curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers_);
  curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body_.c_str());
  curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &SseClient::OnData);
  curl_easy_setopt(curl_, CURLOPT_WRITEDATA, this);
  if (timeout_ms > 0) curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, timeout_ms);
}

SseClient::~SseClient() {
  curl_easy_cleanup(curl_);
  curl_slist_free_all(headers_);
}

long SseClient::Post(const OnEvent& on_event, std::string* error) {
  pending_.clear();
  on_event_ = &on_event;
  const CURLcode code = curl_easy_perform(curl_);
  on_event_ = nullptr;
  if (error != nullptr) *error = curl_easy_strerror(code);
  long status = 0;
  if (code == CURLE_OK)
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &status);
  return status;
}

size_t SseClient::OnData(char* data, size_t size, size_t n, void* self_ptr) {
  auto* self = static_cast<SseClient*>(self_ptr);
  const Clock::time_point now = Clock::now();
  self->pending_.append(data, size * n);
  TakeSseEvents(&self->pending_, [&](absl::string_view event) {
    (*self->on_event_)(event, now);
  });
  return size * n;
}

}  // namespace assistants::bench
