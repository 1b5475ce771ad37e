"""Building images with podman: the pause image's labels across rebuilds in one
storage, and the Dockerfile on a base without pip."""

import json
import os
import re
import subprocess

import pytest

import pypause
from runtimes import REPO, run

# The first test to run also builds the base, the wheels and the pause image.
pytestmark = pytest.mark.timeout(300)

LABEL = "org.opencontainers.image."
BUILD_LABELS = ("version", "revision", "created", "source")


@pytest.fixture
def built(podman):
    """built(name): remember a tag the test creates; all are removed after it, also on failure."""
    names = []
    yield names.append
    if names:
        podman("rmi", "--force", *names, check=False)


def labels(podman, image):
    config = json.loads(podman("image", "inspect", image).stdout)[0]["Config"]
    return {key[len(LABEL):]: value for key, value in (config.get("Labels") or {}).items()
            if key.startswith(LABEL)}


def head():
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                          text=True).stdout.strip() or "unknown"


def layers(podman, image):
    return json.loads(podman("image", "inspect", image).stdout)[0]["RootFS"]["Layers"]


def test_rebuilt_images_carry_their_own_labels_and_a_plain_build_none(podman, image, base_image,
                                                                       wheel_context, built):
    # `image` was built by build.sh in this storage already (no SOURCE, created
    # now): the builds below are rebuilds, which the layer cache serves.
    offline = ["--pull=never", "--network", "none", "--build-context", "wheels=" + wheel_context,
               "--build-arg", "BASE_IMAGE=" + base_image]
    expected = {}
    for name, source, epoch, created in (
            ("a", "https://example.invalid/pypause-a", "1000000000", "2001-09-09T01:46:40Z"),
            ("b", "https://example.invalid/pypause-b", "1700000000", "2023-11-14T22:13:20Z")):
        tag = "localhost/pypause-test-labels:" + name
        built(tag)
        revision = head()  # as build.sh reads it (others may commit meanwhile)
        run([os.path.join(REPO, "deploy", "image", "build.sh"), *offline, "-t", tag],
            env=dict(podman.env, ENGINE="podman", SOURCE=source, SOURCE_DATE_EPOCH=epoch),
            timeout=600)
        expected[tag] = {"version": pypause.__version__, "revision": revision,
                         "created": created, "source": source}
    plain = "localhost/pypause-test-labels:plain"
    built(plain)
    podman("build", *offline, "-t", plain, REPO, timeout=600)
    expected[plain] = {}
    # The first build.sh build, without SOURCE: no source label.
    first = labels(podman, image)
    expected[image] = {"version": pypause.__version__, "revision": first.get("revision"),
                       "created": first.get("created")}
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", first.get("revision", ""))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first.get("created", ""))

    for tag, own in expected.items():
        found = labels(podman, tag)
        assert {key: found[key] for key in BUILD_LABELS if key in found} == own, tag
        assert found["title"] == "pypause" and found["base.name"] == base_image, tag
    # Only the labels differ: the layers came from the cache, shared by all four.
    assert len({tuple(layers(podman, tag)) for tag in expected}) == 1


def test_a_base_without_pip_stops_the_build_at_once_with_the_command_to_use(podman, base_image):
    # The session's base has no pip (the `image` fixture builds on it with the
    # wheels handed in as a build context, the route the message names).
    r = podman("build", "--pull=never", "--network", "none", "--force-rm",
               "--build-arg", "BASE_IMAGE=" + base_image, "-t", "localhost/pypause-test-nopip:x",
               REPO, check=False, timeout=300)
    output = r.stdout + r.stderr
    assert r.returncode != 0, output
    ours = [line for line in output.splitlines() if line.startswith("pypause: ")]
    assert ours == ["pypause: %s has no pip, which the wheels stage runs. Build the wheels "
                    "elsewhere and hand them in instead: pip wheel --no-deps -w ctx/wheels . && "
                    "pip download --only-binary=:all: --python-version 3.11 -d ctx/wheels "
                    "ctx/wheels/pypause_init-*.whl pip && podman build --build-context "
                    "wheels=ctx --build-arg BASE_IMAGE=%s ... ." % (base_image, base_image)], output
    assert "No module named pip" not in output
    # It stopped in the wheels stage's first step: nothing was copied.
    steps = re.findall(r"^(?:\[\d+/\d+\] )?STEP \d+/\d+: (.*)$", r.stdout, re.M)
    assert steps[-1].startswith('RUN ["python3", "-c", "import importlib.util'), steps
    assert not any(step.startswith("COPY") for step in steps), steps
