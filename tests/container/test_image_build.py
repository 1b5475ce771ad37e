"""Building images with podman: the pause image's labels across rebuilds in one
storage, the Dockerfile on a base without pip, and the examples/ Dockerfiles as
written (pypause as an app image's init)."""

import glob
import json
import os
import re
import shutil

import pytest

import pypause
from tests.container.runtimes import REPO, git_head, offline_build, run

# The first test to run also builds the bases, the wheels and the pause image.
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
    return {
        key[len(LABEL) :]: value
        for key, value in (config.get("Labels") or {}).items()
        if key.startswith(LABEL)
    }


def build_on(podman, base_image, context, *options, check=True):
    """Podman.build of `context` with its BASE_IMAGE `base_image` and `options`."""
    return podman.build(
        context, "--build-arg", "BASE_IMAGE=" + base_image, *options, check=check, timeout=300
    )


def layers(podman, image):
    return json.loads(podman("image", "inspect", image).stdout)[0]["RootFS"]["Layers"]


def test_rebuilt_images_carry_their_own_labels_and_a_plain_build_none(
    podman, image, base_image, wheel_context, built
):
    # `image` was built by build.sh in this storage already (no SOURCE, created
    # now): the builds below are rebuilds, which the layer cache serves.
    offline = offline_build(base_image, wheel_context)
    expected = {}
    for name, source, epoch, created in (
        ("a", "https://example.invalid/pypause-a", "1000000000", "2001-09-09T01:46:40Z"),
        ("b", "https://example.invalid/pypause-b", "1700000000", "2023-11-14T22:13:20Z"),
    ):
        tag = "localhost/pypause-test-labels:" + name
        built(tag)
        revision = git_head()  # as build.sh reads it (others may commit meanwhile)
        run(
            [os.path.join(REPO, "deploy", "image", "build.sh"), *offline, "-t", tag],
            env=dict(podman.env, ENGINE="podman", SOURCE=source, SOURCE_DATE_EPOCH=epoch),
            timeout=600,
        )
        expected[tag] = {
            "version": pypause.__version__,
            "revision": revision,
            "created": created,
            "source": source,
        }
    plain = "localhost/pypause-test-labels:plain"
    built(plain)
    podman("build", *offline, "-t", plain, REPO, timeout=600)
    expected[plain] = {}
    # The first build.sh build, without SOURCE: no source label.
    first = labels(podman, image)
    expected[image] = {
        "version": pypause.__version__,
        "revision": first.get("revision"),
        "created": first.get("created"),
    }
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
    r = build_on(
        podman, base_image, REPO, "--force-rm", "-t", "localhost/pypause-test-nopip:x", check=False
    )
    output = r.stdout + r.stderr
    assert r.returncode != 0, output
    ours = [line for line in output.splitlines() if line.startswith("pypause: ")]
    assert ours == [
        "pypause: %s has no pip, which the wheels stage runs. Build the wheels "
        "elsewhere and hand them in instead: pip wheel --no-deps -w ctx/wheels . && "
        "pip download --only-binary=:all: --python-version 3.11 -d ctx/wheels "
        "ctx/wheels/pypause_init-*.whl pip && podman build --build-context "
        "wheels=ctx --build-arg BASE_IMAGE=%s ... ." % (base_image, base_image)
    ], output
    assert "No module named pip" not in output
    # It stopped in the wheels stage's first step: nothing was copied.
    steps = re.findall(r"^(?:\[\d+/\d+\] )?STEP \d+/\d+: (.*)$", r.stdout, re.M)
    assert steps[-1].startswith('RUN ["python3", "-c", "import importlib.util'), steps
    assert not any(step.startswith("COPY") for step in steps), steps


def example_context(name, workdir, wheel_context):
    """A copy of examples/`name` with pypause's wheel in its dist/, as its comment says."""
    context = os.path.join(workdir, "example-" + name)
    if not os.path.isdir(context):
        shutil.copytree(
            os.path.join(REPO, "examples", name), context, ignore=shutil.ignore_patterns("dist")
        )
        os.mkdir(os.path.join(context, "dist"))
        (wheel,) = glob.glob(os.path.join(wheel_context, "wheels", "pypause_init-*.whl"))
        shutil.copy(wheel, os.path.join(context, "dist"))
    return context


@pytest.mark.parametrize(
    "example, base, entrypoint",
    [
        ("init-python-image", "python_style_image", "pypause"),
        ("init-debian-python", "debian_python_image", "/opt/pypause/bin/pypause"),
    ],
)
def test_example_image_runs_its_app_under_pypause_as_pid_1_and_exits_with_its_status(
    request, podman, workdir, wheel_context, built, example, base, entrypoint
):
    base_image = request.getfixturevalue(base)
    context = example_context(example, workdir, wheel_context)
    tag = "localhost/pypause-test-example:" + example
    built(tag)
    # As written: only the base is another (a stand-in: no registry here).
    build_on(podman, base_image, context, "-t", tag)
    config = json.loads(podman("image", "inspect", tag).stdout)[0]["Config"]
    assert config["Entrypoint"] == [entrypoint, "--"]

    r = podman.run_in(tag, check=False)
    assert r.returncode == 3, r.stdout + r.stderr
    # PID 1 is pypause: by its title, or (before pypause set it) its command
    # line, python3 running the entrypoint's script.
    pid1 = re.fullmatch(r"app: pid (\d+), parent 1, PID 1: (.*)\n", r.stdout)
    assert pid1, r.stdout + r.stderr
    assert re.fullmatch(
        r"(pypause|\S*/python3(\.\d+)? \S*/pypause) -- python3 /app/app.py", pid1.group(2)
    ), pid1.group(2)


def test_the_official_python_image_example_fails_on_a_debian_python_as_it_says(
    podman, workdir, wheel_context, debian_python_image
):
    # The stand-in bases differ where it matters: Debian's pip refuses (PEP 668).
    context = example_context("init-python-image", workdir, wheel_context)
    r = build_on(podman, debian_python_image, context, "--force-rm", check=False)
    assert r.returncode != 0
    assert "externally-managed-environment" in r.stdout + r.stderr
