#!/bin/sh
# Build the pause image from this checkout with its OCI labels filled in:
# version (from pypause/__init__.py, its one source), revision (the git
# commit), created (now, or $SOURCE_DATE_EPOCH if set), source ($SOURCE; no
# label if unset). Arguments go to the build:
#
#   deploy/image/build.sh -t localhost/pypause:local
#   ENGINE=docker deploy/image/build.sh -t localhost/pypause:local
#   deploy/image/build.sh --platform linux/amd64,linux/arm64 --manifest localhost/pypause:local
#
# The labels are a LABEL line with the values written out, appended to a copy
# of the Dockerfile: podman/buildah's layer cache keys a LABEL step on its
# text, so this step is rebuilt whenever a value differs, and no step before
# it (shared with a plain `podman build .`) carries them. Build arguments in
# the Dockerfile's LABEL, or --label, would let the cache hand a later build
# the first build's values (see the Dockerfile's final stage).
#
# Architectures: linux/amd64, linux/arm64, linux/ppc64le and linux/386, where
# setproctitle publishes wheels. Not linux/arm/v7 or linux/s390x: the wheels
# stage would have to compile setproctitle, and the slim base has no compiler
# (build those with a base that has one, or from wheels built elsewhere: see
# the Dockerfile).
set -eu
cd "$(dirname "$0")/../.."
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' pypause/__init__.py)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
    # GNU date, then BSD date.
    created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null ||
              date -u -r "$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
else
    created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
fi
# A Dockerfile string: backslash, double quote and $ escaped (a newline is refused).
quote() {
    case $1 in *'
'*) echo "build.sh: a label value with a newline: $1" >&2; exit 2 ;; esac
    printf '"%s"' "$(printf '%s' "$1" | sed 's/[\\"$]/\\&/g')"
}
containerfile=$(mktemp "${TMPDIR:-/tmp}/pypause-Dockerfile.XXXXXX")
trap 'rm -f "$containerfile"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
# Assignments, so that set -e stops at a refused value.
q_version=$(quote "$version")
q_revision=$(quote "$revision")
q_created=$(quote "$created")
q_source=$(quote "${SOURCE:-}")
{
    cat Dockerfile
    echo
    echo "# Added by deploy/image/build.sh: this build's own labels."
    printf 'LABEL org.opencontainers.image.version=%s \\\n' "$q_version"
    printf '      org.opencontainers.image.revision=%s \\\n' "$q_revision"
    if [ -n "${SOURCE:-}" ]; then
        printf '      org.opencontainers.image.source=%s \\\n' "$q_source"
    fi
    printf '      org.opencontainers.image.created=%s\n' "$q_created"
} > "$containerfile"
"${ENGINE:-podman}" build -f "$containerfile" "$@" .
