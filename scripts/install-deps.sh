#!/usr/bin/env bash
# Installs every Debian 12 package the gateway needs to build, test and run.
# Idempotent: packages already present are skipped; safe to run repeatedly.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git ccache
  libgrpc++-dev libgrpc-dev protobuf-compiler protobuf-compiler-grpc
  libprotobuf-dev libabsl-dev
  libcurl4-openssl-dev nlohmann-json3-dev libssl-dev
  libgtest-dev libgmock-dev googletest
  libsqlite3-dev sqlite3 libevent-dev
  libpq-dev postgresql-15
  openssl
  prometheus-cpp-dev
  golang-github-gogo-googleapis-dev
  python3 python3-grpcio python3-protobuf
  clang-format clang-tidy
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "install-deps: all Debian packages present"
fi

# buf (the proto linter) comes from the npm registry. The machine image ships
# Node.js with npm; Debian's nodejs + npm are the fallback where it does not.
if ! command -v npm >/dev/null 2>&1; then
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
