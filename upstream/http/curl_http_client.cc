// CurlHttpClient: see curl_http_client.h. Life of a request on the loop
// thread: Start queues a Transfer; the loop configures an easy handle once and
// adds it to the multi handle for each attempt. The header callback parses the
// response head and decides whether this response is the one the caller gets
// (then OnHeaders/OnBody run straight from curl's buffers) or a retryable one
// whose body is drained and dropped. When curl reports the attempt done (or a
// loop timer aborts it) the request completes or waits for its next attempt.
#include "upstream/http/curl_http_client.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "service/common/errors.h"

namespace assistants::upstream {
namespace {

using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::milliseconds;

constexpr milliseconds kMaxPollWait{1000};
constexpr long kTcpKeepIdleSeconds = 30;
constexpr long kTcpKeepIntervalSeconds = 15;

void GlobalInitOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// Errors that another attempt may cure: the network, not the request, failed.
bool IsTransientCurlError(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_PROXY:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_AGAIN:
      return true;
    default:
      return false;
  }
}

// The delay a retryable response asks for (retry-after-ms wins over
// Retry-After, as in OpenAI's SDKs), or negative when it names none.
milliseconds RetryAfter(const HttpResponseHead& head) {
  if (auto it = head.headers.find("retry-after-ms"); it != head.headers.end()) {
    double ms = 0;
    if (absl::SimpleAtod(it->second, &ms) && std::isfinite(ms) && ms >= 0) {
      return milliseconds(static_cast<int64_t>(std::min(ms, 1e9)));
    }
  }
  if (auto it = head.headers.find("retry-after"); it != head.headers.end()) {
    int64_t seconds = 0;
    if (absl::SimpleAtoi(it->second, &seconds)) {
      return seconds < 0
                 ? milliseconds(-1)
                 : milliseconds(std::min<int64_t>(seconds, 1'000'000) * 1000);
    }
    // An HTTP date; curl_getdate parses every format RFC 9110 allows.
    time_t when = curl_getdate(it->second.c_str(), nullptr);
    if (when != -1) {
      return milliseconds(
          std::max<int64_t>(0, (static_cast<int64_t>(when) - time(nullptr))) *
          1000);
    }
  }
  return milliseconds(-1);
}

}  // namespace

struct CurlHttpClient::Transfer {
  ~Transfer() { curl_slist_free_all(header_list); }

  CurlHttpClient* client = nullptr;
  RequestId id = 0;
  HttpRequest request;
  std::shared_ptr<HttpStreamHandler> handler;
  // Built once (on the caller's thread) and reused by every attempt.
  curl_slist* header_list = nullptr;
  // Values never to appear in a status message.
  std::vector<std::string> secrets;
  CURL* easy = nullptr;
  bool in_multi = false;
  int attempts = 0;
  Clock::time_point first_start;
  Clock::time_point attempt_start;

  // State of the current attempt.
  bool connected = false;       // PREREQ ran: connection up, request going out
  bool status_seen = false;     // a status line arrived
  bool headers_done = false;    // the final (non-1xx) head is complete
  bool discard = false;         // retryable response: drain, don't deliver
  bool delivered = false;       // OnHeaders ran; no retry from here on
  Clock::time_point sent_at;    // when the request went out (first_byte base)
  Clock::time_point last_data;  // head end or last body chunk (idle base)
  microseconds time_to_first_byte{0};
  milliseconds retry_delay{0};
  HttpResponseHead head;
  // Set when a loop timer (first_byte, idle, or the total backstop) aborted
  // the attempt.
  const char* timer_fired = nullptr;

  bool waiting_retry = false;
  Clock::time_point retry_at;
  // Set on the loop thread by Cancel() called from a handler callback, so
  // that curl callbacks stop delivering before the queued Cancel is applied.
  bool cancel_requested = false;
  char error_buffer[CURL_ERROR_SIZE] = {0};

  // The earliest loop-enforced deadline of the running attempt.
  Clock::time_point Deadline() const {
    Clock::time_point deadline = Clock::time_point::max();
    if (!connected && request.timeouts.total.count() > 0) {
      // libcurl enforces no timeout while a transfer waits in its queue for
      // a pooled connection (pool exhausted); this backstop does.
      deadline = attempt_start + request.timeouts.total;
    } else if (connected && !headers_done &&
               request.timeouts.first_byte.count() > 0) {
      // Until the whole head arrived: a status line followed by silence
      // (or a 1xx and nothing more) is still a first-byte stall.
      deadline = sent_at + request.timeouts.first_byte;
    } else if (headers_done && request.timeouts.idle.count() > 0) {
      deadline = last_data + request.timeouts.idle;
    }
    return deadline;
  }

  std::string Redact(std::string message) const {
    for (const std::string& secret : secrets) {
      if (!secret.empty()) {
        absl::StrReplaceAll({{secret, "[redacted]"}}, &message);
      }
    }
    return message;
  }

  // "METHOD scheme://host/path" for messages: user:password and the query
  // string are dropped, since either may carry credentials.
  std::string Describe() const {
    absl::string_view url = request.url;
    url = url.substr(0, url.find_first_of("?#"));
    size_t scheme_end = url.find("://");
    if (scheme_end != absl::string_view::npos) {
      size_t authority = scheme_end + 3;
      size_t path = url.find('/', authority);
      size_t at = url.substr(0, path).rfind('@');
      if (at != absl::string_view::npos && at >= authority) {
        return absl::StrCat(request.method, " ", url.substr(0, authority),
                            url.substr(at + 1));
      }
    }
    return absl::StrCat(request.method, " ", url);
  }
};

CurlHttpClient::CurlHttpClient(CurlHttpClientOptions options)
    : options_(std::move(options)), multi_([] {
        GlobalInitOnce();
        return curl_multi_init();
      }()) {
  curl_multi_setopt(multi_, CURLMOPT_PIPELINING,
                    options_.http2 ? CURLPIPE_MULTIPLEX : CURLPIPE_NOTHING);
  curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS,
                    static_cast<long>(options_.max_connections_per_host));
  curl_multi_setopt(multi_, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                    static_cast<long>(options_.max_total_connections));
  // By default curl keeps only 4 idle connections per added easy handle and
  // closes the rest when traffic dips; keep the whole pool open instead.
  curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS,
                    static_cast<long>(options_.max_total_connections));
  next_timer_check_ = Clock::time_point::max();
  loop_ = std::thread([this] { Run(); });
  loop_id_ = loop_.get_id();
}

CurlHttpClient::~CurlHttpClient() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  curl_multi_wakeup(multi_);
  loop_.join();
}

HttpClient::RequestId CurlHttpClient::Start(
    HttpRequest request, std::shared_ptr<HttpStreamHandler> handler) {
  auto t = std::make_unique<Transfer>();
  t->client = this;
  t->id = next_id_.fetch_add(1, std::memory_order_relaxed);
  t->request = std::move(request);
  t->handler = std::move(handler);
  for (const auto& [name, value] : t->request.headers) {
    bool secret = absl::EqualsIgnoreCase(name, "authorization");
    for (const std::string& s : t->request.secret_headers) {
      secret = secret || absl::EqualsIgnoreCase(name, s);
    }
    if (secret && !value.empty()) {
      t->secrets.push_back(value);
      // "Bearer sk-..." may surface without its scheme.
      if (auto space = value.find(' ');
          space != std::string::npos && space + 1 < value.size()) {
        t->secrets.push_back(value.substr(space + 1));
      }
    }
    t->header_list = curl_slist_append(t->header_list,
                                       absl::StrCat(name, ": ", value).c_str());
  }
  // No "Expect: 100-continue" round trip before POST bodies.
  t->header_list = curl_slist_append(t->header_list, "Expect:");
  const RequestId id = t->id;
  bool wake;
  {
    absl::MutexLock lock(&mu_);
    // A non-empty queue means a wakeup is already pending.
    wake = commands_.empty();
    commands_.push_back(Command{id, std::move(t)});
  }
  if (wake) curl_multi_wakeup(multi_);
  return id;
}

void CurlHttpClient::Cancel(RequestId id) {
  if (std::this_thread::get_id() == loop_id_) {
    // Called from a handler callback: stop deliveries right away.
    if (auto it = transfers_.find(id); it != transfers_.end()) {
      it->second->cancel_requested = true;
    }
  }
  bool wake;
  {
    absl::MutexLock lock(&mu_);
    wake = commands_.empty();
    commands_.push_back(Command{id, nullptr});
  }
  if (wake) curl_multi_wakeup(multi_);
}

void CurlHttpClient::Run() {
  while (DrainCommands()) {
    int running = 0;
    curl_multi_perform(multi_, &running);
    ReapFinished();
    Clock::time_point now = Clock::now();
    if (now >= next_timer_check_) CheckTimers(now);
    // curl_multi_poll also honours curl's own (shorter) timeout.
    milliseconds wait = kMaxPollWait;
    if (next_timer_check_ != Clock::time_point::max()) {
      auto until = std::chrono::ceil<milliseconds>(next_timer_check_ - now);
      wait = std::clamp(until, milliseconds(0), kMaxPollWait);
    }
    curl_multi_poll(multi_, nullptr, 0, static_cast<int>(wait.count()),
                    nullptr);
  }
  Shutdown();
}

bool CurlHttpClient::DrainCommands() {
  bool stopping;
  {
    absl::MutexLock lock(&mu_);
    draining_.swap(commands_);
    stopping = stopping_;
  }
  for (Command& command : draining_) {
    if (command.start != nullptr) {
      if (stopping) {
        Transfer& t = *command.start;
        transfers_.emplace(t.id, std::move(command.start));
        Complete(
            t, MakeError(
                   absl::StatusCode::kCancelled, "UPSTREAM_CANCELLED",
                   absl::StrCat(t.Describe(), ": the HTTP client shut down")));
      } else {
        AddTransfer(std::move(command.start));
      }
    } else if (auto it = transfers_.find(command.id); it != transfers_.end()) {
      Transfer& t = *it->second;
      Complete(t, MakeError(absl::StatusCode::kCancelled, "UPSTREAM_CANCELLED",
                            absl::StrCat(t.Describe(), ": cancelled")));
    }
  }
  draining_.clear();
  return !stopping;
}

void CurlHttpClient::AddTransfer(std::unique_ptr<Transfer> transfer) {
  Transfer& t = *transfer;
  transfers_.emplace(t.id, std::move(transfer));
  t.first_start = Clock::now();
  t.easy = TakeEasy();
  if (t.easy == nullptr) {
    Complete(t,
             MakeError(absl::StatusCode::kUnavailable, "UPSTREAM_UNREACHABLE",
                       absl::StrCat(t.Describe(),
                                    ": could not allocate a curl handle")));
    return;
  }
  ConfigureEasy(t);
  BeginAttempt(t);
}

CURL* CurlHttpClient::TakeEasy() {
  if (spare_easies_.empty()) return curl_easy_init();
  CURL* easy = spare_easies_.back();
  spare_easies_.pop_back();
  return easy;
}

void CurlHttpClient::ReturnEasy(CURL* easy) {
  if (static_cast<int>(spare_easies_.size()) < options_.max_spare_handles) {
    // Reset drops every option but keeps the handle's allocations.
    curl_easy_reset(easy);
    spare_easies_.push_back(easy);
  } else {
    curl_easy_cleanup(easy);
  }
}

void CurlHttpClient::ConfigureEasy(Transfer& t) {
  CURL* e = t.easy;
  const HttpRequest& r = t.request;
  curl_easy_setopt(e, CURLOPT_PRIVATE, &t);
  curl_easy_setopt(e, CURLOPT_URL, r.url.c_str());
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t.error_buffer);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, t.header_list);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &CurlHttpClient::HeaderCallback);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &CurlHttpClient::WriteCallback);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, &CurlHttpClient::PrereqCallback);
  curl_easy_setopt(e, CURLOPT_PREREQDATA, &t);
  // A proxy's CONNECT reply is not the response.
  curl_easy_setopt(e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, kTcpKeepIdleSeconds);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, kTcpKeepIntervalSeconds);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(r.timeouts.connect.count()));
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(r.timeouts.total.count()));
  if (options_.http2) {
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                     static_cast<long>(CURL_HTTP_VERSION_2TLS));
    // Wait for a connection being set up rather than opening a parallel one,
    // so requests multiplex onto it when the server speaks HTTP/2.
    if (absl::StartsWithIgnoreCase(r.url, "https:")) {
      curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    }
  } else {
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                     static_cast<long>(CURL_HTTP_VERSION_1_1));
  }
  if (options_.accept_compressed) {
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
  }
  // Verification is libcurl's default; say so explicitly so that no build
  // default, environment or reused handle can turn it off. There is no
  // option to disable it: a private upstream gets a CA bundle (ca_file).
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!options_.ca_file.empty()) {
    curl_easy_setopt(e, CURLOPT_CAINFO, options_.ca_file.c_str());
  }
  // The body lives in the Transfer for every attempt: no copy.
  if (r.method == "GET") {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else if (r.method == "HEAD") {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else {
    if (r.method == "POST" || !r.body.empty()) {
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, r.body.data());
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                       static_cast<curl_off_t>(r.body.size()));
    }
    if (r.method != "POST") {
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r.method.c_str());
    }
  }
}

void CurlHttpClient::BeginAttempt(Transfer& t) {
  t.attempts++;
  t.attempt_start = Clock::now();
  t.connected = t.status_seen = t.headers_done = false;
  t.discard = t.delivered = false;
  t.timer_fired = nullptr;
  t.waiting_retry = false;
  t.time_to_first_byte = microseconds(0);
  t.head = HttpResponseHead();
  t.error_buffer[0] = '\0';
  if (curl_multi_add_handle(multi_, t.easy) != CURLM_OK) {
    Complete(t,
             MakeError(
                 absl::StatusCode::kUnavailable, "UPSTREAM_UNREACHABLE",
                 absl::StrCat(t.Describe(), ": could not start the transfer")));
    return;
  }
  t.in_multi = true;
  if (t.request.timeouts.total.count() > 0) {
    NoteDeadline(t.attempt_start + t.request.timeouts.total);
  }
}

void CurlHttpClient::ReapFinished() {
  int queued = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_, &queued)) {
    if (msg->msg != CURLMSG_DONE) continue;
    // `msg` dies with remove_handle; copy what we need first.
    CURL* easy = msg->easy_handle;
    CURLcode code = msg->data.result;
    Transfer* t = nullptr;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &t);
    if (t != nullptr) FinishAttempt(*t, code);
  }
}

void CurlHttpClient::FinishAttempt(Transfer& t, CURLcode code) {
  if (t.in_multi) {
    curl_multi_remove_handle(multi_, t.easy);
    t.in_multi = false;
  }
  if (t.cancel_requested) {
    Complete(t, MakeError(absl::StatusCode::kCancelled, "UPSTREAM_CANCELLED",
                          absl::StrCat(t.Describe(), ": cancelled")));
    return;
  }
  if (code == CURLE_OK) {
    if (t.discard) {
      ScheduleRetry(t, t.retry_delay);
    } else if (t.delivered) {
      Complete(t, absl::OkStatus());
    } else {
      // A transfer can succeed without a head only if the server spoke
      // something that is not HTTP/1.x or HTTP/2.
      Complete(t,
               MakeError(absl::StatusCode::kUnavailable, "UPSTREAM_UNREACHABLE",
                         absl::StrCat(t.Describe(),
                                      ": response without a status line")));
    }
    return;
  }

  absl::Status status;
  if (code == CURLE_OPERATION_TIMEDOUT) {
    const HttpTimeouts& limits = t.request.timeouts;
    const char* which = t.timer_fired;
    if (which == nullptr) {
      // curl enforces connect and total; connect applies until PREREQ.
      bool connect_limit =
          !t.connected && limits.connect.count() > 0 &&
          (limits.total.count() == 0 || limits.connect <= limits.total);
      which = connect_limit ? "connect" : "total";
    }
    status = MakeError(
        absl::StatusCode::kDeadlineExceeded, "UPSTREAM_TIMEOUT",
        t.Redact(absl::StrCat(t.Describe(), ": ", which, " timeout exceeded")),
        {{"timeout", which}});
  } else {
    absl::string_view detail = t.error_buffer[0] != '\0'
                                   ? absl::string_view(t.error_buffer)
                                   : curl_easy_strerror(code);
    status =
        MakeError(absl::StatusCode::kUnavailable, "UPSTREAM_UNREACHABLE",
                  t.Redact(absl::StrCat(
                      t.Describe(), ": upstream unreachable (", detail, ")")));
  }
  if (!t.delivered && IsTransientCurlError(code)) {
    milliseconds delay = t.discard ? t.retry_delay : Backoff(t);
    if (CanRetry(t, delay)) {
      ScheduleRetry(t, delay);
      return;
    }
  }
  Complete(t, std::move(status));
}

bool CurlHttpClient::CanRetry(const Transfer& t, milliseconds delay) const {
  const RetryPolicy& policy = t.request.retry;
  if (t.attempts >= policy.max_attempts) return false;
  if (policy.max_total.count() <= 0) return true;
  return Clock::now() + delay - t.first_start <= policy.max_total;
}

milliseconds CurlHttpClient::Backoff(const Transfer& t) {
  const RetryPolicy& policy = t.request.retry;
  double ms = static_cast<double>(policy.initial_backoff.count()) *
              std::ldexp(1.0, std::min(t.attempts - 1, 30));
  ms = std::min(ms, static_cast<double>(policy.max_backoff.count()));
  double jitter = options_.jitter ? options_.jitter()
                                  : absl::Uniform<double>(bitgen_, 0.5, 1.5);
  return milliseconds(static_cast<int64_t>(std::max(0.0, ms * jitter)));
}

void CurlHttpClient::ScheduleRetry(Transfer& t, milliseconds delay) {
  if (t.request.retry.on_retry) t.request.retry.on_retry();
  t.waiting_retry = true;
  t.retry_at = Clock::now() + delay;
  NoteDeadline(t.retry_at);
}

void CurlHttpClient::NoteDeadline(Clock::time_point deadline) {
  next_timer_check_ = std::min(next_timer_check_, deadline);
}

void CurlHttpClient::CheckTimers(Clock::time_point now) {
  Clock::time_point next = Clock::time_point::max();
  expired_.clear();
  for (const auto& [id, transfer] : transfers_) {
    const Transfer& t = *transfer;
    Clock::time_point due = t.waiting_retry ? t.retry_at
                            : t.in_multi    ? t.Deadline()
                                            : Clock::time_point::max();
    if (due <= now) {
      expired_.push_back(id);
    } else {
      next = std::min(next, due);
    }
  }
  next_timer_check_ = next;
  // Handlers run below and may Start or Cancel, which only queues commands;
  // looking each id up again keeps this safe if one completed meanwhile.
  for (RequestId id : expired_) {
    auto it = transfers_.find(id);
    if (it == transfers_.end()) continue;
    Transfer& t = *it->second;
    if (t.waiting_retry) {
      BeginAttempt(t);
    } else if (t.in_multi) {
      t.timer_fired = !t.connected     ? "total"
                      : t.headers_done ? "idle"
                                       : "first_byte";
      FinishAttempt(t, CURLE_OPERATION_TIMEDOUT);
    }
  }
}

void CurlHttpClient::Complete(Transfer& t, absl::Status status) {
  HttpTransferStats stats;
  stats.attempts = t.attempts;
  stats.time_to_first_byte = t.time_to_first_byte;
  stats.total_time = duration_cast<microseconds>(Clock::now() - t.first_start);
  if (t.easy != nullptr) {
    if (t.in_multi) curl_multi_remove_handle(multi_, t.easy);
    t.in_multi = false;
    long connects = -1;
    if (t.attempts > 0 && curl_easy_getinfo(t.easy, CURLINFO_NUM_CONNECTS,
                                            &connects) == CURLE_OK) {
      stats.connection_reused = t.connected && connects == 0;
    }
    ReturnEasy(t.easy);
    t.easy = nullptr;
  }
  // Detach the request before calling out: the handler may Start or Cancel.
  auto it = transfers_.find(t.id);
  std::unique_ptr<Transfer> owned = std::move(it->second);
  transfers_.erase(it);
  std::shared_ptr<HttpStreamHandler> handler = std::move(owned->handler);
  owned.reset();
  if (handler != nullptr) handler->OnComplete(status, stats);
}

void CurlHttpClient::Shutdown() {
  // Handlers may Start more work from OnComplete; that is cancelled too.
  while (true) {
    DrainCommands();  // completes queued Starts with CANCELLED
    if (transfers_.empty()) {
      absl::MutexLock lock(&mu_);
      if (commands_.empty()) break;
      continue;
    }
    Transfer& t = *transfers_.begin()->second;
    Complete(t, MakeError(
                    absl::StatusCode::kCancelled, "UPSTREAM_CANCELLED",
                    absl::StrCat(t.Describe(), ": the HTTP client shut down")));
  }
  for (CURL* easy : spare_easies_) curl_easy_cleanup(easy);
  spare_easies_.clear();
  curl_multi_cleanup(multi_);
}

void CurlHttpClient::HeadersComplete(Transfer& t) {
  t.headers_done = true;
  t.last_data = Clock::now();
  if (t.request.timeouts.idle.count() > 0) {
    NoteDeadline(t.last_data + t.request.timeouts.idle);
  }
  const std::vector<int>& retryable = t.request.retry.retryable_statuses;
  if (std::find(retryable.begin(), retryable.end(), t.head.status) !=
      retryable.end()) {
    milliseconds delay = RetryAfter(t.head);
    const milliseconds cap = t.request.retry.max_backoff * 4;
    delay = delay.count() >= 0 ? std::min(delay, cap) : Backoff(t);
    if (CanRetry(t, delay)) {
      t.discard = true;
      t.retry_delay = delay;
      return;
    }
  }
  t.delivered = true;
  t.handler->OnHeaders(t.head);
}

size_t CurlHttpClient::HeaderCallback(char* data, size_t size, size_t count,
                                      void* user) {
  Transfer& t = *static_cast<Transfer*>(user);
  const size_t n = size * count;
  if (t.cancel_requested) return 0;  // aborts with CURLE_WRITE_ERROR
  if (t.headers_done) return n;      // trailers
  absl::string_view line(data, n);
  if (absl::StartsWith(line, "HTTP/")) {
    // "HTTP/1.1 200 OK" or "HTTP/2 200"; a 1xx head precedes the real one.
    int status = 0;
    size_t space = line.find(' ');
    if (space != absl::string_view::npos && line.size() >= space + 4) {
      (void)absl::SimpleAtoi(line.substr(space + 1, 3), &status);
    }
    t.head.status = status;
    t.head.headers.clear();
    if (!t.status_seen) {
      t.status_seen = true;
      t.time_to_first_byte =
          duration_cast<microseconds>(Clock::now() - t.attempt_start);
    }
    return n;
  }
  line = absl::StripTrailingAsciiWhitespace(line);
  if (line.empty()) {
    if (t.head.status >= 200) t.client->HeadersComplete(t);
    return n;
  }
  size_t colon = line.find(':');
  if (colon == absl::string_view::npos) return n;
  std::string name(absl::StripAsciiWhitespace(line.substr(0, colon)));
  absl::AsciiStrToLower(&name);
  t.head.headers.insert_or_assign(
      std::move(name),
      std::string(absl::StripAsciiWhitespace(line.substr(colon + 1))));
  return n;
}

size_t CurlHttpClient::WriteCallback(char* data, size_t size, size_t count,
                                     void* user) {
  Transfer& t = *static_cast<Transfer*>(user);
  const size_t n = size * count;
  if (t.cancel_requested) return 0;  // aborts with CURLE_WRITE_ERROR
  t.last_data = Clock::now();
  if (t.discard || !t.delivered) return n;
  // Straight from curl's buffer: no copy.
  t.handler->OnBody(absl::string_view(data, n));
  return n;
}

int CurlHttpClient::PrereqCallback(void* user, char* conn_primary_ip,
                                   char* conn_local_ip, int conn_primary_port,
                                   int conn_local_port) {
  Transfer& t = *static_cast<Transfer*>(user);
  t.connected = true;
  t.sent_at = Clock::now();
  if (t.request.timeouts.first_byte.count() > 0) {
    t.client->NoteDeadline(t.sent_at + t.request.timeouts.first_byte);
  }
  return CURL_PREREQFUNC_OK;
}

}  // namespace assistants::upstream
