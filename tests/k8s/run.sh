#!/usr/bin/env bash
# Runs the Kubernetes manifest and Dockerfile checks (k8s.test.mjs) with
# Node's test runner.
#   run.sh [BINARY...]
# The optional binaries (the gateway image's, built by CMake) let the test
# check the Dockerfile installs every runtime library they load. Installs
# the pinned npm dependencies (kubernetes-models, yaml) into
# k8s/validate/node_modules on first use, and again whenever
# package-lock.json changes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
validate="$here/../../k8s/validate"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "FAILED: $tool is not installed (scripts/install-deps.sh installs Node.js)" >&2
    exit 1
  fi
done

cd "$validate"
# npm writes node_modules/.package-lock.json after a successful install; it
# being older than the lockfile means the pins changed since.
if [ ! -f node_modules/.package-lock.json ] ||
   [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "k8s: installing npm dependencies into $validate/node_modules" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi

K8S_BINARIES="$(IFS=:; echo "$*")"
export K8S_BINARIES
exec node --test --test-reporter=spec "$here/k8s.test.mjs"
