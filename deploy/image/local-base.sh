#!/bin/sh
# A Python 3.11 base image made from Debian bookworm's own packages, for machines that reach
# a Debian mirror but no container registry: debootstrap (minbase + python3, python3-venv,
# ca-certificates), apt's caches and the docs dropped, then `docker import`. Does nothing when
# the image exists. Needs root and debootstrap (`make docker-engine` installs it).
#   local-base.sh NAME        DEBIAN_MIRROR (default: the host's apt source for bookworm)
set -eu

NAME=${1:?usage: local-base.sh IMAGE-NAME}
DOCKER=${DOCKER:-docker}
if "$DOCKER" image inspect "$NAME" >/dev/null 2>&1; then exit 0; fi

# The mirror apt already uses for bookworm (deb822 .sources or one-line .list), else Debian's CDN.
host_mirror() {
    for file in /etc/apt/sources.list.d/*.sources; do
        [ -f "$file" ] || continue
        awk 'BEGIN { RS = ""; FS = "\n" }
             /(^|\n)Suites:([^\n]* )?bookworm( |\n|$)/ && /(^|\n)Types:[^\n]*deb( |\n|$)/ {
                 for (i = 1; i <= NF; i++) if ($i ~ /^URIs:/) { split($i, f, " "); print f[2]; exit } }' "$file"
    done
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | awk '$1 == "deb" { for (i = 2; i < NF; i++) if ($i !~ /^\[/ && $(i + 1) == "bookworm") { print $i; exit } }'
}
MIRROR=${DEBIAN_MIRROR:-$(host_mirror | head -n 1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

command -v debootstrap >/dev/null || { echo "local-base.sh: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
ROOTFS=$(mktemp -d "${TMPDIR:-/tmp}/classify-base.XXXXXX")
trap 'rm -rf "$ROOTFS"' EXIT INT TERM
echo "local-base.sh: debootstrap bookworm from $MIRROR into $ROOTFS" >&2
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$ROOTFS" "$MIRROR" >&2
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/log/* \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/usr/share/locale/*
# The official image's conventions: UTF-8 locale, python3 as the default command.
tar -C "$ROOTFS" -c . | "$DOCKER" import \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    --message "debootstrap --variant=minbase bookworm $MIRROR" - "$NAME" >/dev/null
echo "local-base.sh: imported $NAME" >&2
