#!/usr/bin/env bash
# The seed scenario through every client we ship, against real processes:
# fake-openai, the gateway (SQLite in a temp dir), then assistantsctl run
# (streamed and --poll), the C++ example and the Python example. Each must
# finish the run and print the answer computed from the tool output
# (1000 x 237.50 = 237,500).
# Usage: seed_clients_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build="$1"
src="$2"
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

listening_on() {
  for _ in $(seq 1 200); do
    grep -q "listening on" "$1" 2>/dev/null && break
    sleep 0.05
  done
  sed -n 's/.*listening on \([0-9.]*:[0-9]*\).*/\1/p' "$1" | head -1
}

"$build/upstream/fake-openai" --listen=127.0.0.1:0 2>"$work/fake.log" &
pids+=($!)
fake="$(listening_on "$work/fake.log")"
[ -n "$fake" ] || { cat "$work/fake.log"; exit 1; }
OPENAI_BASE_URL="http://$fake/v1" OPENAI_API_KEY=sk-fake \
  "$build/service/assistants-gateway" --listen=127.0.0.1:0 \
  --db="$work/assistants.db" 2>"$work/gateway.log" &
pids+=($!)
target="$(listening_on "$work/gateway.log")"
[ -n "$target" ] || { cat "$work/gateway.log"; exit 1; }

ctl() { "$build/cli/assistantsctl" --target="$target" "$@"; }
tools='[{"type":"code_interpreter"},{"type":"function","function":{"name":"get_stock_price","description":"Get the current stock price for a given ticker symbol.","parameters":{"type":"object","properties":{"ticker":{"type":"string"}},"required":["ticker"]}}}]'
assistant="$(ctl --json assistants create --model gpt-4o --tools-json "$tools" \
  | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
question="What's the stock price of AAPL, and calculate what 1000 shares would be worth?"

check() {
  local name="$1" out="$2"
  if ! grep -q "237,500" "$out"; then
    echo "FAIL: $name did not print the answer:"; cat "$out"; exit 1
  fi
  echo "ok: $name"
}

ctl run --assistant "$assistant" --message "$question" --demo-tools \
  >"$work/stream.out" 2>&1
grep -q "\[calling function\]" "$work/stream.out" || { cat "$work/stream.out"; exit 1; }
check "assistantsctl run (streamed)" "$work/stream.out"

ctl run --assistant "$assistant" --message "$question" --demo-tools --poll \
  --poll-interval-ms 50 >"$work/poll.out" 2>&1
check "assistantsctl run --poll" "$work/poll.out"

"$build/examples/seed_agent" --target="$target" >"$work/cpp.out" 2>&1
check "examples/cpp seed_agent" "$work/cpp.out"

"$src/examples/python/run.sh" --target "$target" >"$work/py.out" 2>&1
check "examples/python seed_agent.py" "$work/py.out"
