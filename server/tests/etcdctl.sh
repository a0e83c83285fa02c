#!/usr/bin/env bash
# Runs etcdctl against folio-server and against a real etcd (Debian's etcd-server), the same
# commands against each, and fails on any difference in what etcdctl prints, once the things
# that legitimately differ are normalised: endpoints, member ids, hashes, sizes, timings, the
# version and raft term and index. Revisions are not normalised: both servers start at revision
# 1 and must agree on every one after.
#
# Needs etcdctl and etcd: installs Debian's etcd-client and etcd-server with apt-get when they are
# missing and it runs as root (as CI does); otherwise it says what to install and fails.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v etcdctl >/dev/null || ! command -v etcd >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        echo "== installing etcd-client and etcd-server with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-client etcd-server >/dev/null
    else
        echo "etcdctl.sh needs etcdctl and etcd: apt-get install etcd-client etcd-server" >&2
        exit 1
    fi
fi
etcdctl version | sed -n 1p

echo "== building folio-server and folio"
# The test profile: the dependencies `cargo test` just built serve again (the dev profile
# would build them all a second time).
cargo build -q --profile test -p folio-server -p folio-cli
SERVER=target/debug/folio-server
FOLIO=target/debug/folio

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    # FOLIO_ETCDCTL_KEEP=DIR keeps what each server printed, for a look after the run.
    if [ -n "${FOLIO_ETCDCTL_KEEP:-}" ]; then cp -r "$WORK/out" "$FOLIO_ETCDCTL_KEEP"; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

ETCD_PORT=${ETCD_PORT:-23790}
FOLIO_PORT=${FOLIO_PORT:-23791}
PEER_PORT=${PEER_PORT:-23800}

etcd --name default --data-dir "$WORK/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$PEER_PORT" >"$WORK/etcd.log" 2>&1 &
PIDS+=($!)
"$SERVER" --name default --data-dir "$WORK/folio" \
    --listen-client-urls "http://127.0.0.1:$FOLIO_PORT" \
    --advertise-client-urls "http://127.0.0.1:$FOLIO_PORT" >"$WORK/folio.log" 2>&1 &
FOLIO_PID=$!
PIDS+=($FOLIO_PID)

for port in "$ETCD_PORT" "$FOLIO_PORT"; do
    for _ in $(seq 100); do
        etcdctl --endpoints="127.0.0.1:$port" endpoint health >/dev/null 2>&1 && break
        sleep 0.1
    done
done
mkdir -p "$WORK/out/etcd" "$WORK/out/folio"

# What legitimately differs between the two servers. Member and lease ids are printed in hex
# without leading zeros: 16 digits most of the time, fewer one time in 16 or so.
normalise() {
    sed -E \
        -e '/^\{"level"/d' \
        -e "s/127\.0\.0\.1:($ETCD_PORT|$FOLIO_PORT)/ENDPOINT/g" \
        -e 's/^(ENDPOINT), [0-9]+$/\1, HASH/' \
        -e 's/\b[0-9a-f]{10,16}\b/MEMBER_ID/g' \
        -e 's/took = [0-9.]+[a-zµ]+/took = T/' \
        -e 's/remaining\([0-9]+s\)/remaining(R)/' \
        -e 's/^(ENDPOINT, MEMBER_ID), [0-9.]+, [0-9.]+ [kMG]?B, (true|false), (true|false), [0-9]+, [0-9]+, [0-9]+, /\1, VERSION, SIZE, \2, \3, TERM, INDEX, INDEX, /'
}

FAILED=0
# run NAME ARGS...: etcdctl ARGS against both servers (standard input from $STDIN if set).
run() {
    local name=$1
    shift
    local which port
    for which in etcd folio; do
        if [ "$which" = etcd ]; then port=$ETCD_PORT; else port=$FOLIO_PORT; fi
        (
            cd "$WORK/out/$which"
            set +e
            if [ -n "${WATCH_SECS:-}" ]; then
                timeout -s INT "$WATCH_SECS" etcdctl --endpoints="127.0.0.1:$port" "$@" 2>&1
            else
                etcdctl --endpoints="127.0.0.1:$port" "$@" <"${STDIN:-/dev/null}" 2>&1
            fi
            echo "exit $?"
        ) | normalise >"$WORK/out/$which/$name"
    done
    if diff -u "$WORK/out/etcd/$name" "$WORK/out/folio/$name" >"$WORK/out/$name.diff"; then
        echo "ok   $name"
    else
        echo "DIFF $name (etcd, then folio-server):"
        cat "$WORK/out/$name.diff"
        FAILED=1
    fi
}

# served SERVICE: whether folio-server serves a service yet (watch and lease arrive with the
# store's watch and leases).
served() {
    local out
    out=$(timeout -s INT 3 etcdctl --endpoints="127.0.0.1:$FOLIO_PORT" "$@" 2>&1 || true)
    case "$out" in
        *Unimplemented* | *"unknown service"*) return 1 ;;
        *) return 0 ;;
    esac
}

run put-1 put foo bar
run put-prev-kv put foo bar2 --prev-kv
run get get foo
# With credentials and authentication off, etcd answers Authenticate "not enabled" and etcdctl
# goes on without a token.
run get-with-user --user root:pw get foo
for k in k1 k2 k3; do run "put-$k" put "$k" "v$k"; done
run put-k2-again put k2 again
run get-prefix get k --prefix
run get-keys-only get k --prefix --keys-only
run get-limit get k --prefix --limit=2
run get-sort-mod-desc get k --prefix --sort-by=MODIFY --order=DESCEND
run get-sort-value get k --prefix --sort-by=VALUE
run get-sort-version-desc get k --prefix --sort-by=VERSION --order=DESCEND
run get-from-key get k2 --from-key
run get-rev get foo --rev=2
run get-print-value-only get foo --print-value-only
run get-future get foo --rev=1000
run get-hex get foo --hex
run del-one del k1
run del-prefix-prev-kv del k --prefix --prev-kv
run del-nothing del nothing
cat >"$WORK/txn-yes" <<'TXN'
value("foo") = "bar2"

put foo txn-yes
get foo

put foo txn-no

TXN
STDIN="$WORK/txn-yes" run txn-success txn
STDIN="$WORK/txn-yes" run txn-failure txn
cat >"$WORK/txn-mod" <<'TXN'
mod("foo") > "0"
version("foo") = "3"
create("foo") < "3"

del foo --prev-kv

TXN
STDIN="$WORK/txn-mod" run txn-compares txn
run put-after-txn put foo again
if served watch --rev=1 nothing-here; then
    WATCH=1
    # `watch` runs until interrupted: each gets SIGINT after WATCH_SECS. From old revisions
    # they print history, which is the same on both servers.
    WATCH_SECS=3 run watch-history watch --rev=1 foo --prev-kv
    WATCH_SECS=3 run watch-prefix-from watch --rev=4 k --prefix
else
    WATCH=0
    echo "SKIP watch: folio-server does not serve Watch yet (it needs the store's watch)"
fi
run compaction compaction 5
run compacted-get get foo --rev=3
run compaction-again compaction 5
if [ "$WATCH" = 1 ]; then WATCH_SECS=3 run watch-compacted watch --rev=2 foo; fi
run compaction-physical compaction --physical 6
run defrag defrag
run endpoint-status endpoint status
run endpoint-hash endpoint hash
run endpoint-health endpoint health
run alarm-list alarm list
run alarm-disarm alarm disarm
run member-list member list
run snapshot-save snapshot save snap.db
if ! "$FOLIO" check "$WORK/out/folio/snap.db"; then
    echo "DIFF snapshot: folio check refused folio-server's snapshot"
    FAILED=1
else
    echo "ok   folio check on the snapshot"
fi

# lease_steps PORT: a lease's life, with the id each server chose.
lease_steps() {
    local e=(etcdctl --endpoints="127.0.0.1:$1")
    local id
    id=$("${e[@]}" lease grant 100 | tee /dev/stderr | awk '{print $2}')
    "${e[@]}" put --lease="$id" lk v
    "${e[@]}" lease list
    "${e[@]}" lease timetolive "$id" --keys
    "${e[@]}" lease keep-alive --once "$id"
    "${e[@]}" lease revoke "$id"
    "${e[@]}" get lk
    "${e[@]}" lease timetolive "$id"
    "${e[@]}" lease revoke "$id"
    echo "exit $?"
    "${e[@]}" lease keep-alive --once "$id"
    echo "exit $?"
    "${e[@]}" put --lease=1234 lk v
    echo "exit $?"
    # A TTL under the minimum is raised to it (2 s at etcd's default flags).
    "${e[@]}" lease grant 0
    "${e[@]}" lease grant -- -5
}

# run_steps NAME FUNCTION: FUNCTION PORT against both servers, compared as run's output.
run_steps() {
    local name=$1 fn=$2 which port
    for which in etcd folio; do
        if [ "$which" = etcd ]; then port=$ETCD_PORT; else port=$FOLIO_PORT; fi
        (set +e; "$fn" "$port" 2>&1) | normalise >"$WORK/out/$which/$name"
    done
    if diff -u "$WORK/out/etcd/$name" "$WORK/out/folio/$name" >"$WORK/out/$name.diff"; then
        echo "ok   $name"
    else
        echo "DIFF $name (etcd, then folio-server):"
        cat "$WORK/out/$name.diff"
        FAILED=1
    fi
}

if served lease list; then
    run_steps lease lease_steps
else
    echo "SKIP lease: folio-server does not serve Lease yet (it needs the store's leases)"
fi

# A clean stop: SIGTERM, exit 0.
kill -TERM "$FOLIO_PID"
if wait "$FOLIO_PID"; then
    echo "ok   folio-server stops cleanly on SIGTERM"
else
    echo "DIFF folio-server did not stop cleanly on SIGTERM"
    FAILED=1
fi
PIDS=("${PIDS[0]}")
if [ "$FAILED" != 0 ]; then
    echo "== folio-server's log"
    cat "$WORK/folio.log"
    exit 1
fi
echo "== etcdctl prints the same against folio-server as against etcd"
