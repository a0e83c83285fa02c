#!/usr/bin/env bash
# Starts a three-member folio-server cluster on 127.0.0.1 (issue 17), in the foreground, until
# Ctrl-C (which stops all three). Each member keeps its data in $DIR/m<N> (default
# ./folio-cluster): run the script again to restart the same cluster from its data.
#
#   server/cluster.sh                 # clients: 127.0.0.1:2379, :22379, :32379
#   ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379 \
#       endpoint status -w table
#
# Environment: DIR (data), BIN (a built folio-server; default: cargo builds it, release).
set -euo pipefail

DIR=${DIR:-./folio-cluster}
if [[ -z "${BIN:-}" ]]; then
    cargo build --release -p folio-server >&2
    BIN=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/folio-server
fi

CLUSTER="m1=http://127.0.0.1:2380,m2=http://127.0.0.1:22380,m3=http://127.0.0.1:32380"
pids=()
stop() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait
}
trap stop INT TERM EXIT

for n in 1 2 3; do
    case $n in 1) c=2379 p=2380 ;; 2) c=22379 p=22380 ;; 3) c=32379 p=32380 ;; esac
    mkdir -p "$DIR"
    "$BIN" --name "m$n" --data-dir "$DIR/m$n" \
        --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
        --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
        --initial-cluster "$CLUSTER" --initial-cluster-state new \
        2> >(sed "s/^/[m$n] /" >&2) &
    pids+=($!)
done
echo "three members: clients on 127.0.0.1:2379, 127.0.0.1:22379, 127.0.0.1:32379; Ctrl-C stops them" >&2
wait
