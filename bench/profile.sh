#!/usr/bin/env bash
# Profiles the raftkv leader under the 64-client put load (issue 6): a fresh
# 3-node cluster on loopback, `perf record -e cpu-clock` (software clock:
# works in VMs without hardware counters) on the leader for the length of
# the load, then the top symbols by self time, and the leader's and the
# followers' CPU split (user/system). Bounded; stops by itself.
# Env: OPS (40000), WORK, RAFTKV_BIN, COMPARE_BIN (see compare-etcd.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
OPS=${OPS:-40000}
WORK=${WORK:-$(mktemp -d /tmp/raftkv-profile.XXXXXX)}
mkdir -p "$WORK"
command -v perf >/dev/null || { apt-get update -qq; apt-get install -y -qq linux-perf >/dev/null; }
cleanup() { stop_pids "${RK_PID[@]:-}" 2>/dev/null || true; }
trap cleanup EXIT
raftkv_start "$RAFTKV_BIN" "$WORK"
l=$("$RAFTKV_BIN" status --json --endpoints "$RAFTKV_EP" | python3 -c '
import json, sys
print([n["addr"][-1] for n in json.load(sys.stdin)["nodes"] if n.get("role") == "leader"][0])')
pid=${RK_PID[$l]}
echo "leader: node $l (pid $pid)"
declare -A t0
for i in 1 2 3; do t0[$i]=$(sed 's/^.*) //' /proc/${RK_PID[$i]}/stat | awk '{print $12, $13}'); done
perf record -e cpu-clock -F 999 ${PERF_CALLGRAPH:-} -p "$pid" -o "$WORK/perf.data" 2>"$WORK/perf-record.log" &
perf_pid=$!
timeout 300 "$COMPARE_BIN" put --backend raftkv --endpoints "$RAFTKV_EP" --clients 64 --ops "$OPS" --value-size 256 --keys 10000
kill -INT "$perf_pid"; wait "$perf_pid" || true
hz=$(getconf CLK_TCK)
for i in 1 2 3; do
    read -r u0 s0 <<<"${t0[$i]}"
    read -r u1 s1 <<<"$(sed 's/^.*) //' /proc/${RK_PID[$i]}/stat | awk '{print $12, $13}')"
    echo "node $i: user $(( (u1 - u0) * 100 / hz ))cs system $(( (s1 - s0) * 100 / hz ))cs, RSS $(( $(rss_kib "${RK_PID[$i]}") / 1024 )) MiB"
done
perf report -i "$WORK/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -${TOP:-45}
echo "perf data: $WORK/perf.data"
