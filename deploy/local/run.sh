#!/usr/bin/env bash
# Runs one dinq-message node on :8083 with a local PostgreSQL and Redis started for it
# (data in target/dinq-local; `deploy/local/stack.sh stop` stops them).
#
#   deploy/local/run.sh                      build (release) and run a node
#   deploy/local/run.sh token --user <uuid>  print a token the local node accepts
#
# PROFILE=dev builds faster but runs slower. Any variable of the README's configuration
# table can be set in the environment or in a .env file.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

if ! command -v cargo >/dev/null 2>&1; then
  for c in "$HOME/.cargo/bin/cargo" /usr/local/cargo/bin/cargo; do
    [ -x "$c" ] && export PATH="$(dirname "$c"):$PATH" && break
  done
fi
command -v cargo >/dev/null 2>&1 || {
  echo "run.sh: cargo not found; install Rust 1.95 or newer (https://rustup.rs)" >&2
  exit 69
}

state="$repo/target/dinq-local"
while IFS='=' read -r k v; do export "$k=$v"; done < <("$here/stack.sh" start --dir "$state")
mkdir -p "$state"
if [ -z "${JWT_SECRET:-}" ]; then
  [ -s "$state/jwt_secret" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$state/jwt_secret"
  JWT_SECRET=$(cat "$state/jwt_secret")
  export JWT_SECRET
fi
export PORT=${PORT:-8083}
# Local by default (DEV_UI=1 is refused on other addresses unless DEV_UI_PUBLIC=1); set
# BIND_ADDRESS (environment or .env) to listen elsewhere.
if [ -z "${BIND_ADDRESS:-}" ] && ! grep -qs '^[[:space:]]*\(export[[:space:]]\+\)\?BIND_ADDRESS=' .env; then
  export BIND_ADDRESS=127.0.0.1
fi

profile=${PROFILE:-release}
cargo build --locked --profile "$profile" --bin dinq-message
bin_dir=$([ "$profile" = dev ] && echo debug || echo "$profile")
bin="$repo/target/$bin_dir/dinq-message"
if [ $# -gt 0 ]; then
  exec "$bin" "$@"
fi
cat >&2 <<TXT
run.sh: starting dinq-message on :$PORT
        try: curl -s localhost:$PORT/health
        a token: deploy/local/run.sh token --user \$(cat /proc/sys/kernel/random/uuid)
TXT
exec "$bin"
