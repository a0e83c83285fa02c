#!/usr/bin/env bash
# Runs the same client load (server/examples/beside_etcd.rs) against Debian's etcd and against
# folio-server, one after the other in one run, each in a fresh data directory on the same disk,
# and prints one table (issue 15, "Measured beside etcd").
#
#   server/bench/beside_etcd.sh                 # small: 5,000 pods, 4 churn rounds (minutes)
#   server/bench/beside_etcd.sh --large         # the issue's size: 150,000 pods of 1-4 KiB
#                                               # (~0.37 GB live, a ~1.7 GB etcd file before defrag)
#   server/bench/beside_etcd.sh --pods N --churn R
#
# BENCH_DIR (default target/beside_etcd, on the repository's disk, not a tmpfs) holds the data
# directories and the servers' logs; it is emptied first. Not run by CI: it is a measurement.
set -euo pipefail
cd "$(dirname "$0")/../.."

PODS=5000
CHURN=4
while [ $# -gt 0 ]; do
    case "$1" in
        --large) PODS=150000; CHURN=4 ;;
        --pods) PODS=$2; shift ;;
        --churn) CHURN=$2; shift ;;
        *) echo "usage: $0 [--large] [--pods N] [--churn ROUNDS]" >&2; exit 2 ;;
    esac
    shift
done

command -v etcd >/dev/null || { echo "needs etcd: apt-get install etcd-server" >&2; exit 1; }

echo "== building folio-server and the benchmark (release)"
cargo build -q --release -p folio-server --bin folio-server --example beside_etcd
SERVER=target/release/folio-server
BENCH=target/release/examples/beside_etcd

WORK=${BENCH_DIR:-target/beside_etcd}
rm -rf "$WORK"
mkdir -p "$WORK"
PID=
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
}
trap cleanup EXIT

PORT=${BENCH_PORT:-23890}
PEER_PORT=$((PORT + 1))
URL="http://127.0.0.1:$PORT"
# Both with an 8 GiB space quota, so the large run never meets NOSPACE, and no compaction or
# defrag of their own: the benchmark asks for both.
QUOTA=$((8 * 1024 * 1024 * 1024))

wait_ready() {
    for _ in $(seq 200); do
        if "$BENCH" --probe --endpoint "$URL" 2>/dev/null; then return 0; fi
        kill -0 "$PID" 2>/dev/null || { echo "the server exited; see $WORK/$1.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "the server did not answer; see $WORK/$1.log" >&2
    exit 1
}

describe() {
    echo "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr)"
    echo "disk of $WORK: $(df -h --output=source,fstype,size "$WORK" | tail -1 | tr -s ' ')"
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
}

describe
ROWS=()
HEADER=--header
for server in etcd folio-server; do
    echo "== $server: $PODS pods, $CHURN churn rounds, data in $WORK/$server"
    if [ "$server" = etcd ]; then
        etcd --name default --data-dir "$WORK/etcd" \
            --listen-client-urls "$URL" --advertise-client-urls "$URL" \
            --listen-peer-urls "http://127.0.0.1:$PEER_PORT" \
            --quota-backend-bytes "$QUOTA" >"$WORK/etcd.log" 2>&1 &
        PID=$!
        LABEL="etcd $(etcd --version | sed -n 's/^etcd Version: //p')"
    else
        "$SERVER" --name default --data-dir "$WORK/folio-server" \
            --listen-client-urls "$URL" --advertise-client-urls "$URL" \
            --quota-backend-bytes "$QUOTA" --auto-defrag-threshold 0 >"$WORK/folio-server.log" 2>&1 &
        PID=$!
        LABEL="folio-server"
    fi
    wait_ready "$server"
    "$BENCH" --endpoint "$URL" --label "$LABEL" --pods "$PODS" --churn "$CHURN" $HEADER \
        >"$WORK/$server.table"
    mapfile -t lines <"$WORK/$server.table"
    ROWS+=("${lines[@]}")
    HEADER=
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
done

echo
echo "$PODS pods of 1-4 KiB, $CHURN churn rounds; put, get and list by the etcd-client crate;"
echo "longest put/get: the longest request in flight during the Defragment call (one client each, every 2 ms)"
echo
printf '%s\n' "${ROWS[@]}"
