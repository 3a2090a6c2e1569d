#!/usr/bin/env bash
# Runs the fidelity test (fidelity.test.mjs) with Node's test runner.
#   run.sh FAKE_OPENAI_BIN UPSTREAM_PROBE_BIN REFERENCE_JSON
# FIDELITY_REFERENCE=path overrides REFERENCE_JSON. A missing reference is a
# failure reported by the test itself, never a skip. Installs the pinned npm
# dependencies (ajv, ajv-formats) into tests/fidelity/node_modules on first
# use, and again whenever package-lock.json changes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if [ "$#" -ne 3 ]; then
  echo "usage: $0 FAKE_OPENAI_BIN UPSTREAM_PROBE_BIN REFERENCE_JSON" >&2
  exit 2
fi
for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "FAILED: $tool is not installed (scripts/install-deps.sh installs Node.js)" >&2
    exit 1
  fi
done

cd "$here"
# npm writes node_modules/.package-lock.json after a successful install; it
# being older than the lockfile means the pins changed since.
if [ ! -f node_modules/.package-lock.json ] ||
   [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "fidelity: installing npm dependencies into $here/node_modules" >&2
  if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error >&2
  else
    npm install --no-audit --no-fund --loglevel=error >&2
  fi
fi

export FIDELITY_FAKE_BIN="$1"
export FIDELITY_PROBE_BIN="$2"
export FIDELITY_REFERENCE_DEFAULT="$3"
exec node --test --test-reporter=spec fidelity.test.mjs
