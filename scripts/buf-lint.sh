#!/usr/bin/env bash
# Lints proto/ with buf (STANDARD rules), installing buf from the npm registry
# into tools/buf/node_modules on first use.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
buf="$root/tools/buf/node_modules/.bin/buf"
if [ ! -x "$buf" ]; then
  (cd "$root/tools/buf" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
cd "$root/proto"
"$buf" lint
echo "buf lint: clean"
