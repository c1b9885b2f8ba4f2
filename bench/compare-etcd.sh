#!/usr/bin/env bash
# Side-by-side benchmark of raftkv and etcd on this machine (issue 6).
#
# Installs etcd-server (and protoc, for the etcd-client crate) with apt-get
# if missing, builds raftkv release with the cli crate's `etcd` feature,
# starts a 3-member etcd and a 3-node raftkv on loopback with fresh data
# dirs (both fsync every acknowledged write on a majority), runs every
# scenario against both, alternating, RUNS times, and prints medians
# (throughput, p50, p99) and the raftkv/etcd ratio, plus server CPU seconds
# and RSS per node. Everything is bounded and stops by itself.
#
# Env: RUNS (3), OPS (ops per run, 20000), WORK (a temp dir), RAFTKV_BIN and
# COMPARE_BIN (skip the build), TARGET (cargo target dir).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

RUNS=${RUNS:-3}
OPS=${OPS:-20000}
WORK=${WORK:-$(mktemp -d /tmp/raftkv-compare.XXXXXX)}
mkdir -p "$WORK"
TARGET=${TARGET:-${CARGO_TARGET_DIR:-target}}

need_apt=()
command -v etcd >/dev/null || need_apt+=(etcd-server)
command -v etcdctl >/dev/null || need_apt+=(etcd-client)
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
if [ ${#need_apt[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if [ -z "${RAFTKV_BIN:-}" ] || [ -z "${COMPARE_BIN:-}" ]; then
    CARGO_TARGET_DIR=$TARGET cargo build --release -p cli --features etcd >&2
    RAFTKV_BIN=$TARGET/release/raftkv
    COMPARE_BIN=$TARGET/release/raftkv-compare
fi

cleanup() {
    stop_pids "${RK_PID[@]:-}" "${ETCD_PID[@]:-}" 2>/dev/null || true
}
trap cleanup EXIT

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)," \
    "$(etcd --version | head -1), raftkv $(git rev-parse --short HEAD)"
raftkv_start "$RAFTKV_BIN" "$WORK"
etcd_start "$WORK"

# scenario name | workload | clients
SCENARIOS=(
    "put-1|put|1"
    "put-16|put|16"
    "put-64|put|64"
    "put-256|put|256"
    "get-lin-64|get|64"
    "get-ser-64|sget|64"
    "mixed-90/10-64|mixed|64"
)

RESULTS=$WORK/results.tsv
: >"$RESULTS"
cpu0_rk=$(cpu_ticks "${RK_PID[@]}")
cpu0_etcd=$(cpu_ticks "${ETCD_PID[@]}")
for s in "${SCENARIOS[@]}"; do
    IFS='|' read -r name workload clients <<<"$s"
    ops=$OPS
    [ "$clients" = 1 ] && ops=$((OPS / 10))
    for run in $(seq 1 "$RUNS"); do
        for backend in raftkv etcd; do
            if [ $backend = raftkv ]; then ep=$RAFTKV_EP; else ep=$ETCD_EP; fi
            out=$(timeout 300 "$COMPARE_BIN" "$workload" --backend $backend --endpoints "$ep" \
                --clients "$clients" --ops "$ops" --value-size 256 --keys 10000 --seed "$run") || {
                echo "$name $backend run $run failed" >&2
                continue
            }
            python3 - "$name" "$backend" "$out" >>"$RESULTS" <<'PY'
import json, sys
name, backend, r = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
l = r["latency_us"]
print(f"{name}\t{backend}\t{r['throughput_ops_s']:.0f}\t{l['p50']}\t{l['p99']}\t{r['errors']}")
PY
        done
    done
done
cpu1_rk=$(cpu_ticks "${RK_PID[@]}")
cpu1_etcd=$(cpu_ticks "${ETCD_PID[@]}")
hz=$(getconf CLK_TCK)

python3 - "$RESULTS" <<'PY'
import sys, statistics as st
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
order = []
data = {}
for name, backend, tput, p50, p99, err in rows:
    if name not in order:
        order.append(name)
    d = data.setdefault((name, backend), {"t": [], "p50": [], "p99": [], "err": 0})
    d["t"].append(float(tput)); d["p50"].append(int(p50) / 1000); d["p99"].append(int(p99) / 1000)
    d["err"] += int(err)
print(f"| scenario | raftkv ops/s | etcd ops/s | ratio | raftkv p50 ms | etcd p50 ms | raftkv p99 ms | etcd p99 ms | errors rk/etcd |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in order:
    r, e = data.get((n, "raftkv")), data.get((n, "etcd"))
    if not r or not e:
        print(f"| {n} | missing runs |"); continue
    m = lambda d, k: st.median(d[k])
    print(f"| {n} | {m(r,'t'):.0f} | {m(e,'t'):.0f} | {m(r,'t')/max(m(e,'t'),1e-9):.2f}x | "
          f"{m(r,'p50'):.2f} | {m(e,'p50'):.2f} | {m(r,'p99'):.2f} | {m(e,'p99'):.2f} | {r['err']}/{e['err']} |")
PY
echo
echo "server CPU seconds over all runs: raftkv $(( (cpu1_rk - cpu0_rk) / hz )), etcd $(( (cpu1_etcd - cpu0_etcd) / hz ))"
for i in 1 2 3; do
    echo "RSS node $i: raftkv $(( $(rss_kib "${RK_PID[$i]}") / 1024 )) MiB, etcd $(( $(rss_kib "${ETCD_PID[$i]}") / 1024 )) MiB"
done
echo "work dir: $WORK"
