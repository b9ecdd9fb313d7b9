#!/usr/bin/env bash
# Runs the whole benchmark on this machine: a throwaway PostgreSQL and Redis, N nodes of
# dinq-message in release mode, then every scenario of dinq-loadtest. Writes the report to
# loadtest/REPORT.md and loadtest/report.json (the last full run is committed).
#
#   loadtest/run.sh [--short] [--nodes N] [--redis-cluster] [--big-group] [--scenarios "ceilings parity throughput latency crossnode fanout costs connections"]
#
# --big-group adds a group of 10,000 members at 1 message/s to the fan-out and costs
# scenarios (10,000 receiving sockets in the load generator; needs an open-file limit
# above about 12,000).
# --short runs small versions of everything in about two minutes (correctness smoke;
# its numbers are not a benchmark and it writes target/bench/ only).
# --redis-cluster runs the nodes on a local 3-master Redis Cluster (REDIS_CLUSTER_URLS,
# sharded Pub/Sub) instead of the single Redis; a full run writes loadtest/REPORT-cluster.md
# and report-cluster.json, and loadtest/COMPARE.md sets it beside the last single-Redis
# run (`dinq-loadtest compare`).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"

short=0
cluster=0
big_group=0
big_group_args=()
nodes=2
scenarios="ceilings parity throughput latency crossnode fanout costs connections"
while [ $# -gt 0 ]; do
  case "$1" in
    --short) short=1; shift ;;
    --nodes) nodes=$2; shift 2 ;;
    --redis-cluster) cluster=1; shift ;;
    --big-group) big_group=1; shift ;;
    --scenarios) scenarios=$2; shift 2 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 64 ;;
  esac
done

ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
state="$repo/target/bench"
mkdir -p "$state"
# Every run starts from an empty database: rows left by earlier runs would make each run
# slower than the last (bigger indexes, autovacuum of old rows).
"$repo/deploy/local/stack.sh" stop --dir "$state/stack" --purge >/dev/null 2>&1 || true
"$repo/deploy/local/stack.sh" start --dir "$state/stack" --pg-port 5544 --redis-port 6544 >"$state/stack.env"
# shellcheck disable=SC1091
set -a; . "$state/stack.env"; set +a
# 32 random bytes: nodes refuse a JWT_SECRET shorter than 32 bytes.
secret="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

cargo build --locked --release --workspace
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$repo/deploy/local/stack.sh" stop --dir "$state/stack" >/dev/null 2>&1 || true
}
trap cleanup EXIT
node_env=()
redis_url="redis://$REDIS_URL"
count_urls=$redis_url
if [ "$cluster" = 1 ]; then
  # Three masters, slots spread evenly, no replicas (a benchmark, not a failover test).
  rc="$state/redis-cluster"
  rm -rf "$rc"
  seeds=()
  for port in 7101 7102 7103; do
    mkdir -p "$rc/$port"
    redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-config-file nodes.conf --cluster-node-timeout 2000 --save "" --appendonly no \
      --dir "$rc/$port" --logfile "$rc/$port/redis.log" >/dev/null 2>&1 &
    pids+=($!)
    seeds+=("127.0.0.1:$port")
  done
  for port in 7101 7102 7103; do
    for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  done
  redis-cli --cluster create "${seeds[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
  for _ in $(seq 1 100); do
    redis-cli -p 7101 cluster info | grep -q cluster_state:ok && break
    sleep 0.1
  done
  node_env=("REDIS_CLUSTER_URLS=$(IFS=,; echo "${seeds[*]}")")
  # The Redis ceiling is measured on one shard; the per-message costs count all three.
  redis_url="redis://127.0.0.1:7101"
  count_urls="redis://127.0.0.1:7101,redis://127.0.0.1:7102,redis://127.0.0.1:7103"
fi
urls=()
for i in $(seq 1 "$nodes"); do
  port=$((8100 + i))
  env "${node_env[@]}" PORT=$port NODE_ID="bench-$i" JWT_SECRET=$secret WS_PUBLIC_URL="ws://127.0.0.1:$port/ws" \
    DB_POOL_SIZE=16 LOG_LEVEL=warn MAX_CONNECTIONS=200000 \
    "$repo/target/release/dinq-message" >"$state/node-$i.log" 2>&1 &
  pids+=($!)
  urls+=("http://127.0.0.1:$port")
done
for u in "${urls[@]}"; do
  for _ in $(seq 1 200); do curl -sf "$u/ready" >/dev/null && break; sleep 0.1; done
  curl -sf "$u/ready" >/dev/null || { echo "run.sh: node $u not ready" >&2; exit 1; }
done
node_list=$(IFS=,; echo "${urls[*]}")

# Connections are bounded by this machine's open-file limit (client and nodes each need
# one descriptor per connection).
fd_limit=$(ulimit -n)
cap=$(( fd_limit - 2000 ))
conns=""
for n in 10000 50000 100000; do
  if [ "$n" -le "$cap" ]; then conns="$conns,$n"; fi
done
conns=${conns#,}
[ -n "$conns" ] || conns=$cap
[ "$cap" -lt 100000 ] && echo "run.sh: open-file limit $fd_limit caps idle connections at $cap per process" >&2 && conns="$conns,$cap"
conns=$(echo "$conns" | tr ',' '\n' | sort -un | paste -sd, -)

if [ "$short" = 1 ]; then
  groups=10,100
else
  groups=10,100,1000
fi
if [ "$big_group" = 1 ]; then
  if [ "$cap" -lt 10000 ]; then
    echo "run.sh: open-file limit $fd_limit is too low for a group of 10,000; --big-group skipped" >&2
  else
    groups="$groups,10000@1"
    # Past the server's default max_group_members (2,000): an admin raises it.
    big_group_args=(--set max_group_members=10001)
  fi
fi
if [ "$short" = 1 ]; then
  args=(--duration 3 --rates 500,1000 --pairs 50 --groups "$groups" --group-rate 20 --connections 2000 --hold 2 --verify)
  out="$state/short"
else
  args=(--duration 10 --rates 1000,5000,10000,20000 --pairs 1000 --groups "$groups" --group-rate 200 --connections "$conns" --hold 20 --verify)
  out="$state/full"
fi
# shellcheck disable=SC2086
"$repo/target/release/dinq-loadtest" $scenarios --nodes "$node_list" --secret "$secret" \
  --sources 127.0.0.1-127.0.0.32 --database-url "$DATABASE_URL" --redis-url "$redis_url" \
  --redis-count-urls "$count_urls" --out "$out" "${args[@]}" "${big_group_args[@]}"
if [ "$cluster" = 1 ]; then rm -rf "$out-cluster"; mv "$out" "$out-cluster"; out="$out-cluster"; fi
if [ "$short" = 0 ] && [ "$cluster" = 0 ]; then
  cp "$out/report.md" "$here/REPORT.md"
  cp "$out/report.json" "$here/report.json"
  echo "run.sh: report in loadtest/REPORT.md"
fi
if [ "$short" = 0 ] && [ "$cluster" = 1 ]; then
  cp "$out/report.md" "$here/REPORT-cluster.md"
  cp "$out/report.json" "$here/report-cluster.json"
  "$repo/target/release/dinq-loadtest" compare "$here/report.json" "$here/report-cluster.json" \
    "single Redis" "3-shard Redis Cluster" >"$here/COMPARE.md"
  echo "run.sh: report in loadtest/REPORT-cluster.md, comparison in loadtest/COMPARE.md"
fi
