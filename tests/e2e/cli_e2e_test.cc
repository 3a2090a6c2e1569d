// End to end through assistantsctl only: the real gateway in front of the
// real fake-openai (plus a static tool worker from --workers_config), and
// every resource walked with the CLI as an operator would: assistants,
// threads, messages (create/get/list/update/delete), runs streamed with
// --demo-tools and non-streamed with `runs submit`, runs
// get/list/update/cancel/steps/step/events, threads create-and-run, workers
// list and tools list. Each command's exit code and output are checked, the
// JSON ones parsed. Also run fields set by flags and by --request-json, read
// back with `runs get`.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"
#include "tests/support/server_process.h"

namespace assistants::test_support {
namespace {

using Json = nlohmann::json;

constexpr char kQuestion[] =
    "What's the stock price of AAPL, and calculate what 1000 shares would be "
    "worth?";
// The seed's get_stock_price and the code interpreter, in OpenAI's shape.
constexpr char kTools[] =
    R"([{"type":"code_interpreter"},{"type":"function","function":)"
    R"({"name":"get_stock_price","description":"Get the current stock price )"
    R"(for a given ticker symbol.","parameters":{"type":"object",)"
    R"("properties":{"ticker":{"type":"string"}},"required":["ticker"]}}}])";

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::vector<std::string> Lines(const std::string& text) {
  if (text.empty()) return {};
  return absl::StrSplit(absl::StripSuffix(text, "\n"), '\n');
}

class CliE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(fake_.Start(FakeOpenAiBinary(), {"--seed=7"}, &error)) << error;
    // A static worker the registry lists without it running: enough for
    // `workers list` and `tools list`, and no run here calls its tool.
    const std::string workers = dir_.path() + "/workers.json";
    std::ofstream(workers) << R"({"workers": [{"worker_id": "static-1",
        "endpoint": "127.0.0.1:1", "tools": [{"function": {
        "name": "weather_lookup", "description": "Weather of a city.",
        "parameters": {"type": "object"}}, "timeout_ms": 2000}]}]})";
    gateway_.set_env(
        {"OPENAI_BASE_URL=http://127.0.0.1:" + std::to_string(fake_.port()) +
             "/v1",
         "OPENAI_API_KEY=sk-fake",
         "OPENAI_API_KEY_FILE=", "OPENAI_ORGANIZATION=", "OPENAI_PROJECT=",
         "CHAT_COMPLETIONS_BASE_URL=", "ASSISTANTS_DEFAULT_UPSTREAM=openai",
         "ASSISTANTS_REQUIRES_ACTION_TIMEOUT_S=",
         "ASSISTANTS_ACTIVE_RUN_POLICY="});
    ASSERT_TRUE(gateway_.Start(GatewayBinary(),
                               {"--db=:memory:", "--shutdown_grace_ms=500",
                                "--workers_config=" + workers},
                               &error))
        << error;
  }

  void TearDown() override {
    if (HasFailure()) {
      std::cerr << "--- gateway stderr ---\n"
                << gateway_.captured_stderr() << "--- fake-openai stderr ---\n"
                << fake_.captured_stderr();
    }
  }

  // Runs assistantsctl against the gateway; fails the test (without
  // stopping it) when the exit code is not `want_exit`.
  CommandResult Cli(const std::vector<std::string>& args, int want_exit = 0) {
    std::vector<std::string> argv = {CliBinary(), "--target",
                                     gateway_.address()};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult result = RunCommand(argv);
    std::string name;
    for (const std::string& arg : args) name += arg + " ";
    EXPECT_EQ(result.exit_code, want_exit)
        << name << "\nstdout: " << result.stdout_text
        << "\nstderr: " << result.stderr_text;
    return result;
  }

  // The command's --json output, parsed (discarded JSON on failure).
  Json CliJson(std::vector<std::string> args) {
    args.insert(args.begin(), "--json");
    const CommandResult result = Cli(args);
    const Json json = Json::parse(result.stdout_text, nullptr, false);
    EXPECT_FALSE(json.is_discarded()) << result.stdout_text;
    return json;
  }

  // Reads the run with `runs get` until its status is one of `statuses`
  // (bounded: 30 s).
  Json WaitForRun(const std::string& thread_id, const std::string& run_id,
                  const std::vector<std::string>& statuses) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(30);
    Json run;
    while (std::chrono::steady_clock::now() < deadline) {
      run = CliJson({"runs", "get", thread_id, run_id});
      for (const std::string& status : statuses) {
        if (run.value("status", "") == status) return run;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "run " << run_id
                  << " never reached the status: " << run.dump();
    return run;
  }

  TempDir dir_;
  ServerProcess fake_;
  ServerProcess gateway_;
};

TEST_F(CliE2eTest, WalksEveryResource) {
  // --- assistants -----------------------------------------------------
  const Json assistant =
      CliJson({"assistants", "create", "--model", "gpt-4o", "--name",
               "Data Analyst", "--tools-json", kTools, "--metadata", "team=a"});
  const std::string assistant_id = assistant.value("id", "");
  ASSERT_EQ(assistant_id.rfind("asst_", 0), 0u) << assistant.dump();
  EXPECT_TRUE(Contains(Cli({"assistants", "get", assistant_id}).stdout_text,
                       "Data Analyst"));
  EXPECT_TRUE(Contains(Cli({"assistants", "list"}).stdout_text, assistant_id));
  const Json renamed = CliJson({"assistants", "update", assistant_id, "--name",
                                "Analyst", "--metadata", "team=b"});
  EXPECT_EQ(renamed.value("name", ""), "Analyst");
  EXPECT_EQ(renamed["metadata"]["team"], "b");

  // --- threads ----------------------------------------------------------
  const Json thread =
      CliJson({"threads", "create", "--message", "hello", "--metadata", "k=1"});
  const std::string thread_id = thread.value("id", "");
  ASSERT_EQ(thread_id.rfind("thread_", 0), 0u) << thread.dump();
  EXPECT_TRUE(Contains(Cli({"threads", "get", thread_id}).stdout_text,
                       "metadata: k=1"));
  const Json updated_thread =
      CliJson({"threads", "update", thread_id, "--metadata", "k=2"});
  EXPECT_EQ(updated_thread["metadata"]["k"], "2");
  const Json cleared_thread =
      CliJson({"threads", "update", thread_id, "--clear-metadata"});
  EXPECT_FALSE(cleared_thread.contains("metadata")) << cleared_thread.dump();

  // --- messages ---------------------------------------------------------
  const Json message =
      CliJson({"messages", "create", thread_id, "--text", "scratch"});
  const std::string message_id = message.value("id", "");
  ASSERT_EQ(message_id.rfind("msg_", 0), 0u) << message.dump();
  EXPECT_TRUE(Contains(
      Cli({"messages", "get", thread_id, message_id}).stdout_text, "scratch"));
  const Json tagged = CliJson(
      {"messages", "update", thread_id, message_id, "--metadata", "tag=x"});
  EXPECT_EQ(tagged["metadata"]["tag"], "x");
  const std::vector<std::string> listed =
      Lines(Cli({"messages", "list", thread_id, "--order", "asc"}).stdout_text);
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_TRUE(Contains(listed[0], "user  hello"));
  EXPECT_TRUE(Contains(listed[1], message_id));
  EXPECT_EQ(Cli({"messages", "delete", thread_id, message_id}).stdout_text,
            "deleted " + message_id + "\n");
  Cli({"messages", "get", thread_id, message_id}, 1);

  // --- a streamed run, answered with the demo tools ---------------------
  const CommandResult streamed =
      Cli({"run", "--assistant", assistant_id, "--thread", thread_id,
           "--message", kQuestion, "--demo-tools"});
  EXPECT_TRUE(Contains(streamed.stdout_text, "[calling function]"))
      << streamed.stdout_text;
  EXPECT_TRUE(Contains(streamed.stdout_text, "237,500"))
      << streamed.stdout_text;
  EXPECT_TRUE(Contains(streamed.stdout_text, "[run completed]"));

  const Json runs = CliJson({"runs", "list", thread_id});
  ASSERT_EQ(runs["data"].size(), 1u) << runs.dump();
  const std::string run_id = runs["data"][0].value("id", "");
  EXPECT_TRUE(Contains(Cli({"runs", "get", thread_id, run_id}).stdout_text,
                       "status:    completed"));
  EXPECT_TRUE(Contains(Cli({"runs", "list", thread_id}).stdout_text,
                       run_id + "  completed  " + assistant_id));
  const Json run_tagged =
      CliJson({"runs", "update", thread_id, run_id, "--metadata", "r=1"});
  EXPECT_EQ(run_tagged["metadata"]["r"], "1");

  const Json steps =
      CliJson({"runs", "steps", thread_id, run_id, "--order", "asc"});
  ASSERT_GE(steps["data"].size(), 2u) << steps.dump();
  const std::string tool_step_id = steps["data"][0].value("id", "");
  const CommandResult step =
      Cli({"runs", "step", thread_id, run_id, tool_step_id});
  EXPECT_TRUE(Contains(step.stdout_text, "type:    tool_calls"))
      << step.stdout_text;
  EXPECT_TRUE(Contains(step.stdout_text, "get_stock_price("));
  EXPECT_TRUE(Contains(step.stdout_text, "-> {\"price\": 237.5"));

  // The whole log, then only its end.
  const std::vector<std::string> events =
      Lines(Cli({"runs", "events", thread_id, run_id}).stdout_text);
  ASSERT_GE(events.size(), 5u);
  EXPECT_TRUE(Contains(events.front(), "1  thread.run.created  " + run_id))
      << events.front();
  EXPECT_TRUE(Contains(events[events.size() - 2], "thread.run.completed"));
  const std::string last_sequence =
      events.back().substr(0, events.back().find(' '));
  EXPECT_EQ(events.back(), last_sequence + "  done");
  const std::string before_end = std::to_string(std::stoll(last_sequence) - 2);
  const CommandResult tail = Cli(
      {"runs", "events", thread_id, run_id, "--after", before_end, "--follow"});
  ASSERT_EQ(Lines(tail.stdout_text).size(), 2u) << tail.stdout_text;
  const CommandResult json_events =
      Cli({"--json", "runs", "events", thread_id, run_id});
  EXPECT_EQ(Lines(json_events.stdout_text).size(), events.size());

  // --- a non-streamed run answered with `runs submit` -------------------
  const Json created =
      CliJson({"runs", "create", thread_id, "--assistant", assistant_id,
               "--message", kQuestion, "--metadata", "via=cli"});
  const std::string run2_id = created.value("id", "");
  ASSERT_FALSE(run2_id.empty()) << created.dump();
  int submitted = 0;
  for (int round = 0; round < 5; ++round) {
    const Json run = WaitForRun(thread_id, run2_id,
                                {"RUN_STATUS_REQUIRES_ACTION",
                                 "RUN_STATUS_COMPLETED", "RUN_STATUS_FAILED"});
    if (run.value("status", "") != "RUN_STATUS_REQUIRES_ACTION") break;
    std::vector<std::string> submit = {"runs", "submit", thread_id, run2_id};
    for (const Json& call :
         run["required_action"]["submit_tool_outputs"]["tool_calls"]) {
      submit.push_back("--output");
      submit.push_back(call.value("id", "") +
                       R"(={"price": 237.5, "currency": "USD"})");
    }
    Cli(submit);
    ++submitted;
  }
  // The model asks for the price again: the outputs went in via the CLI.
  EXPECT_GE(submitted, 1);
  const Json finished =
      WaitForRun(thread_id, run2_id, {"RUN_STATUS_COMPLETED"});
  EXPECT_EQ(finished["metadata"]["via"], "cli");
  const std::string answer =
      Cli({"messages", "list", thread_id, "--run-id", run2_id}).stdout_text;
  EXPECT_TRUE(Contains(answer, "237,500")) << answer;

  // --- create-and-run, then cancel it while it waits for outputs ---------
  const Json started = CliJson({"threads", "create-and-run", "--assistant",
                                assistant_id, "--message", kQuestion});
  const std::string run3_id = started.value("id", "");
  const std::string thread3_id = started.value("thread_id", "");
  ASSERT_FALSE(run3_id.empty()) << started.dump();
  ASSERT_NE(thread3_id, thread_id);
  WaitForRun(thread3_id, run3_id, {"RUN_STATUS_REQUIRES_ACTION"});
  const CommandResult cancelled = Cli({"runs", "cancel", thread3_id, run3_id});
  EXPECT_TRUE(Contains(cancelled.stdout_text, "status:    cancel"))
      << cancelled.stdout_text;
  // --follow returns once the run has ended.
  const std::vector<std::string> cancel_events = Lines(
      Cli({"runs", "events", thread3_id, run3_id, "--follow"}).stdout_text);
  ASSERT_GE(cancel_events.size(), 2u);
  EXPECT_TRUE(Contains(cancel_events[cancel_events.size() - 2],
                       "thread.run.cancelled"));
  // Cancelling again: the run is over, which the gateway says.
  const CommandResult again = Cli({"runs", "cancel", thread3_id, run3_id}, 1);
  EXPECT_TRUE(Contains(again.stderr_text, "FAILED_PRECONDITION"))
      << again.stderr_text;

  // --- the tool registry ------------------------------------------------
  const CommandResult workers = Cli({"workers", "list"});
  EXPECT_TRUE(Contains(workers.stdout_text, "static-1  "))
      << workers.stdout_text;
  EXPECT_TRUE(Contains(workers.stdout_text, "  127.0.0.1:1  in_flight=0"));
  EXPECT_TRUE(Contains(workers.stdout_text, "tools=weather_lookup  static"));
  const CommandResult tools = Cli({"tools", "list"});
  EXPECT_TRUE(Contains(tools.stdout_text,
                       "weather_lookup  workers=static-1  timeout_ms=2000"))
      << tools.stdout_text;

  // --- deletes ----------------------------------------------------------
  EXPECT_EQ(Cli({"threads", "delete", thread_id}).stdout_text,
            "deleted " + thread_id + "\n");
  Cli({"threads", "get", thread_id}, 1);
  EXPECT_EQ(Cli({"assistants", "delete", assistant_id}).stdout_text,
            "deleted " + assistant_id + "\n");
  const CommandResult gone = Cli({"assistants", "get", assistant_id}, 1);
  EXPECT_TRUE(Contains(gone.stderr_text, "NOT_FOUND")) << gone.stderr_text;

  const int exit_status = gateway_.Stop();
  EXPECT_EQ(exit_status, 0) << DescribeWaitStatus(exit_status);
}

// The run fields that have their own flags (--truncation, --tool-choice)
// and one only --request-json reaches here (metadata), through the real
// gateway: `runs get` reads back what was stored, and the flag wins over the
// JSON's value of the same field. Then a thread's tool_resources updated
// alone, which keeps its metadata.
TEST_F(CliE2eTest, RunFieldsFromFlagsAndRequestJson) {
  const Json assistant = CliJson({"assistants", "create", "--model", "gpt-4o"});
  const std::string assistant_id = assistant.value("id", "");
  ASSERT_FALSE(assistant_id.empty()) << assistant.dump();
  const Json thread =
      CliJson({"threads", "create", "--message", "hello", "--metadata", "k=1"});
  const std::string thread_id = thread.value("id", "");
  ASSERT_FALSE(thread_id.empty()) << thread.dump();

  const Json created = CliJson(
      {"runs", "create", thread_id, "--assistant", assistant_id, "--truncation",
       "last:2", "--tool-choice", "none", "--request-json",
       R"({"options": {"metadata": {"source": "request-json"},
           "truncation_strategy": {"type": "TYPE_AUTO"}}})"});
  const std::string run_id = created.value("id", "");
  ASSERT_FALSE(run_id.empty()) << created.dump();
  const Json run = CliJson({"runs", "get", thread_id, run_id});
  EXPECT_EQ(run["truncation_strategy"].value("type", ""), "TYPE_LAST_MESSAGES")
      << run.dump();
  EXPECT_EQ(run["truncation_strategy"].value("last_messages", 0), 2);
  EXPECT_EQ(run["tool_choice"].value("mode", ""), "MODE_NONE") << run.dump();
  EXPECT_EQ(run["metadata"].value("source", ""), "request-json") << run.dump();
  // Let the run end before the gateway stops.
  const Json ended =
      WaitForRun(thread_id, run_id,
                 {"RUN_STATUS_COMPLETED", "RUN_STATUS_FAILED",
                  "RUN_STATUS_INCOMPLETE", "RUN_STATUS_REQUIRES_ACTION"});
  if (ended.value("status", "") == "RUN_STATUS_REQUIRES_ACTION") {
    Cli({"runs", "cancel", thread_id, run_id});
  }

  const Json updated =
      CliJson({"threads", "update", thread_id, "--tool-resources-json",
               R"({"code_interpreter": {"file_ids": ["file-abc"]}})"});
  EXPECT_EQ(updated["tool_resources"]["code_interpreter"]["file_ids"][0],
            "file-abc")
      << updated.dump();
  EXPECT_EQ(updated["metadata"].value("k", ""), "1") << updated.dump();

  const int exit_status = gateway_.Stop();
  EXPECT_EQ(exit_status, 0) << DescribeWaitStatus(exit_status);
}

// The API key goes out on every call; today's gateway (no auth configured)
// ignores it, so the command simply works. The key is never printed.
TEST_F(CliE2eTest, ApiKeyIsSentAndNeverPrinted) {
  const CommandResult listed =
      Cli({"--api-key", "sk-e2e-secret", "assistants", "list"});
  EXPECT_EQ(listed.stdout_text.find("sk-e2e-secret"), std::string::npos);
  EXPECT_EQ(listed.stderr_text.find("sk-e2e-secret"), std::string::npos);
  const int exit_status = gateway_.Stop();
  EXPECT_EQ(exit_status, 0) << DescribeWaitStatus(exit_status);
}

}  // namespace
}  // namespace assistants::test_support
