// Answers to a run's requires_action: the outputs of the function calls the
// model asked for, from an --outputs file, from the seed tutorial's local
// functions (--demo-tools), or typed by the user one line per call.
#ifndef CLI_TOOL_ANSWERS_H_
#define CLI_TOOL_ANSWERS_H_

#include <istream>
#include <map>
#include <optional>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "assistants/v1/run.pb.h"

namespace assistants {
namespace cli {

// Function name -> the output string submitted for every call of it.
using OutputsByFunction = std::map<std::string, std::string>;

// Parses an --outputs file: a JSON object mapping a function name to its
// output. A string value is submitted as is; any other JSON value is
// submitted as its compact JSON text, keys in the file's order
// ({"get_stock_price": {"price": 237.5}} -> "{\"price\":237.5}").
// INVALID_ARGUMENT when the text is not a JSON object.
absl::StatusOr<OutputsByFunction> ParseOutputsJson(absl::string_view json);

// The seed tutorial's local functions, with the seed's exact output text
// (Python's json.dumps):
//   get_stock_price {ticker}   {"price": 237.5, "currency": "USD"} from the
//                              seed's table (AAPL 237.50, GOOGL 191.30,
//                              MSFT 452.80; other tickers 0.0)
//   calculator / calculate {expression}
//                              {"result": 237500.0}: + - * / and parentheses
//   anything else              {"error": "Unknown function: NAME"}
// Arguments that are not a JSON object with the expected string field get
// {"error": "..."} too: the seed's advice is to report failures in the
// output so the model can recover, never to abort the run.
std::string DemoToolOutput(absl::string_view name, absl::string_view arguments);

// {"error": "Unknown function: NAME"}, as the seed's handle_tool_calls.
std::string UnknownFunctionOutput(absl::string_view name);

// Evaluates + - * / with parentheses, unary signs and decimal numbers, with
// Python's typing: integers stay integers except through "/", so "2 + 3" is
// 5 and "1000 * 237.50" is 237500.0. The number's JSON text (Python repr)
// or INVALID_ARGUMENT (syntax, division by zero).
absl::StatusOr<std::string> EvaluateArithmetic(absl::string_view expression);

// Python's repr of a float, which json.dumps uses: the shortest text that
// reads back exactly, with ".0" on integral values ("237.5", "237500.0",
// "1e+16", "1.5e-05").
std::string PythonFloat(double value);

// Where the answers come from, in order: `outputs` (by function name), the
// demo functions, then either an {"error": "Unknown function"} output (when
// `outputs` was given: scripted runs never block on a prompt) or a prompt.
struct ToolAnswerSources {
  std::optional<OutputsByFunction> outputs;
  bool demo_tools = false;
  // The interactive fallback: the prompt is written to `prompt_out`, one
  // line is read from `prompt_in` per call. Null: no prompting.
  std::istream* prompt_in = nullptr;
  std::ostream* prompt_out = nullptr;
};

// The output to submit for `call`. FAILED_PRECONDITION when it must be
// prompted for and the input is closed (or there is none).
absl::StatusOr<std::string> AnswerToolCall(const ToolAnswerSources& sources,
                                           const v1::RequiredToolCall& call);

}  // namespace cli
}  // namespace assistants

#endif  // CLI_TOOL_ANSWERS_H_
