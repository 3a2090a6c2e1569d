// stock-price-worker: serves the seed tutorial's get_stock_price tool with the
// tutorial's stub prices, registered with the gateway as a tool worker.
#include <map>
#include <string>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "tool_workers/sdk/tool_worker.h"

namespace {

namespace sdk = assistants::worker_sdk;
using nlohmann::json;

// The seed's fetch_stock_price() stub.
const std::map<std::string, double>& Prices() {
  static const auto* prices = new std::map<std::string, double>{
      {"AAPL", 237.50}, {"GOOGL", 191.30}, {"MSFT", 452.80}};
  return *prices;
}

// Byte for byte what the seed's json.dumps() produces, so the model sees the
// same output as with the tutorial's client-side handler.
absl::StatusOr<json> GetStockPrice(const json& arguments,
                                   const sdk::CallContext&) {
  auto ticker = arguments.find("ticker");
  if (ticker == arguments.end() || !ticker->is_string()) {
    return absl::InvalidArgumentError("\"ticker\" must be a string");
  }
  const std::string symbol = ticker->get<std::string>();
  auto price = Prices().find(symbol);
  if (price == Prices().end()) {
    // An output, not an error: the seed's advice is to let the model read
    // the failure and explain it.
    return json(absl::StrCat(R"({"error": )",
                             json("Unknown ticker: " + symbol).dump(), "}"));
  }
  return json(absl::StrCat(R"({"price": )", json(price->second).dump(),
                           R"(, "currency": "USD"})"));
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Serves the get_stock_price tool.\nUsage: stock-price-worker "
      "--gateway=HOST:PORT --token_file=PATH [--listen=HOST:PORT]");
  absl::ParseCommandLine(argc, argv);
  absl::StatusOr<sdk::WorkerOptions> options = sdk::WorkerOptionsFromFlags();
  if (!options.ok()) {
    std::fprintf(stderr, "stock-price-worker: %s\n",
                 std::string(options.status().message()).c_str());
    return 1;
  }
  sdk::ToolWorker worker(*std::move(options));
  worker.AddTool({
      .name = "get_stock_price",
      .description = "Get the current stock price for a given ticker symbol.",
      .parameters = json::parse(R"({
        "type": "object",
        "properties": {
          "ticker": {
            "type": "string",
            "description": "Stock ticker symbol, e.g. AAPL"
          }
        },
        "required": ["ticker"]
      })"),
      .idempotent = true,
      .handler = GetStockPrice,
  });
  return worker.RunUntilSignal("stock-price-worker");
}
