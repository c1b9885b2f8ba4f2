#!/usr/bin/env bash
# Builds the raftkv image (deploy/docker/Dockerfile) from a raftkv binary.
#
#   deploy/docker/build.sh                       # target/release/raftkv (built if missing)
#   deploy/docker/build.sh --binary target/debug/raftkv --tag raftkv:ci
#   deploy/docker/build.sh --build-in-docker     # compile in a rust image (needs a registry)
#
# The base image (ARG BASE, default debian:bookworm-slim) is used when it is
# already present. When it is not, and --pull is not given, the base is made
# here without any registry: `debootstrap --variant=minbase` writes a minimal
# Debian root file system from Debian's packages, `docker import` turns it
# into the image raftkv-base:bookworm, and the Dockerfile is built on that.
# Needs root for debootstrap (Debian package `debootstrap`).
#
# Environment: RAFTKV_DEBIAN_MIRROR (default http://deb.debian.org/debian),
# RAFTKV_DEBIAN_SUITE (default bookworm, must match the binary's glibc).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

binary=""
tag="raftkv:latest"
base="debian:bookworm-slim"
pull=0
in_docker=0
usage() {
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    echo
    echo "options: --binary PATH  --tag NAME:TAG  --base IMAGE  --pull  --build-in-docker"
}
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        --tag) tag="$2"; shift 2 ;;
        --base) base="$2"; shift 2 ;;
        --pull) pull=1; shift ;;
        --build-in-docker) in_docker=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "build.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
done

local_base="raftkv-base:${RAFTKV_DEBIAN_SUITE:-bookworm}"
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# Makes $local_base from Debian's packages (no registry involved).
make_base() {
    if ! command -v debootstrap >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "build.sh: installing debootstrap"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
        else
            echo "build.sh: the base image $base is missing and debootstrap is not" \
                "installed: install it (apt-get install debootstrap) or use --pull" >&2
            exit 1
        fi
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "build.sh: debootstrap needs root to make the base image $local_base" >&2
        exit 1
    fi
    local root
    root="$(mktemp -d /tmp/raftkv-rootfs.XXXXXX)"
    # shellcheck disable=SC2064
    trap "rm -rf '$root'" EXIT
    local started=$SECONDS
    echo "build.sh: debootstrap --variant=minbase ${RAFTKV_DEBIAN_SUITE:-bookworm} into $root"
    debootstrap --variant=minbase "${RAFTKV_DEBIAN_SUITE:-bookworm}" "$root" \
        "${RAFTKV_DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$root.log" 2>&1 || {
        tail -20 "$root.log" >&2
        echo "build.sh: debootstrap failed (full log: $root.log)" >&2
        exit 1
    }
    rm -f "$root.log"
    # Slim it as the -slim images are: no package lists, caches, docs,
    # manuals or translations (none is needed to run a binary).
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
        "$root"/var/cache/apt/archives/*.deb "$root"/usr/share/doc/* \
        "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
        "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/*
    tar -C "$root" --numeric-owner -c . |
        docker import \
            --change 'CMD ["/bin/bash"]' \
            --change 'LABEL org.raftkv.base=debootstrap' \
            - "$local_base" >/dev/null
    rm -rf "$root"
    trap - EXIT
    echo "build.sh: made $local_base in $((SECONDS - started)) s" \
        "($(docker image inspect -f '{{.Size}}' "$local_base" | awk '{printf "%.0f MB", $1/1e6}'))"
}

# The base to build on: the named one if present (or pulled with --pull),
# else the local debootstrapped one.
if have_image "$base"; then
    use_base="$base"
elif [ "$pull" = 1 ]; then
    docker pull "$base"
    use_base="$base"
else
    have_image "$local_base" || make_base
    use_base="$local_base"
fi

context="$(mktemp -d /tmp/raftkv-context.XXXXXX)"
# shellcheck disable=SC2064
trap "rm -rf '$context'" EXIT

if [ "$in_docker" = 1 ]; then
    # Compile inside a Rust image (pulls rust:1-bookworm), then copy the
    # binary out of the builder image.
    builder="raftkv-builder:tmp-$$"
    docker build -f "$here/Dockerfile.build" -t "$builder" "$repo"
    cid="$(docker create "$builder")"
    docker cp "$cid:/raftkv" "$context/raftkv"
    docker rm "$cid" >/dev/null
    docker rmi "$builder" >/dev/null
else
    if [ -z "$binary" ]; then
        binary="$repo/target/release/raftkv"
        if [ ! -x "$binary" ]; then
            echo "build.sh: building $binary (cargo build --release -p cli)"
            (cd "$repo" && cargo build --release -p cli --bin raftkv)
        fi
    fi
    if [ ! -x "$binary" ]; then
        echo "build.sh: no executable at $binary (build it or pass --binary PATH)" >&2
        exit 1
    fi
    cp "$binary" "$context/raftkv"
fi
# Only the binary and the Dockerfile go to the daemon: no repository, no
# target directory.
strip "$context/raftkv" 2>/dev/null || echo "build.sh: strip not found; binary left unstripped"
chmod 0755 "$context/raftkv"
cp "$here/Dockerfile" "$context/Dockerfile"
docker build --build-arg "BASE=$use_base" -t "$tag" "$context"
size="$(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')"
echo "build.sh: built $tag on $use_base: $size ($(du -h "$context/raftkv" | cut -f1) of it the raftkv binary)"
