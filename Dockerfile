# pypause as a pod's pause (sandbox) image.
#
#   deploy/image/build.sh -t localhost/pypause:local      # adds the build's OCI labels
#   podman build -t localhost/pypause:local .              # the same, without them
#
# The final image is assembled from the base image's own Python: the
# interpreter, the part of the standard library pypause can import, the shared
# libraries they load, and pypause with its two dependencies. No shell, no pip, no
# package manager. It is meant for any glibc base with Python 3.9+, whether
# Python lives in /usr/local (official python images) or in /usr (Debian's
# python3):
#
#   podman build --build-arg BASE_IMAGE=localhost/my-python:3.11 ...
#
# Tested (tests/container, podman 4.3 + runc, offline): Debian 12's python3
# 3.11 in /usr, unpacked from Debian's packages, without pip, with the wheels
# handed in as below; and that on such a base the wheels stage stops at once
# with the command to use instead. The default base and the wheels stage's
# pip run are not tested (no registry there).
#
# Wheels come from the `wheels` stage below, which needs pip in the base and
# an index. Without them, build the wheels elsewhere for the base's Python
# version and hand them in as a build context that replaces the stage (a
# directory holding wheels/ with pypause-init, its dependencies and pip):
#
#   pip wheel --no-deps -w ctx/wheels . &&
#   pip download --only-binary=:all: --python-version 3.11 -d ctx/wheels ctx/wheels/pypause_init-*.whl pip
#   podman build --build-context wheels=ctx --build-arg BASE_IMAGE=... -t pypause .
#
# Every RUN uses the exec form, so that bases without a shell work too.

ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS wheels
ARG BASE_IMAGE
# First, so that a base without pip stops here with one line saying what to
# do, not after the copies with "No module named pip" (ARGs are in a RUN's
# environment; exec form: no shell needed).
RUN ["python3", "-c", "import importlib.util as u, os, sys; u.find_spec('pip') or sys.exit('pypause: %s has no pip, which the wheels stage runs. Build the wheels elsewhere and hand them in instead: pip wheel --no-deps -w ctx/wheels . && pip download --only-binary=:all: --python-version %d.%d -d ctx/wheels ctx/wheels/pypause_init-*.whl pip && podman build --build-context wheels=ctx --build-arg BASE_IMAGE=%s ... .' % (os.environ['BASE_IMAGE'], sys.version_info[0], sys.version_info[1], os.environ['BASE_IMAGE']))"]
# What building the distribution reads (pyproject.toml names the rest).
COPY pyproject.toml LICENSE /src/
COPY docs/pypi.md /src/docs/pypi.md
COPY bin /src/bin
COPY pypause /src/pypause
# pip's own wheel too: the build stage runs pip from it.
RUN ["python3", "-m", "pip", "wheel", "--no-cache-dir", "--wheel-dir", "/wheels", "/src", "pip"]

FROM ${BASE_IMAGE} AS build
COPY --from=wheels /wheels /wheels
COPY deploy/image/assemble_rootfs.py /assemble_rootfs.py
RUN ["python3", "-I", "/assemble_rootfs.py", "/wheels", "/out"]
# Apache-2.0 asks for a copy with every distribution of the work: in pypause's layer.
COPY LICENSE /out/pypause/usr/share/doc/pypause/LICENSE

FROM scratch
ARG BASE_IMAGE
COPY --from=build /out/runtime/ /
COPY --from=build /out/pypause/ /
ENV PATH=/usr/local/bin:/usr/bin:/bin
# Only labels that follow from this file and its build arguments. The build's
# own (version, revision, created, source) are added by deploy/image/build.sh
# as a LABEL line with their values written out, after the last instruction:
# buildah (podman build) keys its layer cache for a LABEL on the instruction's
# text before ARG substitution, so a LABEL of "${CREATED}" here would be
# reused with the first build's values by every later build in the same
# storage, with other values or none; and labels given with --label are set on
# every intermediate image too, which a plain build then reuses. A line with
# the values in it is a cache miss whenever they differ, and nothing before it
# carries them. (base.name is still keyed on its text: two names of one
# identical base image share the first name's label.)
LABEL org.opencontainers.image.title="pypause" \
      org.opencontainers.image.description="A pure-Python init for containers: pod pause container and image init" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
# The Kubernetes pause image's user: no name, no home, owns nothing.
USER 65535:65535
STOPSIGNAL SIGTERM
# No CMD: without arguments pypause runs in pause mode.
ENTRYPOINT ["pypause"]
