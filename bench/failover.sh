#!/usr/bin/env bash
# Failover benchmark (issue 6): one client writes continuously to a fresh
# 3-node raftkv and a fresh 3-member etcd on loopback; after KILL_AFTER
# seconds the leader is SIGKILLed. Reports, per run and as medians, the
# longest gap between two successful writes and the time from the kill to
# the first write (started after it) that succeeded. Runs alternate
# raftkv / etcd, RUNS times each; everything is bounded and stops itself.
#
# RAFTKV_FLAGS / ETCD_FLAGS (see bench/lib.sh) set election timeouts, e.g.
#   RAFTKV_FLAGS="--tick-ms 10 --election-ticks-min 10 --election-ticks-max 20 --heartbeat-ticks 2"
#   ETCD_FLAGS="--heartbeat-interval 20 --election-timeout 100"
# SIGNAL=STOP pauses the leader instead (a hung process or host: its sockets
# stay open, so only the election timeout can replace it).
# Env: RUNS (5), SECONDS_PER_RUN (8), OP_TIMEOUT (1), KILL_AFTER (2), SIGNAL (KILL), WORK, RAFTKV_BIN and
# COMPARE_BIN (built by bench/compare-etcd.sh; built here if unset), TARGET.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

RUNS=${RUNS:-5}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-8}
KILL_AFTER=${KILL_AFTER:-2}
SIGNAL=${SIGNAL:-KILL}
# Per-write deadline: a write stuck on the dead leader is given up after it
# and retried (raftkv's client retries inside it; etcd-client does not).
OP_TIMEOUT=${OP_TIMEOUT:-1}
WORK=${WORK:-$(mktemp -d /tmp/raftkv-failover.XXXXXX)}
mkdir -p "$WORK"
TARGET=${TARGET:-${CARGO_TARGET_DIR:-target}}
if [ -z "${RAFTKV_BIN:-}" ] || [ -z "${COMPARE_BIN:-}" ]; then
    command -v protoc >/dev/null || { apt-get update -qq; apt-get install -y -qq protobuf-compiler >/dev/null; }
    CARGO_TARGET_DIR=$TARGET cargo build --release -p cli --features etcd >&2
    RAFTKV_BIN=$TARGET/release/raftkv
    COMPARE_BIN=$TARGET/release/raftkv-compare
fi
cleanup() { stop_pids "${RK_PID[@]:-}" "${ETCD_PID[@]:-}" 2>/dev/null || true; }
trap cleanup EXIT

# Prints the node number (1..3) of the current leader.
raftkv_leader() {
    "$RAFTKV_BIN" status --json --timeout 5 --endpoints "$RAFTKV_EP" | python3 -c '
import json, sys
for n in json.load(sys.stdin)["nodes"]:
    if n.get("role") == "leader":
        print(n["addr"][-1]); break'
}
etcd_leader() {
    ETCDCTL_API=3 etcdctl --endpoints "$ETCD_EP" endpoint status -w json | python3 -c '
import json, sys
for e in json.load(sys.stdin):
    s = e["Status"]
    if s["header"]["member_id"] == s["leader"]:
        print({"2479": 1, "2579": 2, "2679": 3}[e["Endpoint"].split(":")[-1]]); break'
}

RESULTS=$WORK/failover.tsv
: >"$RESULTS"
for run in $(seq 1 "$RUNS"); do
    for backend in raftkv etcd; do
        if [ $backend = raftkv ]; then
            raftkv_start "$RAFTKV_BIN" "$WORK"; ep=$RAFTKV_EP
        else
            etcd_start "$WORK"; ep=$ETCD_EP
        fi
        rm -f "$WORK/kill_time" "$WORK/killed"
        # The killer runs beside the writer: finds the leader, SIGKILLs it.
        (
            sleep "$KILL_AFTER"
            if [ $backend = raftkv ]; then
                l=$(raftkv_leader); pid=${RK_PID[$l]}
            else
                l=$(etcd_leader); pid=${ETCD_PID[$l]}
            fi
            kill -"$SIGNAL" "$pid"
            date +%s.%N >"$WORK/kill_time"
            echo "$l" >"$WORK/killed"
        ) &
        killer=$!
        timeout $((SECONDS_PER_RUN + 30)) "$COMPARE_BIN" failover --backend $backend --endpoints "$ep" \
            --clients 1 --seconds "$SECONDS_PER_RUN" --kill-time-file "$WORK/kill_time" --timeout "$OP_TIMEOUT" \
            --seed "$run" >"$WORK/out.json" || echo "$backend run $run: writer failed" >&2
        wait "$killer" || echo "$backend run $run: killer failed" >&2
        l=$(cat "$WORK/killed" 2>/dev/null || echo "?")
        python3 - "$backend" "$run" "$l" "$WORK/out.json" >>"$RESULTS" <<'PY'
import json, sys
r = json.load(open(sys.argv[4]))
rec = r["recovery_ms"]
print(f"{sys.argv[1]}\t{sys.argv[2]}\t{sys.argv[3]}\t{r['max_gap_ms']:.0f}\t{rec if rec is None else round(rec)}\t{r['ok']}\t{r['errors']}")
PY
        if [ $backend = raftkv ]; then
            stop_pids "${RK_PID[@]}"; RK_PID=()
        else
            stop_pids "${ETCD_PID[@]}"; ETCD_PID=()
        fi
    done
done
echo "backend run killed max_gap_ms recovery_ms writes errors"
cat "$RESULTS"
python3 - "$RESULTS" <<'PY'
import sys, statistics as st
rows = [l.split("\t") for l in open(sys.argv[1]) if l.strip()]
print("| system | median longest write gap (ms) | median kill → first write served (ms) | runs |")
print("|---|---:|---:|---:|")
# A run with no write served after the kill (recovery None) counts as
# "longer than the rest of the run" (inf) in both columns.
inf = float("inf")
for b in ("raftkv", "etcd"):
    rs = [r for r in rows if r[0] == b]
    rec = [inf if r[4] == "None" else float(r[4]) for r in rs]
    g = [max(float(r[3]), x) for r, x in zip(rs, rec)]
    if g:
        print(f"| {b} | {st.median(g):.0f} | {st.median(rec):.0f} | {len(g)} |")
PY
