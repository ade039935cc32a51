#!/usr/bin/env bash
# A throw-away PostgreSQL for the tests: its own cluster in a private folder, listening on 127.0.0.1 on a free
# port (and a socket in that folder), trust authentication for loopback only, durability off (nothing in it is
# worth keeping) unless ANCHORAGE_TEST_POSTGRES_DURABLE=1 (for benchmarks).
#
#   scripts/test-postgres.sh start [DIR]   prints the connection URL for ANCHORAGE_TEST_POSTGRES_URL
#   scripts/test-postgres.sh pause [DIR]   stops the server (fast shutdown), keeping DIR, for outage tests
#   scripts/test-postgres.sh resume [DIR]  starts it again on the same data, port and settings
#   scripts/test-postgres.sh stop [DIR]    stops the cluster and removes DIR
#
# DIR defaults to $TMPDIR/anchorage-test-postgres. Installs PostgreSQL with apt-get when it is missing and
# running as root on a Debian-like system. initdb refuses to run as root, so as root the cluster belongs to
# the `postgres` system user the Debian package creates. The package's own cluster and service are not used.
set -euo pipefail

command=${1:-}
dir=${2:-${TMPDIR:-/tmp}/anchorage-test-postgres}

fail() {
  echo "test-postgres: $*" >&2
  exit 1
}

# The newest server binaries: Debian's versioned folders first, then whatever is on PATH.
find_bin_dir() {
  local candidate
  candidate=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [[ -n "$candidate" && -x "$candidate/initdb" && -x "$candidate/pg_ctl" ]]; then
    echo "$candidate"
  elif command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
  fi
}

ensure_installed() {
  bin_dir=$(find_bin_dir)
  [[ -n "$bin_dir" ]] && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "test-postgres: installing postgresql" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    bin_dir=$(find_bin_dir)
    [[ -n "$bin_dir" ]] || fail "initdb and pg_ctl still missing after apt-get install postgresql"
    return 0
  fi
  fail "PostgreSQL server binaries (initdb, pg_ctl) are missing; install them, e.g. on Debian/Ubuntu:
  sudo apt-get install --no-install-recommends postgresql"
}

# Runs a server binary as the cluster's owner: the postgres system user when we are root, else ourselves.
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  node -e 'const s = require("node:net").createServer(); s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

start() {
  ensure_installed
  if [[ -e "$dir/data/postmaster.pid" ]]; then
    fail "a cluster is already running in $dir (stop it first: scripts/test-postgres.sh stop $dir)"
  fi
  mkdir -p "$dir"
  chmod 700 "$dir"
  if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || fail "no postgres system user to own the cluster (the Debian package creates it)"
    chown postgres: "$dir"
    runuser -u postgres -- test -w "$dir" || fail "the postgres user cannot reach $dir (choose a DIR, or TMPDIR, it can traverse)"
  fi

  if ! as_owner "$bin_dir/initdb" --pgdata="$dir/data" --username=anchorage --auth=trust --encoding=UTF8 \
    --locale=C --no-sync --no-instructions >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    fail "initdb failed"
  fi
  # Only the socket in our folder and loopback TCP may connect at all.
  as_owner tee "$dir/data/pg_hba.conf" >/dev/null <<'EOF'
local all all trust
host all all 127.0.0.1/32 trust
EOF

  local port
  port=$(free_port)
  local options="-c listen_addresses=127.0.0.1 -p $port -k $dir"
  # Benchmarks compare against SQLite's fully synced commits, so they ask for a server that syncs too.
  if [[ "${ANCHORAGE_TEST_POSTGRES_DURABLE:-}" != "1" ]]; then
    options="$options -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  fi
  # Kept beside the cluster so that `resume` starts the server exactly as `start` did.
  echo "$options" >"$dir/server.options"
  echo "$port" >"$dir/server.port"
  start_server
  echo "postgres://anchorage@127.0.0.1:$port/postgres"
}

start_server() {
  if ! as_owner "$bin_dir/pg_ctl" --pgdata="$dir/data" --log="$dir/server.log" --wait --timeout=30 \
    --options="$(cat "$dir/server.options")" start >/dev/null 2>&1; then
    cat "$dir/server.log" >&2 || true
    fail "the server did not start"
  fi
}

pause() {
  [[ -e "$dir/data/postmaster.pid" ]] || fail "no cluster is running in $dir"
  bin_dir=$(find_bin_dir)
  [[ -n "$bin_dir" ]] || fail "pg_ctl not found, cannot pause the cluster in $dir"
  # Fast: the server ends every session (as a crash or a failover would) and shuts down cleanly.
  as_owner "$bin_dir/pg_ctl" --pgdata="$dir/data" --mode=fast --wait --timeout=30 stop >/dev/null 2>&1 ||
    fail "the server did not stop"
}

resume() {
  [[ -e "$dir/server.options" ]] || fail "no paused cluster in $dir (start one: scripts/test-postgres.sh start $dir)"
  [[ -e "$dir/data/postmaster.pid" ]] && fail "the cluster in $dir is already running"
  bin_dir=$(find_bin_dir)
  [[ -n "$bin_dir" ]] || fail "pg_ctl not found, cannot resume the cluster in $dir"
  start_server
  echo "postgres://anchorage@127.0.0.1:$(cat "$dir/server.port")/postgres"
}

stop() {
  if [[ -e "$dir/data/postmaster.pid" ]]; then
    bin_dir=$(find_bin_dir)
    [[ -n "$bin_dir" ]] || fail "pg_ctl not found, cannot stop the cluster in $dir"
    # Immediate: nothing in it needs a clean shutdown.
    as_owner "$bin_dir/pg_ctl" --pgdata="$dir/data" --mode=immediate --wait stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}

case "$command" in
  start) start ;;
  pause) pause ;;
  resume) resume ;;
  stop) stop ;;
  *) fail "usage: scripts/test-postgres.sh start|pause|resume|stop [DIR]" ;;
esac
