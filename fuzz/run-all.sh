#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds each, one after the other, and prints libFuzzer's
# final figures per target (executions, executions per second, peak memory).
#
#   fuzz/run-all.sh 1800            # the 30-minute run, 9 targets: four and a half hours
#   fuzz/run-all.sh 60 open_db meta # only these targets
#
# The machine carries one stable toolchain: cargo-fuzz needs nightly-only flags, which
# RUSTC_BOOTSTRAP=1 allows. Crashes land in fuzz/artifacts/TARGET/, the corpus in fuzz/corpus/TARGET/;
# each run's full log is in fuzz/logs/TARGET.log. Exits non-zero if any target found a crash.
set -u
cd "$(dirname "$0")"
seconds=${1:?usage: run-all.sh SECONDS [TARGET...]}
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(RUSTC_BOOTSTRAP=1 cargo fuzz list)
fi
export RUSTC_BOOTSTRAP=1
# Leaks are not what these targets look for: threads of a timed-out run are left behind on purpose.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
mkdir -p logs
nice cargo fuzz build -O || exit 1
failed=0
printf '%-12s %8s %14s %10s %8s  %s\n' target seconds executions exec/s rss_mb result
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    nice cargo fuzz run -O "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
        >"logs/$t.log" 2>&1
    rc=$?
    stat() { grep -o "^stat::$1: *[0-9]*" "logs/$t.log" | tail -1 | grep -o '[0-9]*$'; }
    result=clean
    if [ $rc -ne 0 ]; then
        result="CRASH (exit $rc; see logs/$t.log and artifacts/$t/)"
        failed=1
    fi
    printf '%-12s %8s %14s %10s %8s  %s\n' "$t" "$seconds" "$(stat number_of_executed_units)" \
        "$(stat average_exec_per_sec)" "$(stat peak_rss_mb)" "$result"
done
exit $failed
