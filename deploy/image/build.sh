#!/bin/sh
# `make image` / `make image-torch`: build a target of the Dockerfile with BuildKit, the same way
# on a laptop, in CI and on a machine that reaches no container registry. Settings (environment,
# all optional but IMAGE; the Makefile passes its variables of the same names):
#   IMAGE            tag to build (make: classify-service:<pyproject version>[-torch][-resnet18])
#   TARGET           runtime (default: the slim image, no torch) or torch (the image with torch)
#   BASE_IMAGE       Python 3.11 base (python:3.11-slim-bookworm). Where it can be neither found
#                    locally nor pulled, a base is built from Debian packages (local-base.sh).
#   TORCH_INDEX_URL  where torch comes from. runtime: torch only exports the graphs in a builder
#                    stage, so PyTorch's CPU index (the host's pip index where that is
#                    unreachable: PyPI's CUDA build, a larger builder, the same runtime image).
#                    torch: the host's pip index (PyPI: the CUDA build, for cuda-fp16); set the
#                    CPU index for a CPU-only torch image several GB smaller.
#   PIP_CONF, PIP_CA the host's pip configuration file and CA bundle, handed to the build as
#                    BuildKit secrets (mounted for the pip steps, in no layer). Default: the
#                    file pip itself would read ($PIP_CONFIG_FILE, the user's, /etc/pip.conf)
#                    and $PIP_CERT or pip's global.cert.
#   BAKE_RESNET18, RESNET18_URL, RESNET18_SHA256   the Dockerfile's build arguments.
#   DOCKER           the docker command (one that can run BuildKit builds is picked).
set -eu

IMAGE=${IMAGE:?IMAGE must name the tag to build}
TARGET=${TARGET:-runtime}
case $TARGET in
    runtime | torch) ;;
    *) echo "make image: TARGET must be runtime or torch, not '$TARGET'" >&2; exit 2 ;;
esac
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim-bookworm}
CPU_INDEX=https://download.pytorch.org/whl/cpu
HERE=$(cd "$(dirname "$0")" && pwd)
HOME=${HOME:-/nonexistent}
say() { echo "make image: $*" >&2; }

# BuildKit (secret mounts) needs the buildx plugin with Docker 23 and later, or Docker 20.10's
# built-in client. Here /usr/local/bin/docker is a newer CLI without buildx and Debian's
# docker.io ships /usr/bin/docker 20.10: take the first of them that can build.
can_buildkit() {
    command -v "$1" >/dev/null 2>&1 || return 1
    "$1" buildx version >/dev/null 2>&1 && return 0
    major=$("$1" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1) || true
    [ -n "$major" ] && [ "$major" -lt 23 ]
}
if [ -z "${DOCKER:-}" ]; then
    for candidate in docker /usr/bin/docker; do
        if can_buildkit "$candidate"; then DOCKER=$candidate; break; fi
    done
fi
DOCKER=${DOCKER:-docker}
"$DOCKER" info >/dev/null 2>&1 || {
    say "no Docker daemon answers to '$DOCKER' (start one: e.g. 'dockerd &' as root after 'make docker-engine')"
    exit 1
}

# The base image: local, else pulled, else built here from Debian packages.
if ! "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1 && ! "$DOCKER" pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
    LOCAL_BASE=${LOCAL_BASE:-classify-local-base:bookworm}
    say "cannot pull $BASE_IMAGE: using $LOCAL_BASE, built from Debian packages"
    DOCKER=$DOCKER "$HERE/local-base.sh" "$LOCAL_BASE"
    BASE_IMAGE=$LOCAL_BASE
fi

pip_config() { python3 -m pip config get "$1" 2>/dev/null || true; }
if [ -z "${PIP_CONF:-}" ]; then
    for candidate in "${PIP_CONFIG_FILE:-}" "${XDG_CONFIG_HOME:-$HOME/.config}/pip/pip.conf" "$HOME/.pip/pip.conf" /etc/pip.conf; do
        if [ -n "$candidate" ] && [ -f "$candidate" ]; then PIP_CONF=$candidate; break; fi
    done
fi
PIP_CA=${PIP_CA:-${PIP_CERT:-$(pip_config global.cert)}}

# The torch source: the torch image's is the host's pip index (PyPI's torch: the CUDA build);
# the slim image's builder takes PyTorch's CPU index where it answers, else the host's index.
host_index() {
    index=$(pip_config global.index-url)
    echo "${index:-https://pypi.org/simple}"
}
if [ -z "${TORCH_INDEX_URL:-}" ] && [ "$TARGET" = torch ]; then
    TORCH_INDEX_URL=$(host_index)
fi
if [ -z "${TORCH_INDEX_URL:-}" ]; then
    if python3 - "$CPU_INDEX/torch/" "${PIP_CA:-}" <<'EOF'
import ssl, sys, urllib.request
context = ssl.create_default_context(cafile=sys.argv[2] or None)
try:
    urllib.request.urlopen(sys.argv[1], timeout=10, context=context).close()
except OSError:
    sys.exit(1)
EOF
    then
        TORCH_INDEX_URL=$CPU_INDEX
    else
        TORCH_INDEX_URL=$(host_index)
        say "PyTorch's CPU index ($CPU_INDEX) is unreachable: the builder's torch comes from $TORCH_INDEX_URL," \
            "whose Linux wheels are the CUDA build (a longer build; the runtime image has no torch either way)." \
            "Set TORCH_INDEX_URL to choose."
    fi
fi

set -- --target "$TARGET" --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL" \
    --build-arg "BAKE_RESNET18=${BAKE_RESNET18:-0}" --build-arg "RESNET18_URL=${RESNET18_URL:-}" \
    --build-arg "RESNET18_SHA256=${RESNET18_SHA256:-}"
if [ -n "${PIP_CONF:-}" ]; then set -- "$@" --secret "id=pip.conf,src=$PIP_CONF"; fi
if [ -n "${PIP_CA:-}" ]; then set -- "$@" --secret "id=pip-ca,src=$PIP_CA"; fi
say "building $IMAGE (target $TARGET) from $BASE_IMAGE, torch from $TORCH_INDEX_URL${PIP_CONF:+, pip config $PIP_CONF}${PIP_CA:+, CA $PIP_CA}"
cd "$HERE/../.."
DOCKER_BUILDKIT=1 "$DOCKER" build "$@" --tag "$IMAGE" .
size=$("$DOCKER" image inspect --format '{{.Size}}' "$IMAGE")
say "built $IMAGE (target $TARGET): $((size / 1000000)) MB ($size bytes; base $BASE_IMAGE, torch from $TORCH_INDEX_URL)"
