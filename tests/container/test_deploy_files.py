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

from runtimes import METRICS_DOCKERFILE, REPO

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to parse deploy/*.yaml")
tomllib = pytest.importorskip("tomllib", reason="tomllib comes with Python 3.11+")

DEPLOY = os.path.join(REPO, "deploy")
IMAGE = "localhost/pypause:0.1.0"


def read(*path):
    with open(os.path.join(DEPLOY, *path)) as f:
        return f.read()


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
    assert "kind build add-image \"$IMAGE-metrics\" --image \"$NODE_IMAGE\"" in script
    assert {node["image"] for node in cluster["nodes"]} == {node_image}
    subprocess.run(["bash", "-n", os.path.join(DEPLOY, "kind", "create-cluster.sh")], check=True)


def test_example_pod_and_podmonitor_point_at_the_sandbox_metrics_port():
    docs = documents()
    pod = docs[("Pod", "zombie-maker")]
    monitor = docs[("PodMonitor", "pypause-sandbox")]
    with open(METRICS_DOCKERFILE) as f:
        port = int(re.search(r"^ENV PYPAUSE_METRICS_ADDR=(\d+)$", f.read(), re.M).group(1))

    assert pod["spec"]["shareProcessNamespace"] is True
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    ports = {p["name"]: p["containerPort"] for c in pod["spec"]["containers"]
             for p in c.get("ports", [])}
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


def _readme_yaml_blocks():
    with open(os.path.join(REPO, "README.md")) as f:
        return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", f.read(), re.S)]


def test_readme_deploy_and_alert_agree_on_port_labels_and_rule():
    blocks = _readme_yaml_blocks()
    with open(METRICS_DOCKERFILE) as f:
        port = re.search(r"^ENV PYPAUSE_METRICS_ADDR=(\d+)$", f.read(), re.M).group(1)
    (scrape,) = [b for b in blocks if "scrape_configs" in b]
    assert scrape["scrape_configs"][0]["static_configs"][0]["targets"][0].endswith(":" + port)
    (annotated,) = [b for b in blocks if "annotations" in b.get("metadata", {})]
    assert annotated["metadata"]["annotations"]["prometheus.io/port"] == port
    (monitor,) = [b for b in blocks if b.get("kind") == "PodMonitor"]
    deployed = documents()[("PodMonitor", "pypause-sandbox")]["spec"]
    assert monitor["spec"]["selector"] == deployed["selector"]
    assert (monitor["spec"]["podMetricsEndpoints"][0]["port"]
            == deployed["podMetricsEndpoints"][0]["port"])
    with open(os.path.join(REPO, "docs", "prometheus", "alerts.yml")) as f:
        rules = yaml.safe_load(f)
    assert rules in blocks  # the README shows the rule file as it is


def test_the_alert_texts_use_only_labels_every_series_has():
    with open(os.path.join(REPO, "docs", "prometheus", "alerts.yml")) as f:
        (rule,) = yaml.safe_load(f)["groups"][0]["rules"]
    used = set(re.findall(r"\$labels\.(\w+)", " ".join(rule["annotations"].values())))
    assert used and used <= {"instance", "job"}  # what a scrape gives every series
