#!/usr/bin/env bash
# A private PostgreSQL 15 cluster for the tests (PgStore, the client, the
# cluster e2e tests): a throwaway data directory under /tmp, trust auth,
# listening on 127.0.0.1 only, durability off (tests never survive a crash of
# the database itself).
#   scripts/pg-test-server.sh start   wipes and starts it; prints its URL
#   scripts/pg-test-server.sh stop    stops it
# PGTEST_PORT (default 54329) and PGTEST_DIR (default /tmp/assistants-pgtest)
# override where it lives. As root, the cluster runs as the `postgres` user:
# PostgreSQL refuses to run as root.
set -euo pipefail

port="${PGTEST_PORT:-54329}"
dir="${PGTEST_DIR:-/tmp/assistants-pgtest}"
data="$dir/data"

bindir="${PGTEST_BINDIR:-}"
if [ -z "$bindir" ]; then
  for candidate in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
    if [ -x "$candidate/initdb" ]; then bindir="$candidate"; break; fi
  done
fi
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  echo "pg-test-server: initdb not found (install postgresql-15)" >&2
  exit 1
fi

# Runs a PostgreSQL tool as the cluster's owner.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "${1:-}" in
  start)
    if [ -f "$data/postmaster.pid" ]; then
      as_owner "$bindir/pg_ctl" -D "$data" stop -m immediate >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$dir"; fi
    as_owner "$bindir/initdb" -D "$data" -U postgres --auth=trust \
      --encoding=UTF8 --locale=C >"$dir/initdb.log" 2>&1 || {
      cat "$dir/initdb.log" >&2
      exit 1
    }
    cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$data'
max_connections = 300
shared_buffers = 64MB
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
    as_owner "$bindir/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 start \
      >/dev/null || {
      cat "$dir/server.log" >&2
      exit 1
    }
    echo "postgresql://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    if [ -f "$data/postmaster.pid" ]; then
      as_owner "$bindir/pg_ctl" -D "$data" stop -m fast >/dev/null
    fi
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
