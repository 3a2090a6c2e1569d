// The seed tutorial's one-function-call run as the gateway streams it
// (OpenAI's event order), and builders for the events the CLI tests script.
#ifndef TESTS_CLI_SEED_EVENTS_H_
#define TESTS_CLI_SEED_EVENTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "assistants/v1/event.pb.h"
#include "assistants/v1/run.pb.h"

namespace assistants::cli::cli_test {

inline constexpr char kThreadId[] = "thread_1";
inline constexpr char kRunId[] = "run_1";
inline constexpr char kCallId[] = "call_1";

// A run of kThreadId / kRunId with `status`; requires_action carries the
// seed's get_stock_price({"ticker":"AAPL"}) call kCallId.
v1::Run SeedRun(v1::RunStatus status);

v1::RunEvent RunEvent(int64_t sequence, const std::string& name,
                      const v1::Run& run);
v1::RunEvent StepEvent(int64_t sequence, const std::string& name,
                       const v1::RunStep& step);
v1::RunEvent MessageEvent(int64_t sequence, const std::string& name,
                          const v1::Message& message);
// thread.run.step.delta with one function call delta.
v1::RunEvent FunctionDelta(int64_t sequence, const std::string& step_id,
                           int index, const std::string& call_id,
                           const std::string& name,
                           const std::string& arguments);
// thread.run.step.delta with one code_interpreter input fragment.
v1::RunEvent CodeDelta(int64_t sequence, const std::string& step_id, int index,
                       const std::string& input);
// thread.message.delta with one text fragment of content part `index`.
v1::RunEvent TextDelta(int64_t sequence, const std::string& message_id,
                       int index, const std::string& text);
v1::RunEvent DoneEvent(int64_t sequence);

// An assistant message of the run with one text part (empty: no content).
v1::Message AssistantMessage(const std::string& id, const std::string& text);

// The 22 events of the seed's run, sequences 1..22: the model calls
// get_stock_price for AAPL (requires_action at sequence 9), then answers in
// two text deltas (sequences 17 and 18); `done` is 22.
std::vector<v1::RunEvent> SeedFunctionCallEvents();

// The sequence of the seed run's requires_action event.
inline constexpr int64_t kSeedRequiresActionSequence = 9;

// The answer the seed run streams.
inline constexpr char kSeedAnswer[] =
    "AAPL is trading at $237.50, so 1000 shares are worth $237,500.00.";

// What RunPrinter prints for SeedFunctionCallEvents(): the seed handler's
// output plus the pending call and the final status.
inline constexpr char kSeedPrinted[] =
    "\n[calling function]\n"
    "  -> get_stock_price({\"ticker\":\"AAPL\"}) id=call_1\n"
    "\nassistant > AAPL is trading at $237.50, so 1000 shares are worth "
    "$237,500.00.\n"
    "[run completed]\n";

// What `assistantsctl run --demo-tools` prints for the seed's run: the
// printer's rendering plus the output it submitted.
inline constexpr char kSeedStreamed[] =
    "\n[calling function]\n"
    "  -> get_stock_price({\"ticker\":\"AAPL\"}) id=call_1\n"
    "  <- get_stock_price: {\"price\": 237.5, \"currency\": \"USD\"}\n"
    "\nassistant > AAPL is trading at $237.50, so 1000 shares are worth "
    "$237,500.00.\n"
    "[run completed]\n";

}  // namespace assistants::cli::cli_test

#endif  // TESTS_CLI_SEED_EVENTS_H_
