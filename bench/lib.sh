# Shared helpers for the bench/*.sh scripts (sourced, not run).
# Clusters listen on loopback only; every wait is bounded.
# raftkv: clients 127.0.0.1:7101-7103, peers 127.0.0.1:7301-7303 (client
# port + 200, with a cluster secret in WORKDIR/cluster-secret); etcd: clients 127.0.0.1:2479/2579/2679,
# peers 127.0.0.1:2480/2580/2680. RAFTKV_FLAGS and ETCD_FLAGS add flags to
# every node (e.g. shorter election timeouts).

RAFTKV_EP="127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103"
ETCD_EP="127.0.0.1:2479,127.0.0.1:2579,127.0.0.1:2679"
declare -A RK_PID ETCD_PID

# raftkv_start_node BIN WORKDIR ID (--bootstrap makes the cluster on the
# first start; a restart of an existing data dir ignores it)
raftkv_start_node() {
    local bin=$1 w=$2 i=$3
    mkdir -p "$w/rk$i"
    if [ ! -f "$w/cluster-secret" ]; then
        (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$w/cluster-secret")
    fi
    "$bin" server --id "$i" --listen "127.0.0.1:710$i" --peer-listen "127.0.0.1:730$i" \
        --peers "1=127.0.0.1:7301,2=127.0.0.1:7302,3=127.0.0.1:7303" \
        --cluster-secret-file "$w/cluster-secret" \
        --data-dir "$w/rk$i" --bootstrap --log-level warn ${RAFTKV_FLAGS:-} >>"$w/rk$i.log" 2>&1 &
    RK_PID[$i]=$!
}

# raftkv_start BIN WORKDIR: three fresh nodes; waits (bounded) for a leader.
raftkv_start() {
    local bin=$1 w=$2
    rm -rf "$w"/rk1 "$w"/rk2 "$w"/rk3
    for i in 1 2 3; do raftkv_start_node "$bin" "$w" "$i"; done
    for _ in $(seq 1 100); do
        if "$bin" put --endpoints "$RAFTKV_EP" --timeout 1 warmup x >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    echo "raftkv cluster did not come up (logs in $w)" >&2
    return 1
}

# etcd_start_node WORKDIR ID (1..3)
etcd_start_node() {
    local w=$1 i=$2
    local c=$((2379 + 100 * i)) p=$((2380 + 100 * i))
    mkdir -p "$w/etcd$i"
    etcd --name "e$i" --data-dir "$w/etcd$i" \
        --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
        --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
        --initial-cluster "e1=http://127.0.0.1:2480,e2=http://127.0.0.1:2580,e3=http://127.0.0.1:2680" \
        --initial-cluster-token bench --initial-cluster-state "${ETCD_STATE:-new}" \
        --log-level warn ${ETCD_FLAGS:-} >>"$w/etcd$i.log" 2>&1 &
    ETCD_PID[$i]=$!
}

# etcd_start WORKDIR: a fresh 3-member cluster; waits (bounded) for a leader.
etcd_start() {
    local w=$1
    rm -rf "$w"/etcd1 "$w"/etcd2 "$w"/etcd3
    for i in 1 2 3; do ETCD_STATE=new etcd_start_node "$w" "$i"; done
    for _ in $(seq 1 100); do
        if ETCDCTL_API=3 etcdctl --endpoints "$ETCD_EP" --command-timeout=1s put warmup x >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    echo "etcd cluster did not come up (logs in $w)" >&2
    return 1
}

# stop_pids PID...: SIGCONT (a paused one), SIGTERM, then SIGKILL after 5 s.
stop_pids() {
    local p
    for p in "$@"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
    for _ in $(seq 1 50); do
        local alive=0
        for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && return 0
        sleep 0.1
    done
    for p in "$@"; do kill -9 "$p" 2>/dev/null || true; done
    wait "$@" 2>/dev/null || true
}

# cpu_ticks PID...: utime+stime of the processes, in clock ticks.
cpu_ticks() {
    local p t=0
    for p in "$@"; do
        if [ -r "/proc/$p/stat" ]; then
            # Fields 14 and 15 after the ")" that closes the command name.
            local rest
            rest=$(sed 's/^.*) //' "/proc/$p/stat")
            set -- $rest
            t=$((t + ${12} + ${13}))
        fi
    done
    echo "$t"
}

# rss_kib PID: resident set size in KiB.
rss_kib() {
    awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0
}
