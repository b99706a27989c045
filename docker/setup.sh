#!/usr/bin/env bash
# Make a Docker engine answer on this machine and a local base image exist, so the
# images in docker/ build with no registry in reach. Idempotent: run it as often as you
# like (CI runs it before the tests); each step is skipped when its result is there.
#
#   1. no engine answers: install Debian's docker.io, debootstrap and docker-compose, and
#      start dockerd in the background (log and PID file below), on the overlay2 storage
#      driver where it works, else vfs;
#   2. no image $DEPLOYBENCH_BASE_IMAGE (deploybench-base:bookworm): debootstrap a
#      minimal Debian bookworm with python3 and python3-venv, from the Debian mirror this
#      machine's own apt sources name, and `docker import` it. The image is the cache
#      between runs on one machine.
#
# Environment:
#   DEPLOYBENCH_BASE_IMAGE      name of the base image (default deploybench-base:bookworm)
#   DEPLOYBENCH_DEBIAN_MIRROR   Debian mirror for debootstrap (default: read from
#                               /etc/apt/sources.list and /etc/apt/sources.list.d/*)
#   DEPLOYBENCH_DOCKERD_PIDFILE where the PID of the dockerd started here is written
#                               (default /run/deploybench-dockerd.pid)
#   DEPLOYBENCH_DOCKERD_LOG     its log (default /var/log/deploybench-dockerd.log)
#   DEPLOYBENCH_DOCKER_STORAGE_DRIVER  storage drivers to try, in order (default "overlay2 vfs")
set -euo pipefail

BASE_IMAGE=${DEPLOYBENCH_BASE_IMAGE:-deploybench-base:bookworm}
SUITE=bookworm  # Debian 12: python3 is 3.11, as the wheelhouse's cp311 wheels need
# Bump when the recipe below changes: a base image with another version is rebuilt.
BASE_RECIPE=2
PIDFILE=${DEPLOYBENCH_DOCKERD_PIDFILE:-/run/deploybench-dockerd.pid}
LOG=${DEPLOYBENCH_DOCKERD_LOG:-/var/log/deploybench-dockerd.log}
# dockerd answers within a second or two here (containerd included);
# a minute means something is wrong, and its log says what.
DOCKERD_WAIT_S=60

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi

# One setup at a time on this machine: two would start two dockerds.
exec 9>"${TMPDIR:-/tmp}/deploybench-docker-setup.lock"
flock 9

step_started=0
step() { step_started=$EPOCHREALTIME; echo "docker/setup.sh: $*"; }
took() { awk -v what="$1" -v a="$step_started" -v b="$EPOCHREALTIME" \
             'BEGIN { printf "docker/setup.sh:   %s took %.1f s\n", what, b - a }'; }
die() { echo "error: $*" >&2; exit 1; }

engine_answers() { $sudo docker info >/dev/null 2>&1; }

# -- 1. the engine -------------------------------------------------------------------
if engine_answers; then
    echo "docker/setup.sh: a Docker engine answers; using it"
else
    if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null \
            || ! command -v docker-compose >/dev/null; then
        step "installing docker.io, debootstrap, docker-compose (apt)"
        $sudo apt-get update -qq
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            docker.io debootstrap docker-compose >/dev/null
        took "apt-get install"
    fi
    if [ -s "$PIDFILE" ] && $sudo kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        die "dockerd $(cat "$PIDFILE") (from $PIDFILE) runs but does not answer \
\`docker info\`. See $LOG; stop it (kill $(cat "$PIDFILE")) and run docker/setup.sh again"
    fi
    # overlay2 where the kernel and the file system under /var/lib/docker allow it (a
    # container's file system is then a thin layer: created in under a second); else vfs,
    # which works on any file system but copies the whole image for every container and
    # every build step (~15 s for a 1.3 GB image here).
    read -r -a drivers <<<"${DEPLOYBENCH_DOCKER_STORAGE_DRIVER:-overlay2 vfs}"
    for driver in "${drivers[@]}"; do
        step "starting dockerd --storage-driver=$driver (log: $LOG, PID file: $PIDFILE)"
        # No iptables or bridge: this machine may not allow either, and every container
        # here runs with --network host.
        # Not root: the socket is given to this user's group, so docker works without sudo.
        # 9>&-: the daemon must not inherit the lock's descriptor, or it would hold the lock
        # for its whole life and the next setup.sh would wait on it forever.
        $sudo sh -c "nohup dockerd --iptables=false --bridge=none --storage-driver=$driver \
            ${sudo:+--group $(id -gn)} >>'$LOG' 2>&1 </dev/null 9>&- & echo \$! >'$PIDFILE'"
        waited=0
        until engine_answers; do
            if ! $sudo kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
                echo "docker/setup.sh:   dockerd exited with --storage-driver=$driver:" \
                     "$(grep -E 'level=(error|fatal)' "$LOG" | tail -n 1)"
                break
            fi
            if [ "$waited" -ge $((DOCKERD_WAIT_S * 10)) ]; then
                tail -n 20 "$LOG" >&2 || true
                die "dockerd did not answer within ${DOCKERD_WAIT_S} s (see $LOG above)"
            fi
            sleep 0.1
            waited=$((waited + 1))
        done
        if engine_answers; then
            took "dockerd start"
            break
        fi
    done
    engine_answers || die "dockerd did not start with any of: ${drivers[*]} (see $LOG). \
Fix what it says, or name a driver: DEPLOYBENCH_DOCKER_STORAGE_DRIVER=vfs docker/setup.sh"
fi
if ! command -v docker-compose >/dev/null; then
    echo "docker/setup.sh: note: docker-compose is not installed (apt-get install docker-compose);" \
         "tests/integration/test_docker.py needs it to validate docker-compose.yml"
fi

# -- 2. the base image ---------------------------------------------------------------
# The Debian mirror this machine's apt already uses for $SUITE: one-line sources
# ("deb [opts] URL SUITE COMPONENTS") or deb822 ones ("URIs:" / "Suites:" stanzas).
debian_mirror() {
    local f found
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
             /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        case "$f" in
            *.sources)  # deb822: one stanza per paragraph
                found=$(awk -v suite="$SUITE" 'BEGIN { RS = "" } {
                    types = ""; uris = ""; suites = ""; enabled = "yes"
                    n = split($0, lines, "\n")
                    for (i = 1; i <= n; i++) {
                        line = lines[i]
                        if (line ~ /^[ \t]*#/) continue
                        key = line; sub(/:.*/, "", key); value = line; sub(/^[^:]*:[ \t]*/, "", value)
                        if (key == "Types") types = value
                        if (key == "URIs") uris = value
                        if (key == "Suites") suites = value
                        if (key == "Enabled") enabled = value
                    }
                    if (enabled != "no" && (" " types " ") ~ / deb / && (" " suites " ") ~ (" " suite " ")) {
                        split(uris, u, " "); print u[1]; exit
                    }
                }' "$f") ;;
            *)  # one-line: deb [options] URL SUITE COMPONENTS...
                found=$(awk -v suite="$SUITE" '$1 == "deb" {
                    i = 2
                    if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                    if ($(i + 1) == suite) { print $i; exit }
                }' "$f") ;;
        esac
        if [ -n "$found" ]; then
            echo "$found"
            return
        fi
    done
}

recipe=$($sudo docker image inspect --format '{{index .Config.Labels "org.deploybench.base-recipe"}}' \
    "$BASE_IMAGE" 2>/dev/null || true)
if [ "$recipe" = "$BASE_RECIPE" ]; then
    echo "docker/setup.sh: base image $BASE_IMAGE (recipe $BASE_RECIPE) exists; keeping it"
else
    [ -z "$recipe" ] || echo "docker/setup.sh: base image $BASE_IMAGE is of recipe $recipe; rebuilding"
    mirror=${DEPLOYBENCH_DEBIAN_MIRROR:-$(debian_mirror)}
    [ -n "$mirror" ] || die "no Debian $SUITE mirror in /etc/apt/sources.list{,.d/*}. \
Set DEPLOYBENCH_DEBIAN_MIRROR=URL (a Debian mirror) and run docker/setup.sh again"
    command -v debootstrap >/dev/null || die "debootstrap is not installed. \
Run: apt-get install debootstrap, then docker/setup.sh again"
    rootfs=$(mktemp -d /var/tmp/deploybench-rootfs.XXXXXX)
    trap '$sudo rm -rf "$rootfs"' EXIT
    chmod 0755 "$rootfs"  # it becomes the image's /: mktemp made it 0700
    step "debootstrap --variant=minbase $SUITE from $mirror (with python3, python3-venv)"
    # python3-venv brings ensurepip's bundled pip wheel: the images make their venv with
    # it, and need no pip from a package index.
    if ! $sudo debootstrap --variant=minbase --include=python3,python3-venv \
            "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1; then
        tail -n 20 "$rootfs.log" >&2
        die "debootstrap failed (log: $rootfs.log). Check the mirror ($mirror) answers"
    fi
    took "debootstrap"
    step "docker import -> $BASE_IMAGE"
    # What slim images leave out too: package caches and lists, documentation.
    $sudo rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
    # An imported image has no environment at all: PATH as Debian's images set it.
    $sudo tar -C "$rootfs" -c . | $sudo docker import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'ENV LANG=C.UTF-8' -c "LABEL org.deploybench.base-recipe=$BASE_RECIPE" \
        -c 'CMD ["/bin/bash"]' \
        -m "debootstrap --variant=minbase $SUITE + python3 python3-venv" - "$BASE_IMAGE" >/dev/null
    took "docker import"
    rm -f "$rootfs.log"
fi
$sudo docker image ls "$BASE_IMAGE" --format 'docker/setup.sh: {{.Repository}}:{{.Tag}} {{.Size}}'
