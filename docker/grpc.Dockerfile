# The grpc target (grpc.server, health, reflection: `deploybench serve grpc`) as a container.
#
# Build context: the wheelhouse (docker/wheelhouse.sh builds build/wheelhouse/). Nothing is
# fetched from a package index, so it builds with no index in reach once BASE_IMAGE is at
# hand (docker/build.sh builds all four images on the local base image):
#   docker build -f docker/grpc.Dockerfile -t deploybench-grpc build/wheelhouse
#   docker run --rm --network host --cpuset-cpus 1 --memory 2g deploybench-grpc
# Arguments after the image name are appended to the entry point's (the last of a
# repeated option wins: --port 8001). Without --cpus: one server per CPU of the container's
# cpuset, sharing the port.

ARG BASE_IMAGE=python:3.11-slim

# -- build stage: a venv with the dependencies, deploybench, and the digits model trained
# at build time. The wheels stay in this stage; only the venv reaches the image.
FROM ${BASE_IMAGE} AS build
LABEL org.deploybench.image=build
ENV PATH=/opt/deploybench/bin:$PATH \
    DEPLOYBENCH_CACHE_DIR=/opt/deploybench/cache
COPY deps/ /tmp/wheels/
# Out of torch go what serving never uses: its C++ headers (~60 MB, for compiling
# extensions), its C++ test programs (~120 MB) and protoc; torch_shm_manager stays.
RUN python3 -m venv /opt/deploybench \
 && pip install --no-cache-dir --no-index --disable-pip-version-check \
        --find-links /tmp/wheels /tmp/wheels/*.whl \
 && cd /opt/deploybench/lib/python3*/site-packages/torch \
 && rm -rf /tmp/wheels include test bin/*Test bin/test_* bin/protoc*
COPY project/ /tmp/project/
# Training digits here (seeded, single-threaded, ~5 s) keeps it out of every cold start.
RUN pip install --no-cache-dir --no-index --no-deps --disable-pip-version-check \
        /tmp/project/*.whl \
 && rm -rf /tmp/project \
 && python -c "from targets.bundles.resolve import get_bundle; get_bundle('digits').prepare()"

# -- the image: the base, the venv, and the entry point. The four Dockerfiles agree up to
# the entry point, so on one base the images share every layer but that last one. Steps
# after the COPY are few on purpose: with the vfs storage driver each one copies the
# whole file system.
FROM ${BASE_IMAGE}
LABEL org.deploybench.image=served
ENV PATH=/opt/deploybench/bin:$PATH \
    DEPLOYBENCH_CACHE_DIR=/opt/deploybench/cache \
    PYTHONUNBUFFERED=1
# Any user can run it: the venv and the model cache are only read.
USER 65534:65534
COPY --from=build /opt/deploybench /opt/deploybench
# Serves on port 50051 (the server's default): --network host, or -p 127.0.0.1:50051:50051.
ENTRYPOINT ["/opt/deploybench/bin/deploybench", "serve", "grpc", "--bundle", "digits", \
            "--host", "0.0.0.0", "--port", "50051"]
