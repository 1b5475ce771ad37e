#!/usr/bin/env bash
# Build the pause image, preload it into a kind node image, create a kind
# cluster that uses it as every pod's sandbox, start the example pod, and
# check the result: each node's containerd reports our image as its sandbox
# image, and the example pod's PID 1 is pypause.
#
# Needs kind >= 0.24, kubectl, and docker, or podman with
# KIND_EXPERIMENTAL_PROVIDER=podman (kind's podman provider: rootful podman).
# Not run by the project's CI, which reaches no container registry (no
# kindest/node image, no busybox). What this script relies on is tested
# there: the pause image, and containerd 1.6's CRI plugin running it as every
# sandbox with the config key below (tests/container/test_cri.py); this
# file, cluster.yaml and the names they share (tests/container/test_deploy_files.py).
#
#   deploy/kind/create-cluster.sh                                   # cluster "pypause", docker
#   KIND_EXPERIMENTAL_PROVIDER=podman deploy/kind/create-cluster.sh
#   BASE_NODE_IMAGE=kindest/node:v1.33.1 deploy/kind/create-cluster.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER=${CLUSTER:-pypause}
# These two names are the ones deploy/kind/cluster.yaml uses.
IMAGE=localhost/pypause:local
NODE_IMAGE=kindest/node-pypause:latest
# `kind build add-image` appeared in kind 0.24.
KIND_MIN_VERSION=0.24.0

die() { echo "create-cluster.sh: $*" >&2; exit 1; }

case "${KIND_EXPERIMENTAL_PROVIDER:-docker}" in
    docker) ENGINE=docker ;;
    podman) ENGINE=podman ;;
    *) die "KIND_EXPERIMENTAL_PROVIDER=$KIND_EXPERIMENTAL_PROVIDER: docker or podman, please" ;;
esac
for tool in kind kubectl "$ENGINE"; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
kind_version=$(kind version | sed -n 's/^kind v\([0-9][0-9.]*\).*/\1/p')
[ -n "$kind_version" ] || die "cannot read kind's version from: $(kind version)"
oldest=$(printf '%s\n' "$KIND_MIN_VERSION" "$kind_version" | sort -V | head -n 1)
[ "$oldest" = "$KIND_MIN_VERSION" ] ||
    die "kind $kind_version is too old: $KIND_MIN_VERSION or later is needed (kind build add-image)"

"$ENGINE" build -t "$IMAGE" .
"$ENGINE" build -f deploy/image/metrics.Dockerfile --build-arg PAUSE_IMAGE="$IMAGE" \
    -t "$IMAGE-metrics" deploy/image

# The chicken-and-egg: kubeadm starts the control-plane pods while the
# cluster is created, and each needs the sandbox image before `kind load`
# could put it on the node. Preloading it into the node image breaks the
# loop without a registry (see deploy/README.md for the other ways).
if [ "$ENGINE" = docker ]; then
    kind build add-image "$IMAGE-metrics" --image "$NODE_IMAGE" \
        ${BASE_NODE_IMAGE:+--base-image "$BASE_NODE_IMAGE"}
else
    # `kind build add-image` runs the docker command whatever the provider,
    # so do what it does with podman: start the base node image's
    # containerd, import the image into its k8s.io namespace, commit.
    base=${BASE_NODE_IMAGE:-$(kind build add-image --help |
        sed -n 's/.*--base-image .*(default "\([^"]*\)").*/\1/p')}
    [ -n "$base" ] || die "cannot read kind's default node image; set BASE_NODE_IMAGE"
    build=$(podman run -d --entrypoint /usr/local/bin/containerd "$base")
    trap 'podman rm -f "$build" >/dev/null' EXIT
    for _ in $(seq 30); do
        podman exec "$build" ctr version >/dev/null 2>&1 && break
        sleep 1
    done
    podman save "$IMAGE-metrics" |
        podman exec -i "$build" ctr --namespace=k8s.io images import --all-platforms --no-unpack -
    podman commit --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' \
        "$build" "$NODE_IMAGE" >/dev/null
    # kind's podman provider may ask for the image by its docker.io name.
    podman tag "$NODE_IMAGE" "docker.io/$NODE_IMAGE"
    podman rm -f "$build" >/dev/null
    trap - EXIT
fi
kind create cluster --name "$CLUSTER" --config deploy/kind/cluster.yaml

for node in $(kind get nodes --name "$CLUSTER"); do
    # Pinned: the kubelet's image garbage collection never removes it
    # (containerd >= 1.7); with no registry it could not come back.
    "$ENGINE" exec "$node" ctr --namespace k8s.io images label "$IMAGE-metrics" \
        io.cri-containerd.pinned=pinned >/dev/null
done

kubectl --context "kind-$CLUSTER" apply -f deploy/kubernetes/zombie-maker.yaml
kubectl --context "kind-$CLUSTER" wait --for=condition=Ready pod/zombie-maker --timeout=120s

# Verification: what each node's containerd says its sandbox image is
# (containerd 1.x: "sandboxImage"; 2.x: the pinned "sandbox" image), how many
# sandboxes run pypause there, and PID 1 of the example pod, seen from its
# app container (shareProcessNamespace: the sandbox is PID 1).
for node in $(kind get nodes --name "$CLUSTER"); do
    reported=$("$ENGINE" exec "$node" crictl info |
        sed -nE 's/.*"(sandboxImage|sandbox)": *"([^"]*)".*/\2/p' | sort -u)
    [ "$reported" = "$IMAGE-metrics" ] ||
        die "$node: containerd's sandbox image is '$reported', not $IMAGE-metrics"
    sandboxes=$("$ENGINE" exec "$node" sh -c 'cat /proc/[0-9]*/comm' | grep -cx pypause || true)
    echo "$node: sandbox image $reported, $sandboxes pypause sandboxes"
done
pid1=$(kubectl --context "kind-$CLUSTER" exec zombie-maker -c app -- cat /proc/1/comm)
[ "$pid1" = pypause ] || die "PID 1 of pod zombie-maker is '$pid1', not pypause"
echo "pod zombie-maker: PID 1 is pypause"
