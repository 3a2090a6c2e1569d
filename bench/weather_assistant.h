// The assistant the unary benchmark creates in every gateway and that
// bench-echo-server returns for GetAssistant: one definition, so the two
// answer the same shape (loadgen prints both response sizes).
#ifndef BENCH_WEATHER_ASSISTANT_H_
#define BENCH_WEATHER_ASSISTANT_H_

#include <google/protobuf/util/json_util.h>

#include "assistants/v1/assistant.pb.h"

namespace assistants::bench {

// Sets the model, name, instructions and the get_weather function tool on
// `target` (a v1::Assistant or a v1::CreateAssistantRequest). False only if
// the tool's JSON Schema constant does not parse.
template <typename AssistantLike>
bool FillWeatherAssistant(AssistantLike* target) {
  target->set_model("gpt-4o");
  target->set_name("Weather helper");
  target->set_instructions(
      "You are a concise weather assistant. When the user asks about the "
      "weather, call get_weather with the city they name, then answer in one "
      "or two sentences. Say so when the tool fails; never guess a forecast.");
  v1::FunctionDefinition* function =
      target->add_tools()->mutable_function()->mutable_function();
  function->set_name("get_weather");
  function->set_description("Current weather of a city.");
  return google::protobuf::util::JsonStringToMessage(
             R"({"type":"object","properties":{"city":{"type":"string",)"
             R"("description":"City name, e.g. Paris"},"unit":{"type":)"
             R"("string","enum":["celsius","fahrenheit"]}},)"
             R"("required":["city"]})",
             function->mutable_parameters())
      .ok();
}

}  // namespace assistants::bench

#endif  // BENCH_WEATHER_ASSISTANT_H_
