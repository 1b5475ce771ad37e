# The pause image with metrics on, for a node's sandbox image: a runtime
# starts the sandbox with no arguments, but with the image's environment.
#
#   podman build -f deploy/image/metrics.Dockerfile \
#       --build-arg PAUSE_IMAGE=localhost/pypause:local -t localhost/pypause:local-metrics .
#
# Every pod then listens on this port in its own network namespace, and a
# hostNetwork pod's sandbox in the node's: the first one on a node takes the
# port there (the others log "metrics disabled" and keep running). Hence not
# 9100, which node-exporter needs on every node.
# The port is written here, not taken from a build argument: podman 4's layer
# cache reuses an ENV layer built with another argument value.
ARG PAUSE_IMAGE=localhost/pypause:local
FROM ${PAUSE_IMAGE}
ENV PYPAUSE_METRICS_ADDR=9199
