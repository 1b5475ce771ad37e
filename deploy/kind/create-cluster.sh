#!/usr/bin/env bash
# Build the pause image, preload it into a kind node image, create a kind
# cluster that uses it as every pod's sandbox, and start the example pod.
#
# Needs docker, kind >= 0.24 (for `kind build add-image`) and kubectl.
# Not run by the project's CI (no registry, no node image there); the image,
# the containerd config key and the YAML are tested in tests/container/.
#
#   deploy/kind/create-cluster.sh            # cluster "pypause"
#   BASE_NODE_IMAGE=kindest/node:v1.33.1 deploy/kind/create-cluster.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER=${CLUSTER:-pypause}
# These two names are the ones deploy/kind/cluster.yaml uses.
IMAGE=localhost/pypause:0.1.0
NODE_IMAGE=kindest/node-pypause:latest

docker build -t "$IMAGE" .
docker build -f deploy/image/metrics.Dockerfile --build-arg PAUSE_IMAGE="$IMAGE" \
    -t "$IMAGE-metrics" deploy/image
# The chicken-and-egg: kubeadm starts the control-plane pods while the
# cluster is created, and each needs the sandbox image before `kind load`
# could put it on the node. Preloading it into the node image breaks the
# loop without a registry (see deploy/README.md for the other ways).
kind build add-image "$IMAGE-metrics" --image "$NODE_IMAGE" \
    ${BASE_NODE_IMAGE:+--base-image "$BASE_NODE_IMAGE"}
kind create cluster --name "$CLUSTER" --config deploy/kind/cluster.yaml

for node in $(kind get nodes --name "$CLUSTER"); do
    # Pinned: the kubelet's image garbage collection never removes it
    # (containerd >= 1.7); with no registry it could not come back.
    docker exec "$node" ctr --namespace k8s.io images label "$IMAGE-metrics" \
        io.cri-containerd.pinned=pinned >/dev/null
    echo "$node: $(docker exec "$node" sh -c 'cat /proc/[0-9]*/comm' | grep -cx pypause) pypause sandboxes"
done

kubectl --context "kind-$CLUSTER" apply -f deploy/kubernetes/zombie-maker.yaml
kubectl --context "kind-$CLUSTER" wait --for=condition=Ready pod/zombie-maker --timeout=120s
