#!/usr/bin/env bash
# Runs every test: installs dependencies, builds with warnings as errors,
# runs the whole suite (unit, service, end-to-end, Python client) in a normal
# build and again under AddressSanitizer + UndefinedBehaviorSanitizer, then
# the contract and style checks (buf lint, clang-format). PostgreSQL tests use
# $ASSISTANTS_TEST_PG_URL when set, else a private server this script starts
# (scripts/pg-test-server.sh) and stops on exit.
#   scripts/test.sh            everything (what .ci/run calls)
#   SKIP_SANITIZE=1 scripts/test.sh   skip the sanitizer pass (local speed)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

step() { printf '\n==> %s\n' "$*"; }

# Compiler cache keyed on paths relative to the checkout, so a fresh clone in
# another folder (CI) reuses earlier builds.
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1

step "dependencies"
./scripts/install-deps.sh

step "lint: clang-format"
./scripts/check-format.sh

step "lint: buf (proto/, STANDARD rules)"
./scripts/buf-lint.sh

step "build (RelWithDebInfo, -Werror)"
./scripts/build.sh "$root/build"

# PostgreSQL for the PostgreSQL tests (store, client, cluster e2e): a private
# server started here unless the caller points at one already.
if [ -z "${ASSISTANTS_TEST_PG_URL:-}" ]; then
  step "PostgreSQL test server"
  ASSISTANTS_TEST_PG_URL="$(./scripts/pg-test-server.sh start)"
  trap './scripts/pg-test-server.sh stop || true' EXIT
  echo "$ASSISTANTS_TEST_PG_URL"
fi
export ASSISTANTS_TEST_PG_URL

step "tests"
ctest --test-dir "$root/build" --output-on-failure -j "$(nproc)" --timeout 300

if [ "${SKIP_SANITIZE:-0}" != "1" ]; then
  step "build (ASan + UBSan)"
  ./scripts/build.sh "$root/build-asan" -DASSISTANTS_SANITIZE=ON
  step "tests under ASan + UBSan"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:print_suppressions=0" \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$root/build-asan" --output-on-failure -j "$(nproc)" --timeout 600
fi

step "all checks passed"
