# The service's images, from one file (BuildKit: Docker 23+, or DOCKER_BUILDKIT=1 on Docker 20.10):
#
#   runtime (the default, `make image`): `classify serve` with NO torch: ONNX Runtime serves the
#       graphs a torch builder stage exported (the bundled efficientnet_lite0; ResNet18 too with
#       BAKE_RESNET18=1). A few hundred MB.
#   torch (`make image-torch`, `--target torch`): the service with torch, for the torch,
#       torch-bf16 and cuda-fp16 backends and for .pth weights mounted at start (their ONNX graph
#       is exported by the first start). Several GB (PyPI's torch is the CUDA build).
#
# gRPC on 50051, the HTTP gateway on 8000. `make image` / `make image-torch` run
# deploy/image/build.sh (base image, torch source, the host's pip configuration as build secrets).
# By hand:
#
#   docker build -t classify-service:0.1.0 .                                        # slim, efficientnet_lite0
#   docker build --build-arg BAKE_RESNET18=1 -t classify-service:0.1.0-resnet18 .   # slim, + ResNet18's graph
#   docker build --target torch -t classify-service:0.1.0-torch .                   # with torch
#   docker run --read-only --tmpfs /tmp -p 50051:50051 -p 8000:8000 classify-service:0.1.0
#
# docs/image.md: what each image holds, volumes (the slim image serves exported graphs, not
# .pth files), the measured size, start time and memory. tests/e2e/image/ builds and runs both.

# Any Debian-based Python 3.11 image with python3 -m venv and useradd: the official slim image,
# or the one `make image` builds from Debian packages where no registry is reachable.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# -- base: the user and an empty venv, shared by every stage ------------------------------------
FROM ${BASE_IMAGE} AS base
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
# Every pip step below starts with the same two lines that pick them up.

# -- wheel: the service's wheel (service/, http_gateway/ with its page, the generated code) -----
FROM base AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gen/ gen/
COPY service/ service/
COPY http_gateway/ http_gateway/
RUN --mount=type=secret,id=pip.conf --mount=type=secret,id=pip-ca \
    if [ -f /run/secrets/pip.conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip.conf; fi; \
    if [ -f /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi; \
    pip wheel --no-deps --wheel-dir /wheels .

# -- builder: the service with the [torch] extra; exports graphs, and is the torch image's body -
FROM base AS builder
# Where torch and torchvision come from. PyTorch's CPU-only index by default: PyPI's Linux
# wheels are the CUDA build and pull in gigabytes of CUDA libraries a CPU build never uses
# (`make image-torch` picks PyPI's for cuda-fp16; deploy/image/build.sh).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Layers from the least to the most often changed: torch, the other dependencies (pyproject.toml),
# then the service's own wheel, so that editing the code reinstalls nothing.
# torch and torchvision: the [torch] extra's pins (a test checks); the CPU builds (2.14.1+cpu)
# satisfy torch==2.14.1, so the install below keeps them.
RUN --mount=type=secret,id=pip.conf --mount=type=secret,id=pip-ca \
    if [ -f /run/secrets/pip.conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip.conf; fi; \
    if [ -f /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi; \
    pip install --index-url "$TORCH_INDEX_URL" torch==2.14.1 torchvision==0.29.1
COPY pyproject.toml /tmp/pyproject.toml
RUN --mount=type=secret,id=pip.conf --mount=type=secret,id=pip-ca \
    if [ -f /run/secrets/pip.conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip.conf; fi; \
    if [ -f /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi; \
    python -c "import sys, tomllib; p = tomllib.load(open(sys.argv[1], 'rb'))['project']; print(*p['dependencies'], *p['optional-dependencies']['torch'], sep='\n')" \
      /tmp/pyproject.toml > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt /tmp/pyproject.toml
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-deps /wheels/*.whl && pip check

# -- export: the graphs the slim image serves (and ResNet18's weights, with BAKE_RESNET18=1) ----
FROM builder AS export
# The bundled model's graph, named by its weights' pinned digest (service/core/onnx_backend.py
# graph_path): without the weights (the slim image has no torch to read them) `classify serve`
# finds it in --cache-dir by that digest.
RUN mkdir -p /graphs /weights \
 && classify export efficientnet_lite0 --cache-dir /graphs
# Optional: ResNet18, downloaded and SHA-256-verified by the service's own fetcher, then exported.
# RESNET18_URL names a mirror of the official file; with RESNET18_SHA256 it names another
# ResNet18 (your fine-tuned one): the slim image serves it with CLASSIFY_WEIGHTS_SHA256 set to
# that digest (the torch image with CLASSIFY_WEIGHTS=/app/weights/resnet18-<first 8 hex>.pth).
# The export lands beside the weights (a directory root may write): moved to /graphs.
ARG BAKE_RESNET18=0
ARG RESNET18_URL=
ARG RESNET18_SHA256=
RUN if [ "$BAKE_RESNET18" = "1" ]; then \
      classify weights fetch resnet18 --dir /weights --timeout 60 \
        ${RESNET18_URL:+--url "$RESNET18_URL"} ${RESNET18_SHA256:+--sha256 "$RESNET18_SHA256"} \
   && set -- /weights/resnet18-*.pth \
   && classify export resnet18 --weights "$1" ${RESNET18_SHA256:+--weights-sha256 "$RESNET18_SHA256"} \
        --cache-dir /graphs \
   && for f in /weights/*.onnx /weights/*.json; do [ ! -e "$f" ] || mv "$f" /graphs/; done; \
    fi

# -- torch: the service with torch (torch backends, cuda-fp16, mounted .pth weights) -----------
FROM builder AS torch
# The default --weights (weights/resnet18-f37072fd.pth) is relative: WORKDIR makes it
# /app/weights, where a baked file lands and where a volume can be mounted instead.
WORKDIR /app
COPY --from=export /weights /app/weights
# The root filesystem may be read-only (Kubernetes readOnlyRootFilesystem, docker run
# --read-only): whatever is written goes under /tmp, which must then be a tmpfs or a volume.
# ONNX graphs of read-only weights (baked, mounted :ro, bundled) are exported by the first start
# into CLASSIFY_CACHE_DIR; mount a volume there to keep them across restarts.
# `docker stop` sends SIGKILL 10 s after SIGTERM: the drain (still serving for --shutdown-delay-s,
# 2 s by default, then in-flight calls get up to CLASSIFY_GRACE_PERIOD_S) and the process's own
# exit after it must fit. deploy/kubernetes sets its own delay and grace period, under its
# terminationGracePeriodSeconds.
ENV HOME=/tmp \
    CLASSIFY_CACHE_DIR=/tmp/classify-cache \
    CLASSIFY_GRACE_PERIOD_S=5
USER 10001:10001
EXPOSE 50051 8000
# The same probe as the runtime stage's (a test checks that both stages agree).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os,sys,grpc;from grpc_health.v1 import health_pb2 as h,health_pb2_grpc as g;c=grpc.insecure_channel('127.0.0.1:'+os.environ.get('CLASSIFY_GRPC_PORT','50051'));sys.exit(g.HealthStub(c).Check(h.HealthCheckRequest(),timeout=4).status!=h.HealthCheckResponse.SERVING)"]
ENTRYPOINT ["classify", "serve"]

# -- runtime (the default target): the base distribution only, no torch -------------------------
FROM base AS runtime
# The base distribution's dependencies (pyproject's [project].dependencies: ONNX Runtime, numpy,
# Pillow, grpcio, FastAPI, ...), then the wheel without extras. pip and setuptools leave the venv
# after `pip check`: nothing installs at run time.
COPY pyproject.toml /tmp/pyproject.toml
RUN --mount=type=secret,id=pip.conf --mount=type=secret,id=pip-ca \
    if [ -f /run/secrets/pip.conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip.conf; fi; \
    if [ -f /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi; \
    python -c "import sys, tomllib; print(*tomllib.load(open(sys.argv[1], 'rb'))['project']['dependencies'], sep='\n')" \
      /tmp/pyproject.toml > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt /tmp/pyproject.toml
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-deps /wheels/*.whl && pip check \
 && pip uninstall --yes --quiet pip setuptools
WORKDIR /app
# The exported graphs (fp32 ONNX + manifest, named by their source weights' digest), read-only.
# CLASSIFY_CACHE_DIR points `classify serve` at them: with no weights file it serves the graph of
# the pinned (or CLASSIFY_WEIGHTS_SHA256) digest, so the image serves with no arguments:
# ResNet18 where its graph was baked, else the bundled efficientnet_lite0. Mount exported graphs
# of your own (`classify export`) over /app/graphs, or anywhere with --model PATH.onnx.
COPY --from=export /graphs /app/graphs
# The root filesystem may be read-only (Kubernetes readOnlyRootFilesystem, docker run
# --read-only): nothing is written at run time but HOME's caches, under /tmp (a tmpfs or a volume).
# `docker stop` sends SIGKILL 10 s after SIGTERM: the drain (still serving for --shutdown-delay-s,
# 2 s by default, then in-flight calls get up to CLASSIFY_GRACE_PERIOD_S) and the process's own
# exit after it must fit. deploy/kubernetes sets its own delay and grace period, under its
# terminationGracePeriodSeconds.
ENV HOME=/tmp \
    CLASSIFY_CACHE_DIR=/app/graphs \
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
