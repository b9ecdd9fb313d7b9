#!/usr/bin/env bash
# A local cluster without Docker: PostgreSQL and Redis (stack.sh), three dinq-message
# nodes, nginx in front of them and Prometheus scraping them, all from Debian's packages.
#
#   deploy/local/cluster.sh up   [--dir DIR] [--port 8090] [--bin PATH]
#   deploy/local/cluster.sh down [--dir DIR]
#
# nginx listens on --port (API and /ws), Prometheus on port+1, the nodes on port+11..13.
# --bin defaults to target/release/dinq-message (built when missing).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

cmd=${1:-}
[ -n "$cmd" ] && shift
dir="$repo/target/dinq-cluster"
port=8090
bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    *) echo "cluster.sh: unknown option $1" >&2; exit 64 ;;
  esac
done
log() { echo "cluster.sh: $*" >&2; }

ensure_packages() {
  local missing=()
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
  command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { log "missing ${missing[*]}; install them or run as root"; exit 69; }
    log "installing ${missing[*]} from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

up() {
  ensure_packages
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -z "$bin" ]; then
    bin="$repo/target/release/dinq-message"
    [ -x "$bin" ] || (cd "$repo" && cargo build --locked --release --bin dinq-message)
  fi
  local pg_port=$((port + 21)) redis_port=$((port + 22)) prom_port=$((port + 1))
  "$here/stack.sh" start --dir "$dir/stack" --pg-port "$pg_port" --redis-port "$redis_port" >"$dir/stack.env"
  set -a
  # shellcheck disable=SC1091
  . "$dir/stack.env"
  set +a
  local secret
  secret=$(cat "$dir/jwt_secret" 2>/dev/null || true)
  if [ -z "$secret" ]; then
    secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
    echo "$secret" >"$dir/jwt_secret"
  fi
  local targets=""
  for i in 1 2 3; do
    local p=$((port + 10 + i))
    PORT=$p BIND_ADDRESS=127.0.0.1 NODE_ID="local-$i" JWT_SECRET=$secret \
      WS_PUBLIC_URL="ws://127.0.0.1:$port/ws" LOG_LEVEL=${LOG_LEVEL:-info} \
      nohup "$bin" >"$dir/node-$i.log" 2>&1 &
    echo $! >"$dir/node-$i.pid"
    targets="$targets\"127.0.0.1:$p\","
  done
  sed -e "s/server node1:8083/server 127.0.0.1:$((port + 11))/" \
      -e "s/server node2:8083/server 127.0.0.1:$((port + 12))/" \
      -e "s/server node3:8083/server 127.0.0.1:$((port + 13))/" \
      -e "s/listen 8080;/listen 127.0.0.1:$port;/" \
      -e "s|^worker_processes auto;|worker_processes 1;\npid $dir/nginx.pid;\nerror_log $dir/nginx-error.log;|" \
      -e "s|^http {|http {\n    access_log off;\n    client_body_temp_path $dir/nginx-tmp;\n    proxy_temp_path $dir/nginx-tmp;|" \
      "$repo/deploy/nginx/nginx.conf" >"$dir/nginx.conf"
  mkdir -p "$dir/nginx-tmp"
  nginx -c "$dir/nginx.conf" -p "$dir"
  cp "$repo/deploy/prometheus/rules.yml" "$dir/rules.yml"
  cat >"$dir/prometheus.yml" <<EOF
global:
  scrape_interval: 2s
  evaluation_interval: 2s
rule_files: [rules.yml]
scrape_configs:
  - job_name: dinq-message
    static_configs:
      - targets: [${targets%,}]
EOF
  nohup prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/prometheus-data" \
    --web.listen-address="127.0.0.1:$prom_port" >"$dir/prometheus.log" 2>&1 &
  echo $! >"$dir/prometheus.pid"
  for i in 1 2 3; do
    local p=$((port + 10 + i))
    for _ in $(seq 1 600); do
      curl -sf "http://127.0.0.1:$p/ready" >/dev/null 2>&1 && break
      sleep 0.1
    done
    curl -sf "http://127.0.0.1:$p/ready" >/dev/null || { log "node $i not ready, see $dir/node-$i.log"; exit 1; }
  done
  cat >"$dir/cluster.env" <<EOF
CLUSTER_URL=http://127.0.0.1:$port
PROMETHEUS_URL=http://127.0.0.1:$prom_port
NODE_URLS=http://127.0.0.1:$((port + 11)),http://127.0.0.1:$((port + 12)),http://127.0.0.1:$((port + 13))
JWT_SECRET=$secret
EOF
  log "up: nginx on 127.0.0.1:$port, Prometheus on 127.0.0.1:$prom_port, nodes on $((port + 11))-$((port + 13))"
  cat "$dir/cluster.env"
}

down() {
  for f in "$dir"/node-*.pid "$dir/prometheus.pid"; do
    [ -f "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
  if [ -f "$dir/nginx.pid" ]; then
    kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true
  fi
  "$here/stack.sh" stop --dir "$dir/stack" >/dev/null 2>&1 || true
  log "down"
}

case "$cmd" in
  up) up ;;
  down) down ;;
  *) echo "usage: cluster.sh up|down [--dir DIR] [--port N] [--bin PATH]" >&2; exit 64 ;;
esac
