// Compact text forms of a model turn's items, so tests compare whole
// conversations with one ElementsAre: "user:hi", "assistant:hello",
// "call:call_1:get_weather:{...}", "output:call_1:{...}".
#ifndef TESTS_RUNS_TURN_TEXT_H_
#define TESTS_RUNS_TURN_TEXT_H_

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "upstream/provider.h"

namespace assistants::runs::testing {

inline std::string ItemText(const upstream::TurnItem& item) {
  using Kind = upstream::TurnItem::Kind;
  switch (item.kind) {
    case Kind::kMessage: {
      std::string text;
      for (const v1::MessageContent& part : item.content) {
        if (part.has_text()) absl::StrAppend(&text, part.text().value());
      }
      return absl::StrCat(
          item.role == v1::MESSAGE_ROLE_ASSISTANT ? "assistant:" : "user:",
          text);
    }
    case Kind::kFunctionCall:
      return absl::StrCat("call:", item.call_id, ":", item.name, ":",
                          item.arguments);
    case Kind::kFunctionCallOutput:
      return absl::StrCat("output:", item.call_id, ":", item.output);
  }
  return "?";
}

inline std::vector<std::string> ItemTexts(const upstream::Turn& turn) {
  std::vector<std::string> out;
  for (const upstream::TurnItem& item : turn.items) {
    out.push_back(ItemText(item));
  }
  return out;
}

// How many tool outputs the turn carries back to the model.
inline int ToolOutputCount(const upstream::Turn& turn) {
  int count = 0;
  for (const std::string& item : ItemTexts(turn)) {
    count += absl::StartsWith(item, "output:") ? 1 : 0;
  }
  return count;
}

}  // namespace assistants::runs::testing

#endif  // TESTS_RUNS_TURN_TEXT_H_
