#!/usr/bin/env bash
# A throwaway PostgreSQL (15, 16 or 17) and Redis for local runs and tests, without Docker.
#
#   stack.sh start [--dir DIR] [--pg-port N] [--redis-port N] [--fast] [--watch-pid PID]
#                  [--tls CERTS]
#   stack.sh stop  [--dir DIR] [--purge]   (--purge also deletes the data)
#   stack.sh env   [--dir DIR]      print DATABASE_URL and REDIS_URL for the running stack
#   stack.sh deps                   install what is missing (redis-server, PostgreSQL, a C
#                                   toolchain for building the server, openssl for tests)
#
# DIR defaults to target/dinq-local in the repository. PostgreSQL runs from Debian's
# binaries in /usr/lib/postgresql/N/bin: the newest installed of 15, 16 and 17 (or the
# version an existing data directory was made with), else Debian's default `postgresql`
# package is installed and used; PG_BIN overrides. It runs as the `postgres` user when
# started by root, with trust auth on 127.0.0.1 only. Redis comes from Debian's
# redis-server, installed when missing. When `cc` is missing, gcc and libc6-dev are
# installed (cargo links with cc, and ring builds C code). --fast turns off fsync (tests). --watch-pid stops the stack once that
# process exits (the test harness uses it so nothing outlives a test run).
# --tls CERTS serves TLS only, with CERTS/server.crt and CERTS/server.key (issued by
# CERTS/ca.crt): PostgreSQL refuses unencrypted connections over TCP (hostssl in pg_hba.conf)
# and Redis listens on its TLS port alone; `env` then prints verify-full settings for
# `localhost`.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
PG_BIN=${PG_BIN:-}

cmd=${1:-}
[ -n "$cmd" ] && shift
dir="$repo/target/dinq-local"
pg_port=5433
redis_port=6380
fast=0
watch_pid=""
purge=0
tls=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    --pg-port) pg_port=$2; shift 2 ;;
    --redis-port) redis_port=$2; shift 2 ;;
    --fast) fast=1; shift ;;
    --watch-pid) watch_pid=$2; shift 2 ;;
    --purge) purge=1; shift ;;
    --tls) tls=$(cd "$2" && pwd); shift 2 ;;
    *) echo "stack.sh: unknown option $1" >&2; exit 64 ;;
  esac
done

log() { echo "stack.sh: $*" >&2; }

# Runs a command as the postgres user when we are root (initdb refuses to run as root).
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# find_pg_bin MAJOR…: sets PG_BIN to the binaries of the first of these major versions
# that is installed; false when none is. `any` stands for every installed version, newest
# first.
find_pg_bin() {
  local v
  for v in "$@"; do
    [ "$v" = any ] && v=$(ls /usr/lib/postgresql 2>/dev/null | sort -rn | tr '\n' ' ')
    for v in $v; do
      [ -x "/usr/lib/postgresql/$v/bin/initdb" ] && { PG_BIN=/usr/lib/postgresql/$v/bin; return 0; }
    done
  done
  return 1
}

ensure_packages() {
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
  # The TLS tests make their certificates with it.
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  if [ -z "$PG_BIN" ] && ! find_pg_bin 17 16 15; then
    missing+=(postgresql postgresql-contrib)
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
      log "missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root"
      exit 69
    fi
    log "installing ${missing[*]} from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  [ -n "$PG_BIN" ] || find_pg_bin 17 16 15 any \
    || { log "no PostgreSQL binaries in /usr/lib/postgresql"; exit 69; }
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
  fi
}

start() {
  ensure_packages
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/ports.env" ] && stack_running; then
    log "already running in $dir"
    print_env
    return
  fi
  # The data directory must be reachable by the postgres user; fall back to /tmp when a
  # parent directory is private.
  local pgdata="$dir/pg"
  if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$dir" 2>/dev/null; then
    pgdata="/tmp/dinq-pg-$(echo "$dir" | md5sum | cut -c1-12)"
    log "postgres cannot reach $dir; keeping its data in $pgdata"
  fi
  local sockdir="$pgdata.sock"
  if [ -f "$pgdata/PG_VERSION" ] && [ "$PG_BIN" != "/usr/lib/postgresql/$(cat "$pgdata/PG_VERSION")/bin" ]; then
    # Data made by another major version: use that version's binaries when present.
    find_pg_bin "$(cat "$pgdata/PG_VERSION")" \
      || { log "$pgdata holds PostgreSQL $(cat "$pgdata/PG_VERSION") data; delete it or install that version"; exit 69; }
  fi
  mkdir -p "$pgdata" "$sockdir"
  [ "$(id -u)" = 0 ] && chown postgres: "$pgdata" "$sockdir" && chmod 700 "$pgdata"
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    as_pg "$PG_BIN/initdb" -D "$pgdata" --auth=trust --username=postgres \
      --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || { log "initdb failed, see $dir/initdb.log"; cat "$dir/initdb.log" >&2; exit 1; }
  fi
  local opts="-p $pg_port -k $sockdir -c listen_addresses=127.0.0.1 -c max_connections=600"
  opts="$opts -c shared_buffers=256MB"
  if [ -n "$tls" ]; then
    # The key must belong to the server's user and be private; relative paths are read
    # from the data directory.
    cp "$tls/server.crt" "$tls/server.key" "$pgdata/"
    chmod 600 "$pgdata/server.key"
    [ "$(id -u)" = 0 ] && chown postgres: "$pgdata/server.crt" "$pgdata/server.key"
    printf '%s\n' "local all all trust" "hostssl all all 127.0.0.1/32 trust" \
      "hostssl all all ::1/128 trust" >"$pgdata/pg_hba.conf"
    [ "$(id -u)" = 0 ] && chown postgres: "$pgdata/pg_hba.conf"
    opts="$opts -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"
  fi
  if [ "$fast" = 1 ]; then
    opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  fi
  touch "$dir/postgres.log"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir/postgres.log"
  as_pg "$PG_BIN/pg_ctl" -D "$pgdata" -l "$dir/postgres.log" -o "$opts" -w -t 60 start >/dev/null \
    || { log "PostgreSQL did not start, see $dir/postgres.log"; tail -20 "$dir/postgres.log" >&2; exit 1; }
  "$PG_BIN/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'dinq'" | grep -q 1 \
    || "$PG_BIN/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -qc "CREATE DATABASE dinq" >/dev/null

  local listen=(--port "$redis_port")
  if [ -n "$tls" ]; then
    listen=(--port 0 --tls-port "$redis_port" --tls-cert-file "$tls/server.crt"
      --tls-key-file "$tls/server.key" --tls-ca-cert-file "$tls/ca.crt" --tls-auth-clients no)
  fi
  redis-server "${listen[@]}" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize yes --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
  for _ in $(seq 1 50); do
    redis_ping "$redis_port" "$tls" && break
    sleep 0.1
  done
  redis_ping "$redis_port" "$tls" || { log "Redis did not start, see $dir/redis.log"; exit 1; }

  cat >"$dir/ports.env" <<EOF
PGDATA_DIR=$pgdata
PG_BIN=$PG_BIN
PG_PORT=$pg_port
REDIS_PORT=$redis_port
TLS_DIR=$tls
EOF
  if [ -n "$watch_pid" ]; then
    nohup bash -c "while kill -0 $watch_pid 2>/dev/null; do sleep 1; done; '$here/stack.sh' stop --purge --dir '$dir'" \
      >/dev/null 2>&1 &
  fi
  log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port, Redis on 127.0.0.1:$redis_port (data in $dir)"
  print_env
}

# redis_ping PORT [TLS_DIR]: Redis answers on 127.0.0.1:PORT (over TLS with TLS_DIR's CA).
redis_ping() {
  if [ -n "${2:-}" ]; then
    redis-cli --tls --cacert "$2/ca.crt" -p "$1" ping >/dev/null 2>&1
  else
    redis-cli -p "$1" ping >/dev/null 2>&1
  fi
}

stack_running() {
  # shellcheck disable=SC1091
  . "$dir/ports.env"
  "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" -q 2>/dev/null \
    && redis_ping "$REDIS_PORT" "${TLS_DIR:-}"
}

print_env() {
  # shellcheck disable=SC1091
  . "$dir/ports.env"
  if [ -n "${TLS_DIR:-}" ]; then
    echo "DATABASE_URL=postgres://postgres@localhost:$PG_PORT/dinq?sslmode=verify-full&sslrootcert=$TLS_DIR/ca.crt"
    echo "REDIS_URL=rediss://localhost:$REDIS_PORT"
    echo "REDIS_TLS_CA_FILE=$TLS_DIR/ca.crt"
  else
    echo "DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/dinq"
    echo "REDIS_URL=127.0.0.1:$REDIS_PORT"
  fi
}

stop() {
  [ -f "$dir/ports.env" ] || { log "nothing to stop in $dir"; return; }
  # shellcheck disable=SC1091
  . "$dir/ports.env"
  [ -n "$PG_BIN" ] || find_pg_bin 17 16 15 any || true
  if [ -f "$dir/redis.pid" ]; then
    kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
    rm -f "$dir/redis.pid"
  fi
  as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >/dev/null 2>&1 || true
  rm -f "$dir/ports.env"
  if [ "$purge" = 1 ]; then
    rm -rf "$dir" "$PGDATA_DIR" "$PGDATA_DIR.sock"
  fi
  log "stopped"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  env) print_env ;;
  deps) ensure_packages ;;
  *) echo "usage: stack.sh start|stop|env|deps [--dir DIR] [--pg-port N] [--redis-port N] [--fast] [--watch-pid PID] [--tls CERTS]" >&2; exit 64 ;;
esac
