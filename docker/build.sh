#!/usr/bin/env bash
# Build the images deploybench-flask, deploybench-fastapi, deploybench-grpc and
# deploybench-lambda (or those named: docker/build.sh flask) from the wheelhouse, on the local base image that
# docker/setup.sh makes. Reuses what is up to date: the wheelhouse (docker/wheelhouse.sh)
# and Docker's build cache, so a second run with nothing changed takes seconds.
#
# Environment:
#   DEPLOYBENCH_BASE_IMAGE  BASE_IMAGE for every Dockerfile (default deploybench-base:bookworm;
#                           set it to "public" for each Dockerfile's own default, e.g.
#                           python:3.11-slim, where a registry is in reach)
#   DEPLOYBENCH_IMAGE_TAG   tag of the images built (default latest)
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${DEPLOYBENCH_BASE_IMAGE:-deploybench-base:bookworm}
TAG=${DEPLOYBENCH_IMAGE_TAG:-latest}
CONTEXT=build/wheelhouse
LOG_DIR=build/docker-logs
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(flask fastapi grpc lambda)

# One build at a time on this machine: the image names are the engine's, not this work
# tree's, and the prune at the end must not catch another build's steps half-way.
exec 9>"${TMPDIR:-/tmp}/deploybench-docker-build.lock"
if ! flock --nonblock 9; then
    echo "docker/build.sh: another build runs on this machine; waiting for it"
    flock 9
fi

docker/wheelhouse.sh
mkdir -p "$LOG_DIR"
base_arg=()
if [ "$BASE_IMAGE" != public ]; then
    base_arg=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
    docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || { echo "error: no base image \
($BASE_IMAGE). Run docker/setup.sh (it builds one), or set DEPLOYBENCH_BASE_IMAGE" >&2; exit 1; }
fi

for target in "${targets[@]}"; do
    [ -f "docker/$target.Dockerfile" ] || { echo "error: no docker/$target.Dockerfile \
(a target to build: flask, fastapi, grpc or lambda)" >&2; exit 2; }
    started=$EPOCHREALTIME
    log="$LOG_DIR/$target.log"
    : >"$log"
    # The build stage gets a tag of its own: it is Docker's cache for the next build, and
    # when a newer build takes the tag the old stage becomes dangling, for the prune below.
    # --network host: no bridge exists (dockerd runs with --bridge=none); nothing is
    # fetched over it.
    for stage in build final; do
        name="deploybench-$target:$TAG"
        target_arg=()
        if [ "$stage" = build ]; then
            name="deploybench-$target:$TAG-build"
            target_arg=(--target build)
        fi
        if ! docker build --network host "${base_arg[@]}" "${target_arg[@]}" \
                -f "docker/$target.Dockerfile" -t "$name" "$CONTEXT" >>"$log" 2>&1; then
            tail -n 30 "$log" >&2
            echo "error: docker build of $name failed (log: $log)" >&2
            exit 1
        fi
    done
    awk -v what="deploybench-$target:$TAG" -v a="$started" -v b="$EPOCHREALTIME" \
        'BEGIN { printf "docker/build.sh: %s built in %.1f s ", what, b - a }'
    docker image ls "deploybench-$target:$TAG" --format '({{.Size}})'
done
# Images of earlier builds that newer ones replaced: each holds a full copy of the venv.
docker image prune --force --filter label=org.deploybench.image >/dev/null
