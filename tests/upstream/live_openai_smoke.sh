#!/usr/bin/env bash
# Live smoke test against the real OpenAI API: runs upstream-probe for the
# seed tutorial's two turns (--scenario=seed: the model calls
# get_stock_price; --scenario=tool_outputs: it answers from the function
# output) on both wire APIs and checks that each finished (exit 0).
#   live_openai_smoke.sh UPSTREAM_PROBE_BIN
# Needs OPENAI_API_KEY; OPENAI_BASE_URL (default https://api.openai.com/v1)
# and OPENAI_SMOKE_MODEL (default gpt-4o-mini) are optional. Without a key
# it exits 77, which CTest reports as skipped (SKIP_RETURN_CODE 77): CI has
# no key, and the fidelity test covers the wire formats offline.
set -uo pipefail

if [ "$#" -ne 1 ]; then
  echo "usage: $0 UPSTREAM_PROBE_BIN" >&2
  exit 2
fi
probe="$1"
if [ -z "${OPENAI_API_KEY:-}" ]; then
  echo "SKIPPED: OPENAI_API_KEY not set"
  exit 77
fi
base_url="${OPENAI_BASE_URL:-https://api.openai.com/v1}"
model="${OPENAI_SMOKE_MODEL:-gpt-4o-mini}"

failed=0
for api in responses chat; do
  for scenario in seed tool_outputs; do
    echo "==> upstream-probe --api=$api --scenario=$scenario (model $model, $base_url)"
    # The key travels in the environment (the probe's default), never on the
    # command line where ps and logs would show it.
    if "$probe" --api="$api" --scenario="$scenario" --model="$model" \
        --base_url="$base_url" --timeout_s=120; then
      echo "ok: $api $scenario"
    else
      echo "FAILED: $api $scenario (exit $?)"
      failed=1
    fi
  done
done
exit "$failed"
