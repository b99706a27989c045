#!/usr/bin/env bash
# Build the wheelhouse the images install from: build/wheelhouse/ (build/ is ignored by git)
#
#   deps/     every runtime dependency of deploybench as a wheel (torch==2.13.0 included,
#             the CPU build), resolved and built on this machine by pip
#   project/  deploybench's own wheel
#
# It is the Docker build context of docker/*.Dockerfile: the images run
# `pip install --no-index` from it, so they build where no package index is reachable.
# Reused when up to date: deps/ is rebuilt when pyproject.toml, the Python version or the
# machine changes; project/ when the packaged source changes.
#
# Environment: PYTHON (default .venv/bin/python, else python3): the Python whose pip builds
# the wheels; it must be the version the images run (3.11: Debian bookworm's, python:3.11-*).
# One wheelhouse at a time: a different Python rebuilds deps/.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=build/wheelhouse
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    [ -x .venv/bin/python ] && PYTHON=.venv/bin/python
fi

hash_of() { sha256sum "$@" | sha256sum | cut -c1-16; }
version=$("$PYTHON" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
[ "$version" = cp311 ] || echo "docker/wheelhouse.sh: note: $PYTHON is $version; the local \
base image and python:3.11-slim run Python 3.11 (cp311)"
deps_key="$(hash_of pyproject.toml) $version $(uname -m)"
# What the project's wheel holds: its packages, pyproject.toml and the README (its long
# description). Files git does not ignore, committed or not; deleted ones left out.
mapfile -t sources < <(git ls-files -co --exclude-standard -- \
    harness targets scenarios reports pyproject.toml README.md | sort -u \
    | while IFS= read -r f; do [ -e "$f" ] && printf '%s\n' "$f"; done)
project_key=$(hash_of "${sources[@]}")
# pip builds from a clean copy of exactly those files: setuptools' own build/lib in the
# work tree can hold modules deleted since, and would put them in the wheel.
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
cp --parents "${sources[@]}" "$src"

timed() {  # timed WHAT COMMAND...: run it, print how long it took
    local what=$1 started=$EPOCHREALTIME
    shift
    "$@"
    awk -v what="$what" -v a="$started" -v b="$EPOCHREALTIME" \
        'BEGIN { printf "docker/wheelhouse.sh:   %s took %.1f s\n", what, b - a }'
}

mkdir -p "$OUT"
if [ "$(cat "$OUT/deps/.key" 2>/dev/null)" = "$deps_key" ]; then
    echo "docker/wheelhouse.sh: $OUT/deps is up to date; keeping it"
else
    echo "docker/wheelhouse.sh: building $OUT/deps (pip wheel: deploybench's dependencies)"
    rm -rf "$OUT/deps.tmp"
    # torch is pinned in pyproject.toml to the version whose CPU wheel lies on this
    # machine's disk (pip's find-links); any other would be a multi-GB CUDA build.
    timed "pip wheel (dependencies)" \
        "$PYTHON" -m pip wheel --quiet --wheel-dir "$OUT/deps.tmp" "$src"
    rm -f "$OUT"/deps.tmp/deploybench-*.whl
    echo "$deps_key" >"$OUT/deps.tmp/.key"
    rm -rf "$OUT/deps"
    mv "$OUT/deps.tmp" "$OUT/deps"
fi

if [ "$(cat "$OUT/project/.key" 2>/dev/null)" = "$project_key" ]; then
    echo "docker/wheelhouse.sh: $OUT/project is up to date; keeping it"
else
    echo "docker/wheelhouse.sh: building $OUT/project (deploybench's own wheel)"
    rm -rf "$OUT/project.tmp"
    timed "pip wheel (deploybench)" \
        "$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$OUT/project.tmp" "$src"
    echo "$project_key" >"$OUT/project.tmp/.key"
    rm -rf "$OUT/project"
    mv "$OUT/project.tmp" "$OUT/project"
fi
echo "docker/wheelhouse.sh: $OUT: $(du -sh "$OUT" | cut -f1)," \
     "$(find "$OUT" -name '*.whl' | wc -l) wheels"
