#!/bin/sh
# Build the pause image from this checkout with its OCI labels filled in:
# version (from pypause/__init__.py, its one source), revision (the git
# commit), created (now), source ($SOURCE, if set). Arguments go to the build:
#
#   deploy/image/build.sh -t localhost/pypause:local
#   ENGINE=docker deploy/image/build.sh -t localhost/pypause:local
#   deploy/image/build.sh --platform linux/amd64,linux/arm64 --manifest localhost/pypause:local
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
exec "${ENGINE:-podman}" build \
    --build-arg VERSION="$version" \
    --build-arg REVISION="$revision" \
    --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --build-arg SOURCE="${SOURCE:-}" \
    "$@" .
