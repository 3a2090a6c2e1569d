// Helpers shared by the end-to-end tests that drive the gateway over gRPC in
// front of fake-openai: deadlines, bounded polling, fake-openai's control API,
// a RunEvents reader and checks on streamed events. Header-only; a test that
// includes it links gRPC, the protos, nlohmann_json, libcurl and GoogleTest.
#ifndef TESTS_E2E_E2E_HELPERS_H_
#define TESTS_E2E_E2E_HELPERS_H_

#include <curl/curl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "assistants/v1/assistant.grpc.pb.h"
#include "assistants/v1/event.pb.h"
#include "assistants/v1/message.pb.h"
#include "assistants/v1/run_service.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace assistants::test_support {

inline std::string Describe(const grpc::Status& status) {
  return std::to_string(status.error_code()) + ": " + status.error_message();
}

// A context whose deadline is `timeout` from now.
inline std::unique_ptr<grpc::ClientContext> Context(
    std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + timeout);
  return context;
}

// Polls `done` every 20 ms until it holds or `timeout` passes.
inline bool WaitUntil(const std::function<bool()>& done,
                      std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// --- fake-openai's control API -------------------------------------------

namespace e2e_internal {
inline size_t AppendBody(char* data, size_t size, size_t n, void* arg) {
  static_cast<std::string*>(arg)->append(data, size * n);
  return size * n;
}
}  // namespace e2e_internal

// Calls `method path` on fake-openai; returns the parsed JSON body
// (discarded on a transport error or a non-JSON body). Needs
// curl_global_init() first.
inline nlohmann::json FakeCall(int port, const std::string& method,
                               const std::string& path,
                               const std::string& body = "") {
  CURL* curl = curl_easy_init();
  std::string out;
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + path;
  curl_slist* headers =
      curl_slist_append(nullptr, "Content-Type: application/json");
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  if (!body.empty()) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE,
                     static_cast<long>(body.size()));
  }
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &e2e_internal::AppendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &out);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
  const CURLcode code = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  EXPECT_EQ(code, CURLE_OK) << method << " " << path;
  EXPECT_EQ(status, 200) << method << " " << path << ": " << out;
  return nlohmann::json::parse(out, nullptr, false);
}

// --- Events --------------------------------------------------------------

// Sequences of `events`, in order.
inline std::vector<int64_t> Sequences(const std::vector<v1::RunEvent>& events) {
  std::vector<int64_t> out;
  for (const v1::RunEvent& event : events) out.push_back(event.sequence());
  return out;
}

inline std::vector<int64_t> OneTo(int64_t n) {
  std::vector<int64_t> out;
  for (int64_t i = 1; i <= n; ++i) out.push_back(i);
  return out;
}

// The concatenated text of every thread.message.delta.
inline std::string DeltaText(const std::vector<v1::RunEvent>& events) {
  std::string text;
  for (const v1::RunEvent& event : events) {
    if (!event.has_message_delta()) continue;
    for (const v1::MessageContentDelta& part :
         event.message_delta().delta().content()) {
      text += part.text().value();
    }
  }
  return text;
}

inline std::string MessageText(const v1::Message& message) {
  std::string text;
  for (const v1::MessageContent& content : message.content()) {
    text += content.text().value();
  }
  return text;
}

// Each event carries the payload its name calls for.
inline void ExpectPayloads(const std::vector<v1::RunEvent>& events) {
  for (const v1::RunEvent& e : events) {
    const std::string& name = e.event();
    v1::RunEvent::DataCase want = v1::RunEvent::DATA_NOT_SET;
    if (name == "thread.created") {
      want = v1::RunEvent::kThread;
    } else if (name == "thread.run.step.delta") {
      want = v1::RunEvent::kStepDelta;
    } else if (name.rfind("thread.run.step.", 0) == 0) {
      want = v1::RunEvent::kStep;
    } else if (name.rfind("thread.run.", 0) == 0) {
      want = v1::RunEvent::kRun;
    } else if (name == "thread.message.delta") {
      want = v1::RunEvent::kMessageDelta;
    } else if (name.rfind("thread.message.", 0) == 0) {
      want = v1::RunEvent::kMessage;
    } else if (name == "done") {
      want = v1::RunEvent::kDone;
    } else if (name == "error") {
      want = v1::RunEvent::kError;
    }
    EXPECT_NE(want, v1::RunEvent::DATA_NOT_SET) << "unknown event " << name;
    EXPECT_EQ(e.data_case(), want) << e.DebugString();
    EXPECT_GT(e.created_at_ms(), 0) << name;
  }
}

// One RunEvents call, read on the caller's thread, with a deadline.
class EventStream {
 public:
  EventStream(v1::RunService::Stub* stub, const v1::RunEventsRequest& request,
              std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    context_.set_deadline(std::chrono::system_clock::now() + timeout);
    reader_ = stub->RunEvents(&context_, request);
  }
  ~EventStream() {
    if (!finished_) Cancel();
  }
  EventStream(const EventStream&) = delete;
  EventStream& operator=(const EventStream&) = delete;

  // The next event (heartbeats skipped); false when the stream ended.
  bool Next(v1::RunEvent* event) {
    v1::RunEventsResponse response;
    while (reader_->Read(&response)) {
      if (response.event().event() == "heartbeat") {
        // Its sequence is that of the last real event.
        heartbeats_.push_back({response.event(), last_sequence_});
        continue;
      }
      *event = response.event();
      last_sequence_ = event->sequence();
      return true;
    }
    return false;
  }

  // The heartbeats skipped so far, each with the sequence of the real event
  // before it.
  const std::vector<std::pair<v1::RunEvent, int64_t>>& heartbeats() const {
    return heartbeats_;
  }

  // Reads to the end, appending to `events`; returns the final status.
  grpc::Status ReadAll(std::vector<v1::RunEvent>* events) {
    v1::RunEvent event;
    while (Next(&event)) events->push_back(event);
    return Finish();
  }

  grpc::Status Finish() {
    finished_ = true;
    return reader_->Finish();
  }

  // Hangs up: what arrived but was not read is dropped, as if never sent.
  grpc::Status Cancel() {
    context_.TryCancel();
    v1::RunEventsResponse ignored;
    while (reader_->Read(&ignored)) {
    }
    return Finish();
  }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::RunEventsResponse>> reader_;
  bool finished_ = false;
  int64_t last_sequence_ = 0;
  std::vector<std::pair<v1::RunEvent, int64_t>> heartbeats_;
};

// --- Objects and calls both suites make ---------------------------------

inline v1::MessageInput UserMessage(const std::string& text) {
  v1::MessageInput message;
  message.set_role(v1::MESSAGE_ROLE_USER);
  message.set_text(text);
  return message;
}

// A new thread holding `question`, run by `assistant_id`.
inline v1::CreateThreadAndRunRequest ThreadAndRun(
    const std::string& assistant_id, const std::string& question) {
  v1::CreateThreadAndRunRequest request;
  *request.mutable_thread()->add_messages() = UserMessage(question);
  request.mutable_options()->set_assistant_id(assistant_id);
  return request;
}

// The seed's "Data Analyst" with `tools`; its id.
inline std::string CreateAssistant(v1::AssistantService::Stub* stub,
                                   const std::vector<v1::Tool>& tools,
                                   const std::string& upstream = "") {
  v1::CreateAssistantRequest request;
  request.set_model("gpt-4o");
  request.set_name("Data Analyst");
  request.set_instructions("You are a data analyst agent.");
  for (const v1::Tool& tool : tools) *request.add_tools() = tool;
  request.set_upstream(upstream);
  v1::CreateAssistantResponse response;
  grpc::Status status =
      stub->CreateAssistant(Context().get(), request, &response);
  EXPECT_TRUE(status.ok()) << Describe(status);
  return response.assistant().id();
}

inline v1::Run GetRun(v1::RunService::Stub* stub, const v1::Run& run) {
  v1::GetRunRequest request;
  request.set_thread_id(run.thread_id());
  request.set_run_id(run.id());
  v1::GetRunResponse response;
  grpc::Status status = stub->GetRun(Context().get(), request, &response);
  EXPECT_TRUE(status.ok()) << Describe(status);
  return response.run();
}

// The run's steps, oldest first.
inline std::vector<v1::RunStep> ListSteps(v1::RunService::Stub* stub,
                                          const v1::Run& run) {
  v1::ListRunStepsRequest request;
  request.set_thread_id(run.thread_id());
  request.set_run_id(run.id());
  request.mutable_options()->set_order(v1::LIST_ORDER_ASC);
  v1::ListRunStepsResponse response;
  grpc::Status status = stub->ListRunSteps(Context().get(), request, &response);
  EXPECT_TRUE(status.ok()) << Describe(status);
  return {response.data().begin(), response.data().end()};
}

// Queues `steps` (scripted model turns) on the fake at `port`.
inline void ScriptFake(int port, const nlohmann::json& steps) {
  const nlohmann::json reply =
      FakeCall(port, "POST", "/_fake/script",
               nlohmann::json{{"responses", steps}}.dump());
  EXPECT_EQ(reply.value("added", 0u), steps.size()) << reply.dump();
}

inline v1::RunEventsRequest Attach(const v1::Run& run, int64_t after_sequence) {
  v1::RunEventsRequest request;
  request.set_thread_id(run.thread_id());
  request.set_run_id(run.id());
  request.set_after_sequence(after_sequence);
  return request;
}

// After a restart: reads a stream reattached to `run` after the last event
// of `before` (what a client saw before the gateway went down) to its end,
// expects it to continue with the next sequence through
// thread.run.completed and done, numbered 1..N over both halves, and
// returns both halves joined (empty when the stream failed).
inline std::vector<v1::RunEvent> ReattachToCompletion(
    v1::RunService::Stub* runs, const v1::Run& run,
    const std::vector<v1::RunEvent>& before) {
  if (before.empty()) {
    ADD_FAILURE() << "nothing was seen before the restart";
    return {};
  }
  const int64_t last_seen = before.back().sequence();
  EventStream resumed(runs, Attach(run, last_seen));
  std::vector<v1::RunEvent> after;
  const grpc::Status status = resumed.ReadAll(&after);
  if (!status.ok() || after.size() < 2) {
    ADD_FAILURE() << "reattached stream: " << Describe(status) << ", "
                  << after.size() << " events";
    return {};
  }
  EXPECT_EQ(after.front().sequence(), last_seen + 1);
  EXPECT_EQ(after.back().event(), "done");
  EXPECT_EQ(after[after.size() - 2].event(), "thread.run.completed");
  std::vector<v1::RunEvent> all = before;
  all.insert(all.end(), after.begin(), after.end());
  EXPECT_EQ(Sequences(all), OneTo(static_cast<int64_t>(all.size())));
  return all;
}

}  // namespace assistants::test_support

#endif  // TESTS_E2E_E2E_HELPERS_H_
