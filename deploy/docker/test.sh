#!/usr/bin/env bash
# The containerized cluster, tested for real (deploy/docker/compose.yaml):
#
#  1. build the image (deploy/docker/build.sh; makes the base image with
#     debootstrap when it is missing), `docker-compose up`, wait healthy;
#  2. write and read through every published port with the raftkv CLI;
#     the nodes run as a non-root user;
#  3. `docker kill` the leader while a writer runs: a new leader serves and
#     every acknowledged write is there; the killed node comes back with
#     another IP address and catches up (peers find it again by name);
#  4. `docker network disconnect` the leader: the other two elect a leader
#     and serve; the cut-off node serves no linearizable read (and is
#     unhealthy); reconnected, it catches up;
#  5. `docker-compose restart`: every node stops gracefully on SIGTERM, and
#     the data is intact;
#  6. `down`, then `up` with the same volumes: the data is intact;
#  7. grow to 5 nodes (profile `five`: members add-learner, promote) and
#     keep serving with two of the five stopped;
#  8. remove everything it created: containers, network, volumes, the images
#     it tagged (and the base image if it made it).
#
# Usage: deploy/docker/test.sh [--binary PATH] [--keep]
#   --binary PATH  the raftkv binary for the image and the host-side CLI
#                  (default target/release/raftkv, built if missing; CI
#                  passes the debug build it already has)
#   --keep         on failure, leave the cluster up for a look (then clean
#                  up with: docker-compose -p raftkv-test -f
#                  deploy/docker/compose.yaml --profile five down -v)
#
# Needs: docker (engine running), docker-compose, python3; root for the
# debootstrap base image when no base image is present. Uses the Docker
# project raftkv-test and host ports 127.0.0.1:17001-17005 (clients) and
# 17101-17105 (web pages).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

binary=""
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "test.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
done

project="raftkv-test"
image="raftkv-test:latest"
base="raftkv-base:bookworm"
network="${project}_default"
squatter="raftkv-test-squatter"
export RAFTKV_IMAGE="$image" RAFTKV_CLIENT_PORT_PREFIX=1700 RAFTKV_HTTP_PORT_PREFIX=1710
endpoints="127.0.0.1:17001,127.0.0.1:17002,127.0.0.1:17003"
tmp="$(mktemp -d /tmp/raftkv-docker-test.XXXXXX)"
start=$SECONDS

stage() { echo; echo "== $1 ($((SECONDS - start)) s)"; }
ok() { echo "ok ($((SECONDS - start)) s): $*"; }
fail() {
    echo "FAILED: $*" >&2
    exit 1
}

for tool in docker docker-compose python3; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool not found"
done
docker info >/dev/null 2>&1 || fail "the Docker daemon does not answer (docker info)"

if [ -z "$binary" ]; then
    binary="$repo/target/release/raftkv"
    if [ ! -x "$binary" ]; then
        (cd "$repo" && cargo build --release -p cli --bin raftkv)
    fi
fi
binary="$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")"
[ -x "$binary" ] || fail "no raftkv binary at $binary"

compose() { docker-compose -p "$project" -f "$here/compose.yaml" --profile five "$@"; }
# The CLI on the host, through the published ports. The host cannot reach
# the nodes' own addresses (nodeN:7001), so the node it reaches forwards.
# (Options go after the command: `raftkv put k v --endpoints ...`.)
kv() { "$binary" "$@" --endpoints "$endpoints" --follower-forwarding --timeout "${kv_timeout:-10}"; }
cid() { compose ps -q "$1"; }
# The raftkv CLI inside node $1's container, against that node only.
in_node() {
    local n="$1"
    shift
    docker exec "$(cid "node$n")" raftkv "$@" --endpoints 127.0.0.1:7001
}
health() { docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$(cid "$1")"; }
ip_of() {
    docker inspect -f "{{with index .NetworkSettings.Networks \"$network\"}}{{.IPAddress}}{{end}}" "$(cid "$1")"
}

base_existed=0
docker image inspect "$base" >/dev/null 2>&1 && base_existed=1
cleanup() {
    local rc=$?
    if [ "$rc" != 0 ]; then
        echo "--- last lines of the nodes' logs:" >&2
        compose logs --no-color --tail 25 >&2 2>/dev/null || true
        if [ "$keep" = 1 ]; then
            echo "--keep: the cluster is left up (project $project)" >&2
            exit "$rc"
        fi
    fi
    stage "clean up"
    docker rm -f -v "$squatter" >/dev/null 2>&1 || true
    compose down -v --remove-orphans >/dev/null 2>&1 || true
    docker rmi "$image" >/dev/null 2>&1 || true
    if [ "$base_existed" = 0 ]; then
        docker rmi "$base" >/dev/null 2>&1 || true
    fi
    rm -rf "$tmp"
    local left
    left="$(docker ps -aq --filter "label=com.docker.compose.project=$project")"
    left+="$(docker volume ls -q --filter "label=com.docker.compose.project=$project")"
    left+="$(docker network ls -q --filter "name=$network")"
    if [ -n "$left" ]; then
        echo "clean up left Docker objects behind: $left" >&2
        rc=1
    else
        ok "removed containers, network, volumes and images of this run"
    fi
    echo "test.sh: $([ "$rc" = 0 ] && echo passed || echo FAILED) in $((SECONDS - start)) s"
    exit "$rc"
}
trap cleanup EXIT

# Waits until every named service's container is healthy.
wait_healthy() {
    local deadline=$((SECONDS + 90)) s
    for s in "$@"; do
        until [ "$(health "$s")" = healthy ]; do
            [ "$SECONDS" -lt "$deadline" ] || fail "$s not healthy within 90 s (is: $(health "$s"))"
            sleep 1
        done
    done
    ok "healthy: $*"
}

# The id of the leader that the reachable nodes report (0 if none).
leader() {
    # (`status` exits 5 when a node is unreachable; its JSON still counts.)
    { "$binary" status --json --endpoints "$endpoints" --timeout 3 2>/dev/null || true; } | python3 -c '
import json, sys
nodes = [n for n in json.load(sys.stdin)["nodes"] if n.get("ok")]
leaders = [n for n in nodes if n["role"] == "leader"]
print(max(leaders, key=lambda n: n["term"])["id"] if leaders else 0)' 2>/dev/null || echo 0
}

# Waits for a leader other than $1 (0: any); prints its id.
wait_leader() {
    local not="$1" deadline=$((SECONDS + 30)) l
    while [ "$SECONDS" -lt "$deadline" ]; do
        l="$(leader)"
        if [ "$l" != 0 ] && [ "$l" != "$not" ]; then
            echo "$l"
            return
        fi
        sleep 0.5
    done
    fail "no leader (other than $not) within 30 s"
}

# Checks that every acknowledged write (keys ack/N, values vN) and the
# other keys written so far are readable (linearizable, through the
# published ports).
check_data() {
    kv scan --prefix ack/ --limit 10000 --json >"$tmp/scan.json" ||
        fail "scan after $1"
    python3 - "$tmp/acked" "$tmp/scan.json" <<'EOF' || fail "acknowledged writes lost after $1"
import base64, json, sys
acked = {int(l) for l in open(sys.argv[1]) if l.strip()}
doc = json.load(open(sys.argv[2]))
if doc["more"]:
    sys.exit("more than one scan's worth of ack/* keys")
items = doc["kvs"]
# (--json carries keys and values in base64.)
have = {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"]).decode() for kv in items}
lost = [i for i in sorted(acked) if have.get(f"ack/{i}") != f"v{i}"]
if lost:
    sys.exit(f"{len(lost)} of {len(acked)} acknowledged writes missing, e.g. {lost[:5]}")
print(f"all {len(acked)} acknowledged writes present ({len(have)} keys ack/*)")
EOF
    [ "$(kv get greeting)" = hello ] || fail "greeting lost after $1"
    ok "data intact after $1"
}

# Waits until node $1 serves key $2 = $3 from its own copy (serializable
# read inside its container): it has caught up.
wait_caught_up() {
    local n="$1" key="$2" want="$3" deadline=$((SECONDS + 60))
    until [ "$(in_node "$n" get --serializable "$key" 2>/dev/null)" = "$want" ]; do
        [ "$SECONDS" -lt "$deadline" ] || fail "node $n did not catch up ($key != $want) within 60 s"
        sleep 0.5
    done
    ok "node $n caught up ($key = $want)"
}

stage "build the image"
# An image left by an earlier run would only lose its tag (and linger).
docker rmi "$image" >/dev/null 2>&1 || true
"$here/build.sh" --binary "$binary" --tag "$image"
[ "$base_existed" = 1 ] || ok "made the base image $base from Debian packages"
echo "image size: $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.1f MB", $1/1e6}')"

stage "docker-compose up (3 nodes)"
# Leftovers of an earlier run that could not clean up.
docker rm -f -v "$squatter" >/dev/null 2>&1 || true
compose down -v --remove-orphans >/dev/null 2>&1 || true
compose up -d node1 node2 node3
wait_healthy node1 node2 node3
[ "$(docker inspect -f '{{.Config.User}}' "$image")" = raftkv:raftkv ] || fail "image user is not raftkv"
uid="$(docker exec "$(cid node1)" awk '/^Uid:/ {print $2}' /proc/1/status)"
[ "$uid" = 10001 ] || fail "raftkv runs as uid $uid, not 10001"
ok "the server runs as uid 10001 (raftkv), not root"

stage "write and read through the published ports"
kv put greeting hello >/dev/null
for i in 1 2 3; do
    got="$("$binary" get greeting --endpoints "127.0.0.1:1700$i" --follower-forwarding)"
    [ "$got" = hello ] || fail "node $i (port 1700$i) read '$got'"
done
ok "each node's port serves a linearizable read of the write"
python3 - <<'EOF' || fail "web page"
import json, urllib.request
for i in (1, 2, 3):
    s = json.load(urllib.request.urlopen(f"http://127.0.0.1:1710{i}/api/status", timeout=5))
    assert s, s
page = urllib.request.urlopen("http://127.0.0.1:17101/", timeout=5).read()
assert b"raftkv" in page, page[:200]
EOF
ok "web page and /api/status answer on ports 17101-17103"

stage "docker kill the leader while a client writes"
: >"$tmp/acked"
writer() {
    local i=0
    while [ ! -e "$tmp/stop" ]; do
        i=$((i + 1))
        if kv_timeout=5 kv put "ack/$i" "v$i" >/dev/null 2>&1; then
            echo "$i" >>"$tmp/acked"
        fi
    done
}
writer &
writer_pid=$!
old="$(wait_leader 0)"
old_ip="$(ip_of "node$old")"
sleep 2
docker kill "$(cid "node$old")" >/dev/null
echo "killed node $old (the leader, at $old_ip)"
new="$(wait_leader "$old")"
ok "node $new leads"
sleep 3
touch "$tmp/stop"
wait "$writer_pid"
rm -f "$tmp/stop"
[ "$(wc -l <"$tmp/acked")" -gt 10 ] || fail "the writer got only $(wc -l <"$tmp/acked") writes acknowledged"
check_data "the leader was killed"
last="$(tail -1 "$tmp/acked")"
# Hold the killed node's address, so that it comes back with another one
# and its peers must look its name up again.
docker run -d --name "$squatter" --network "$network" --no-healthcheck --entrypoint sleep "$image" 600 >/dev/null
docker start "$(cid "node$old")" >/dev/null
new_ip="$(ip_of "node$old")"
[ "$new_ip" != "$old_ip" ] || fail "node $old came back at the same address $old_ip"
echo "node $old is back at $new_ip (was $old_ip)"
wait_caught_up "$old" "ack/$last" "v$last"
wait_healthy "node$old"
docker rm -f -v "$squatter" >/dev/null

stage "docker network disconnect the leader"
cut="$(wait_leader 0)"
docker network disconnect "$network" "$(cid "node$cut")"
echo "cut node $cut (the leader) off the network"
kv put partition majority >/dev/null || fail "the majority did not take a write"
new="$(wait_leader "$cut")"
[ "$(kv get partition)" = majority ] || fail "the majority did not read its write"
ok "nodes without $cut elected node $new and serve writes and reads"
if in_node "$cut" get greeting --timeout 3 >"$tmp/cut.out" 2>&1; then
    fail "the cut-off node served a linearizable read: $(cat "$tmp/cut.out")"
fi
ok "the cut-off node serves no linearizable read ($(head -c 120 "$tmp/cut.out"))"
code=0
in_node "$cut" get --serializable partition >/dev/null 2>&1 || code=$?
[ "$code" = 3 ] || fail "the cut-off node's own copy: exit $code, expected 3 (key not found there yet)"
ok "its own (serializable) copy is stale: it never saw the majority's write"
deadline=$((SECONDS + 30))
until [ "$(health "node$cut")" = unhealthy ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "node $cut still $(health "node$cut") while cut off"
    sleep 1
done
ok "node $cut reports unhealthy while cut off"
docker network connect --alias "node$cut" "$network" "$(cid "node$cut")"
wait_caught_up "$cut" partition majority
wait_healthy "node$cut"

stage "docker-compose restart"
t=$SECONDS
since="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
compose restart node1 node2 node3
echo "restarted in $((SECONDS - t)) s"
# Each node stopped by itself on SIGTERM, not by SIGKILL after the grace
# period (a peer connection left half-open by the cut once held it up).
for n in 1 2 3; do
    # (Into a file first: `grep -q` would end the pipe early, and pipefail
    # would count docker's SIGPIPE as a failure.)
    docker logs --since "$since" "$(cid "node$n")" >"$tmp/node$n.log" 2>&1
    grep -q 'node stopped node=' "$tmp/node$n.log" ||
        fail "node $n did not stop gracefully on SIGTERM"
done
ok "every node stopped gracefully"
wait_healthy node1 node2 node3
check_data "docker-compose restart"

stage "docker-compose down, then up with the same volumes"
compose down
compose up -d node1 node2 node3
wait_healthy node1 node2 node3
check_data "down and up"

stage "grow to 5 nodes (profile five)"
compose up -d node4 node5
for n in 4 5; do
    kv members add-learner "$n" "node$n:7201" >/dev/null
    wait_caught_up "$n" partition majority
    # The leader refuses to promote a learner it does not see caught up
    # yet (FAILED_PRECONDITION): ask again for a while.
    tries=0
    until kv members promote "$n" >/dev/null 2>"$tmp/promote.err"; do
        tries=$((tries + 1))
        [ "$tries" -lt 20 ] || fail "promote $n: $(cat "$tmp/promote.err")"
        sleep 1
    done
done
voters="$(kv members --json | python3 -c '
import json, sys
print(sum(1 for m in json.load(sys.stdin)["members"] if m["role"] == "voter"))')"
[ "$voters" = 5 ] || fail "$voters voters, expected 5"
wait_healthy node1 node2 node3 node4 node5
ok "5 voters"
endpoints="$endpoints,127.0.0.1:17004,127.0.0.1:17005"
l="$(wait_leader 0)"
stopped=()
for n in 1 2 3 4 5; do
    if [ "$n" != "$l" ] && [ "${#stopped[@]}" -lt 2 ]; then
        stopped+=("$n")
        docker stop "$(cid "node$n")" >/dev/null
    fi
done
kv put five "${stopped[*]} down" >/dev/null || fail "no write with nodes ${stopped[*]} stopped"
[ "$(kv get five)" = "${stopped[*]} down" ] || fail "no read with nodes ${stopped[*]} stopped"
ok "the 5-node cluster serves with nodes ${stopped[*]} stopped"
check_data "growing to 5 nodes"
