"""deploy/ checked offline: every file parses, and the names that must agree do.

No cluster is reachable and kubectl needs a server even for a client-side dry
run, so this checks what kubectl would reject at once (non-string annotation
values, missing names) and the cross-references a typo would break.
"""

import glob
import os
import re
import subprocess

import pytest

from tests.container.runtimes import METRICS_DOCKERFILE, REPO, metrics_port

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to parse deploy/*.yaml")
tomllib = pytest.importorskip("tomllib", reason="tomllib comes with Python 3.11+")

DEPLOY = os.path.join(REPO, "deploy")


def read(*path):
    with open(os.path.join(DEPLOY, *path)) as f:
        return f.read()


def _script_image():
    """The pause image's name as create-cluster.sh builds it (the metrics one adds -metrics)."""
    return re.search(r"^IMAGE=(\S+)$", read("kind", "create-cluster.sh"), re.M).group(1)


# The one name every runtime configuration must give the pause image.
IMAGE = _script_image()


def documents():
    docs = {}
    for path in sorted(glob.glob(os.path.join(DEPLOY, "**", "*.yaml"), recursive=True)):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                docs[(doc["kind"], doc.get("metadata", {}).get("name"))] = doc
    return docs


def test_every_manifest_has_what_the_api_server_requires():
    docs = documents()
    assert {kind for kind, _ in docs} == {"Cluster", "Pod", "PodMonitor"}
    for (kind, name), doc in docs.items():
        assert doc["apiVersion"]
        if kind != "Cluster":
            assert name
            for field in ("labels", "annotations"):
                values = doc["metadata"].get(field, {})
                assert all(isinstance(v, str) for v in values.values()), (kind, field, values)


def test_kind_cluster_sets_the_preloaded_metrics_image_as_sandbox_image():
    cluster = documents()[("Cluster", None)]
    script = read("kind", "create-cluster.sh")
    built = re.search(r"^IMAGE=(\S+)$", script, re.M).group(1)
    node_image = re.search(r"^NODE_IMAGE=(\S+)$", script, re.M).group(1)
    (patch,) = cluster["containerdConfigPatches"]
    cri = tomllib.loads(patch)["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == built + "-metrics"
    assert 'kind build add-image "$IMAGE-metrics" --image "$NODE_IMAGE"' in script
    assert {node["image"] for node in cluster["nodes"]} == {node_image}
    subprocess.run(["bash", "-n", os.path.join(DEPLOY, "kind", "create-cluster.sh")], check=True)


def test_example_pod_and_podmonitor_point_at_the_sandbox_metrics_port():
    docs = documents()
    pod = docs[("Pod", "zombie-maker")]
    monitor = docs[("PodMonitor", "pypause-sandbox")]
    port = metrics_port()

    assert pod["spec"]["shareProcessNamespace"] is True
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    ports = {
        p["name"]: p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", [])
    }
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert ports[endpoint["port"]] == port
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()


def test_runtime_config_snippets_name_the_image():
    v2 = tomllib.loads(read("containerd", "config-v2.toml"))
    assert v2["version"] == 2
    assert v2["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"] == IMAGE
    v3 = tomllib.loads(read("containerd", "config-v3.toml"))
    assert v3["version"] == 3
    assert v3["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == IMAGE
    crio = tomllib.loads(read("crio", "99-pypause.conf"))["crio"]["image"]
    assert crio == {"pause_image": IMAGE, "pause_command": "/pause"}


def _metrics_doc_yaml_blocks():
    with open(os.path.join(REPO, "docs", "metrics.md")) as f:
        return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", f.read(), re.S)]


def test_the_metrics_doc_deploy_and_alert_agree_on_port_labels_and_rule():
    blocks = _metrics_doc_yaml_blocks()
    port = str(metrics_port())
    (scrape,) = [b for b in blocks if "scrape_configs" in b]
    assert scrape["scrape_configs"][0]["static_configs"][0]["targets"][0].endswith(":" + port)
    (annotated,) = [b for b in blocks if "annotations" in b.get("metadata", {})]
    assert annotated["metadata"]["annotations"]["prometheus.io/port"] == port
    (monitor,) = [b for b in blocks if b.get("kind") == "PodMonitor"]
    deployed = documents()[("PodMonitor", "pypause-sandbox")]["spec"]
    assert monitor["spec"]["selector"] == deployed["selector"]
    assert (
        monitor["spec"]["podMetricsEndpoints"][0]["port"]
        == deployed["podMetricsEndpoints"][0]["port"]
    )
    with open(os.path.join(REPO, "docs", "prometheus", "alerts.yml")) as f:
        rules = yaml.safe_load(f)
    assert rules in blocks  # docs/metrics.md shows the rule file as it is


def test_the_alert_texts_use_only_labels_every_series_has():
    with open(os.path.join(REPO, "docs", "prometheus", "alerts.yml")) as f:
        (rule,) = yaml.safe_load(f)["groups"][0]["rules"]
    used = set(re.findall(r"\$labels\.(\w+)", " ".join(rule["annotations"].values())))
    assert used and used <= {"instance", "job"}  # what a scrape gives every series


def _text_files():
    """{path: text} of the README, the documents, and every file under deploy/."""
    paths = [os.path.join(REPO, "README.md")] + sorted(
        glob.glob(os.path.join(REPO, "docs", "*.md"))
    )
    paths += sorted(
        p
        for p in glob.glob(os.path.join(DEPLOY, "**", "*"), recursive=True)
        if os.path.isfile(p) and "__pycache__" not in p
    )
    texts = {}
    for path in paths:
        with open(path) as f:
            texts[os.path.relpath(path, REPO)] = f.read()
    return texts


def test_one_pair_of_image_tags_everywhere():
    expected = {IMAGE, IMAGE + "-metrics"}
    found = {}
    for path, text in _text_files().items():
        for line in text.splitlines():
            # metrics.Dockerfile's ARG default is a fallback that every
            # documented command overrides with --build-arg.
            if line.startswith("ARG "):
                continue
            for tag in re.findall(r"localhost/pypause:[\w.-]+", line):
                found.setdefault(tag, set()).add(path)
    assert set(found) == expected, found


def test_build_args_are_declared_by_the_dockerfiles():
    declared = set()
    for dockerfile in (os.path.join(REPO, "Dockerfile"), METRICS_DOCKERFILE):
        with open(dockerfile) as f:
            declared |= set(re.findall(r"^ARG (\w+)", f.read(), re.M))
    used = {
        name
        for text in _text_files().values()
        for name in re.findall(r"--build-arg[ =](\w+)=", text)
    }
    assert used and used <= declared, used - declared


def test_kind_version_the_script_checks_is_the_one_the_docs_name():
    script = read("kind", "create-cluster.sh")
    minimum = re.search(r"^KIND_MIN_VERSION=(\d+\.\d+)\.0$", script, re.M).group(1)
    with open(os.path.join(REPO, "docs", "kubernetes.md")) as f:
        doc = f.read()
    assert "kind ≥ %s" % minimum in doc and "kind >= %s" % minimum in doc
    assert "kind >= %s" % minimum in script


# ------------------------------------------------ create-cluster.sh, with stand-ins

# Answers kind, kubectl, docker and podman as a working setup would, and logs
# every call. STUB_KIND_VERSION and STUB_SANDBOX_IMAGE set what it reports.
STUB = """#!/bin/bash
name=$(basename "$0")
echo "$name $*" >> "$STUB_LOG"
case "$name $*" in
  "kind version") echo "kind v$STUB_KIND_VERSION go1.22.6 linux/amd64" ;;
  "kind build add-image --help")
    echo '      --base-image string   name:tag of the base image to use for the build (default "kindest/node:v1.31.0@sha256:0123")' ;;
  "kind get nodes"*) printf 'pypause-control-plane\\npypause-worker\\n' ;;
  *" run -d "*) echo build-container ;;
  *" exec "*" crictl info") printf '{\\n  "config": {\\n    "sandboxImage": "%s",\\n' "$STUB_SANDBOX_IMAGE" ;;
  *" exec "*" sh -c "*) printf 'containerd\\npypause\\npypause\\nkubelet\\n' ;;
  "kubectl "*" exec "*) echo pypause ;;
  *" images import "*) cat >/dev/null ;;
esac
"""


def run_create_cluster(tmp_path, provider=None, kind_version="0.24.0", sandbox_image=None):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "stub"
    stub.write_text(STUB)
    stub.chmod(0o755)
    for name in ("kind", "kubectl", "docker", "podman"):
        (bin_dir / name).symlink_to(stub)
    env = {
        "PATH": "%s:/usr/bin:/bin" % bin_dir,
        "STUB_LOG": str(tmp_path / "calls"),
        "STUB_KIND_VERSION": kind_version,
        "STUB_SANDBOX_IMAGE": sandbox_image or _script_image() + "-metrics",
    }
    if provider:
        env["KIND_EXPERIMENTAL_PROVIDER"] = provider
    r = subprocess.run(
        ["bash", os.path.join(DEPLOY, "kind", "create-cluster.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
    return r, calls


@pytest.mark.parametrize("provider", [None, "docker", "podman"])
def test_create_cluster_script_with_either_provider_ends_verified(tmp_path, provider):
    r, calls = run_create_cluster(tmp_path, provider)
    assert r.returncode == 0, r.stderr
    image, node_image = IMAGE, documents()[("Cluster", None)]["nodes"][0]["image"]
    engine = provider or "docker"
    other = {"docker": "podman", "podman": "docker"}[engine]
    assert not [c for c in calls if c.startswith(other + " ")], "only %s is used" % engine
    assert "%s build -t %s ." % (engine, image) in calls
    assert "kind create cluster --name pypause --config deploy/kind/cluster.yaml" in calls
    if engine == "docker":
        assert "kind build add-image %s-metrics --image %s" % (image, node_image) in calls
    else:  # kind's add-image runs docker: the script does its steps with podman
        assert (
            "podman run -d --entrypoint /usr/local/bin/containerd kindest/node:v1.31.0@sha256:0123"
        ) in calls
        assert any(
            c.startswith("podman commit ") and c.endswith(" build-container " + node_image)
            for c in calls
        )
        assert "podman rm -f build-container" in calls, "the build container is removed"
    # It ends by checking each node's sandbox image and the example pod's PID 1.
    for node in ("pypause-control-plane", "pypause-worker"):
        assert "%s exec %s crictl info" % (engine, node) in calls
        assert "%s: sandbox image %s-metrics, 2 pypause sandboxes" % (node, image) in r.stdout
    assert calls[-1].startswith("kubectl --context kind-pypause exec zombie-maker ")
    assert r.stdout.splitlines()[-1] == "pod zombie-maker: PID 1 is pypause"


def test_create_cluster_script_refuses_an_old_kind(tmp_path):
    r, calls = run_create_cluster(tmp_path, kind_version="0.23.0")
    assert r.returncode != 0
    assert "kind 0.23.0 is too old" in r.stderr
    assert calls == ["kind version"], "nothing is built"


def test_create_cluster_script_fails_when_a_node_reports_another_sandbox_image(tmp_path):
    r, _ = run_create_cluster(tmp_path, sandbox_image="registry.k8s.io/pause:3.10")
    assert r.returncode != 0
    assert "containerd's sandbox image is 'registry.k8s.io/pause:3.10'" in r.stderr
