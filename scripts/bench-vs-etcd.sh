#!/usr/bin/env bash
# Writes/s and latency of a 3-node Chorus cluster on loopback (fsync on, the
# default), with 1 and 256 concurrent clients; then, if `etcd` is on PATH,
# of 3 etcd members on loopback under the same load through etcd's v3 JSON
# gateway (POST /v3/kv/put), and the ratios. Both sides are driven by the
# same client (`chorus bench`: HTTP/1.1 keep-alive, one connection per
# client) against their leader. See "Benchmark against etcd" in
# docs/runtime.md.
#
#   scripts/bench-vs-etcd.sh [--duration-secs 10] [--warmup-secs 1] [--clients "1 256"]
#                            [--value-bytes 256] [--base-port 27100] [--no-build] [--no-etcd]
#                            [--out FILE]
#
# ETCD_BIN and ETCDCTL_BIN choose the etcd binaries (default: etcd and
# etcdctl on PATH).
#
# Everything listens on 127.0.0.1 only, runs under `nice`, lives in a
# temporary directory, and is stopped and removed on exit (also on Ctrl-C).
set -euo pipefail

duration_secs=10
warmup_secs=1
clients_list="1 256"
value_bytes=256
base_port=27100
build=1
use_etcd=1
out=""

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --duration-secs) duration_secs="${2:?}"; shift 2 ;;
    --warmup-secs) warmup_secs="${2:?}"; shift 2 ;;
    --clients) clients_list="${2:?}"; shift 2 ;;
    --value-bytes) value_bytes="${2:?}"; shift 2 ;;
    --base-port) base_port="${2:?}"; shift 2 ;;
    --no-build) build=0; shift ;;
    --no-etcd) use_etcd=0; shift ;;
    --out) out="${2:?}"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "error: unknown argument $1" >&2; usage ;;
  esac
done
for number in "$duration_secs" "$warmup_secs" "$value_bytes" "$base_port" $clients_list; do
  case "$number" in ''|*[!0-9]*) echo "error: $number is not a number" >&2; exit 2 ;; esac
done

root="$(cd "$(dirname "$0")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
chorus="$target_dir/release/chorus"
etcd_bin="${ETCD_BIN:-etcd}"
etcdctl_bin="${ETCDCTL_BIN:-etcdctl}"
nice_cmd=(nice -n 10)
# Bounds on every wait.
start_wait_secs=30
stop_wait_secs=15
bench_timeout_secs=$((duration_secs + warmup_secs + 60))

if [ "$build" = 1 ]; then
  (cd "$root" && "${nice_cmd[@]}" cargo build --release -q -p chorus-runtime --bin chorus)
fi
[ -x "$chorus" ] || { echo "error: $chorus not found (build it, or drop --no-build)" >&2; exit 2; }

work="$(mktemp -d -t chorus-bench.XXXXXX)"
pids=()
stop_all() {
  local pid deadline
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  deadline=$((SECONDS + stop_wait_secs))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=()
}
cleanup() { stop_all; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for offset in 1 2 3 11 12 13 21 22 23 31 32 33; do
  port_free $((base_port + offset)) || { echo "error: 127.0.0.1:$((base_port + offset)) is taken; give --base-port" >&2; exit 2; }
done

results="$work/results.tsv"
: > "$results"

# run_bench API ENDPOINT: one `chorus bench` per client count, appended to $results.
run_bench() {
  local api="$1" endpoint="$2" clients
  for clients in $clients_list; do
    echo "== $api, $clients client(s), ${duration_secs} s" >&2
    # --foreground: the bench stays in our process group, so Ctrl-C reaches it.
    timeout --foreground "$bench_timeout_secs" "${nice_cmd[@]}" "$chorus" bench --api "$api" --endpoint "$endpoint" \
      --clients "$clients" --duration-secs "$duration_secs" --warmup-secs "$warmup_secs" \
      --value-bytes "$value_bytes" --format tsv >> "$results"
    tail -n 1 "$results" >&2
  done
}

# wait_for DESCRIPTION COMMAND...: retries COMMAND until it succeeds (bounded).
wait_for() {
  local what="$1" deadline=$((SECONDS + start_wait_secs))
  shift
  until "$@" > /dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "error: $what not within ${start_wait_secs} s (logs in $work)" >&2; tail -n 20 "$work"/*.log >&2; exit 1; }
    sleep 0.2
  done
}

bench_chorus() {
  local id peer_args
  "$chorus" certs init --dir "$work/certs" > /dev/null
  for id in 1 2 3; do "$chorus" certs node --dir "$work/certs" --id "$id" > /dev/null; done
  for id in 1 2 3; do
    peer_args=()
    for peer in 1 2 3; do
      [ "$peer" = "$id" ] && continue
      peer_args+=(--peer "$peer=127.0.0.1:$((base_port + peer))" --peer-http "$peer=127.0.0.1:$((base_port + 10 + peer))")
    done
    # --max-requests-per-second 0: etcd has no request-rate limit either.
    "${nice_cmd[@]}" "$chorus" node --id "$id" --listen "127.0.0.1:$((base_port + id))" \
      --http "127.0.0.1:$((base_port + 10 + id))" --data-dir "$work/chorus-$id" --certs "$work/certs" \
      --bootstrap "${peer_args[@]}" --max-requests-per-second 0 --log-level warn \
      > "$work/chorus-$id.log" 2>&1 &
    pids+=($!)
  done
  for id in 1 2 3; do
    wait_for "chorus node $id healthy" curl -sf "http://127.0.0.1:$((base_port + 10 + id))/health"
  done
  local leader
  leader="$(curl -sf "http://127.0.0.1:$((base_port + 11))/health" | sed -n 's/.*"leader":\([0-9]*\).*/\1/p')"
  echo "== chorus: 3 nodes up, leader node $leader" >&2
  run_bench chorus "http://127.0.0.1:$((base_port + 10 + leader))"
  stop_all
}

etcd_leader() {
  ETCDCTL_API=3 "$etcdctl_bin" --command-timeout=2s --endpoints="$1" endpoint status -w simple 2>/dev/null \
    | awk -F', ' '$5 == "true" { print $1; found = 1 } END { exit !found }'
}

bench_etcd() {
  local id cluster="" endpoints=""
  for id in 1 2 3; do
    cluster+="${cluster:+,}m$id=http://127.0.0.1:$((base_port + 30 + id))"
    endpoints+="${endpoints:+,}http://127.0.0.1:$((base_port + 20 + id))"
  done
  for id in 1 2 3; do
    # Defaults otherwise: fsync on, heartbeat 100 ms, election 1000 ms (as Chorus).
    "${nice_cmd[@]}" "$etcd_bin" --name "m$id" --data-dir "$work/etcd-$id" \
      --listen-client-urls "http://127.0.0.1:$((base_port + 20 + id))" \
      --advertise-client-urls "http://127.0.0.1:$((base_port + 20 + id))" \
      --listen-peer-urls "http://127.0.0.1:$((base_port + 30 + id))" \
      --initial-advertise-peer-urls "http://127.0.0.1:$((base_port + 30 + id))" \
      --initial-cluster "$cluster" --initial-cluster-token chorus-bench --initial-cluster-state new \
      --logger zap --log-level warn > "$work/etcd-$id.log" 2>&1 &
    pids+=($!)
  done
  wait_for "an etcd leader" etcd_leader "$endpoints"
  local leader
  leader="$(etcd_leader "$endpoints")"
  echo "== etcd $("$etcd_bin" --version | sed -n 's/^etcd Version: //p'): 3 members up, leader $leader" >&2
  run_bench etcd "$leader"
  stop_all
}

bench_chorus
if [ "$use_etcd" = 1 ] && command -v "$etcd_bin" > /dev/null && command -v "$etcdctl_bin" > /dev/null; then
  bench_etcd
elif [ "$use_etcd" = 1 ]; then
  echo "NOTE: $etcd_bin or $etcdctl_bin not found (Debian: apt-get install etcd-server etcd-client): Chorus only, no ratios." >&2
fi

[ -z "$out" ] || cp "$results" "$out"
echo
echo "3 nodes on 127.0.0.1, fsync on, ${value_bytes}-byte values, ${duration_secs} s per run after ${warmup_secs} s warm-up, $(nproc) cores"
awk -F'\t' '
  { system_[NR] = $1; clients[NR] = $2; rate[$1, $2] = $6; p50[$1, $2] = $7; p99[$1, $2] = $8; p999[$1, $2] = $9; errors[$1, $2] = $5 }
  END {
    printf "| clients | system | writes/s | p50 ms | p99 ms | p99.9 ms | errors |\n|---|---|---|---|---|---|---|\n"
    for (i = 1; i <= NR; i++) if (system_[i] == "chorus") {
      c = clients[i]
      printf "| %s | chorus | %.0f | %s | %s | %s | %s |\n", c, rate["chorus", c], p50["chorus", c], p99["chorus", c], p999["chorus", c], errors["chorus", c]
      if (("etcd", c) in rate) {
        printf "| %s | etcd | %.0f | %s | %s | %s | %s |\n", c, rate["etcd", c], p50["etcd", c], p99["etcd", c], p999["etcd", c], errors["etcd", c]
        ratio = rate["etcd", c] > 0 ? sprintf("%.2fx", rate["chorus", c] / rate["etcd", c]) : "-"
        p99ratio = p99["etcd", c] > 0 ? sprintf("%.2fx", p99["chorus", c] / p99["etcd", c]) : "-"
        printf "| %s | chorus/etcd | %s | | %s | | |\n", c, ratio, p99ratio
      }
    }
  }' "$results"
