"""The pause image for linux/arm64, built and run for real under qemu-user-static.

The session builds, once (conftest.py's arm64_* fixtures): a base of Debian's arm64 python3 (unpacked from
Debian's arm64 packages, as the amd64 base is from amd64 ones, and imported as
an arm64 image), a wheelhouse for it (pypause's and the pure-Python wheels,
and setproctitle's manylinux aarch64 wheel), and the pause image on it with
`deploy/image/build.sh --platform linux/arm64`, whose build stage runs the
base's arm64 python3 under emulation. It then runs that image (pause mode,
init mode, a forwarded signal, orphans reaped, the metrics variant) and puts
it with the amd64 one in a multi-arch manifest.

Emulation is binfmt_misc's qemu-aarch64 entry with the F (fix-binary) flag,
which the kernel then finds inside containers too. If qemu-user-static is
installed but the entry is not there, the `binfmt` fixture mounts binfmt_misc
and registers it, and undoes exactly what it did at the end of the session.
"""

import json

import pytest

from tests.container.runtimes import ORPHANS_PY, metrics_port
from tests.support.proc import pidns_members
from tests.support.running import wait_for, wait_until_idle

# The first test builds the base and the image under emulation.
pytestmark = pytest.mark.timeout(300)

MANIFEST = "localhost/pypause:multiarch"


# The app of the reaping test, run by pypause in init mode: a middle process
# forks ORPHANS children and exits, so that they are adopted by PID 1; they are
# then let go (EOF on a pipe) and exit, and the app waits until every one is
# gone: reaped by PID 1, not just exited. It exits 0 only then, and pypause
# with it.
ORPHANS = 20
REAPED_ORPHANS = [str(ORPHANS), "--until-released", "--reaped"]  # ORPHANS_PY's arguments


@pytest.fixture
def containers(podman):
    """The private podman, emptied of every container after the test."""
    yield podman
    podman.remove_everything()


def _start(podman, image, *args, entrypoint=None):
    """Start a container of `image`, `args` going to `entrypoint` (by default the image's);
    return (container ID, host PID of its PID 1 once pypause waits for signals: a
    SIGTERM before that would meet qemu's default action, not pypause)."""
    container = podman.run_in(image, *args, entrypoint=entrypoint, detach=True).stdout.strip()
    pid = int(podman.inspect(container, "{{.State.Pid}}"))
    assert pid, podman("logs", container, check=False).stderr
    wait_until_idle(pid, timeout=30)
    return container, pid


def test_image_is_arm64(podman, arm64_podman, arm64_image, arm64_base_image):
    for engine, name in [
        (arm64_podman, arm64_base_image),
        (arm64_podman, arm64_image),
        (podman, arm64_image),
    ]:
        config = json.loads(engine("image", "inspect", name).stdout)[0]
        assert (config["Os"], config["Architecture"]) == ("linux", "arm64"), name
    config = json.loads(podman("image", "inspect", arm64_image).stdout)[0]["Config"]
    assert config["Entrypoint"] == ["pypause"]
    assert config["User"] == "65535:65535"
    # What runs is the arm64 interpreter (emulated), from the image's own files.
    assert _machine(podman, arm64_image) == "aarch64"
    version = podman.run_in(arm64_image, "--version").stdout
    assert version.startswith("pypause ")


def _machine(podman, image):
    """The machine that `image`'s python3 reports it runs on."""
    code = "import os; print(os.uname().machine)"
    return podman.run_in(image, "-IS", "-c", code, entrypoint="python3").stdout.strip()


def _init_mode(containers, image, code, *args, timeout):
    """`pypause -- python3 -c CODE ARGS...` in a container of `image`, to its end."""
    return containers.run_in(
        image,
        "--",
        "python3",
        "-c",
        code,
        *args,
        entrypoint="pypause",
        check=False,
        timeout=timeout,
    )


def test_pause_mode_stops_on_sigterm(containers, arm64_image):
    container, _ = _start(containers, arm64_image)
    containers("stop", "--time", "20", container, timeout=60)
    assert containers.inspect(container, "{{.State.ExitCode}}") == "0"
    logs = containers("logs", container).stderr
    assert "Shutting down, got signal: Terminated" in logs, logs


def test_init_mode_exit_status(containers, arm64_image):
    r = _init_mode(containers, arm64_image, "raise SystemExit(3)", timeout=60)
    assert r.returncode == 3, r.stderr


def test_init_mode_forwards_sigterm(containers, arm64_image):
    container, pid = _start(
        containers,
        arm64_image,
        "--",
        "python3",
        "-c",
        "import _signal; _signal.pause()",
        entrypoint="pypause",
    )
    wait_for(
        lambda: any(s.ppid == pid for s in pidns_members(pid).values()),
        30,
        "the app to start",
    )
    containers("stop", "--time", "20", container, timeout=60)
    # 128 + SIGTERM: the forwarded signal ended the app, and pypause exits as it did.
    assert containers.inspect(container, "{{.State.ExitCode}}") == "143"


def test_orphans_are_reaped(containers, arm64_image):
    r = _init_mode(containers, arm64_image, ORPHANS_PY, *REAPED_ORPHANS, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1] == "reaped %d" % ORPHANS


def test_metrics_variant_serves_metrics(containers, arm64_metrics_image):
    config = json.loads(containers("image", "inspect", arm64_metrics_image).stdout)[0]
    assert config["Architecture"] == "arm64"
    container, _ = _start(containers, arm64_metrics_image)
    wait_for(
        lambda: "serving metrics" in containers("logs", container).stderr,
        30,
        "pypause to serve metrics",
    )
    answer = containers.get_in(container, metrics_port(), "/metrics", timeout=60)
    assert answer.splitlines()[0] == "HTTP/1.1 200 OK", answer[:500]
    assert "pypause_info{" in answer, answer[:2000]
    containers("stop", "--time", "20", container, timeout=60)
    assert containers.inspect(container, "{{.State.ExitCode}}") == "0"


@pytest.fixture
def manifest(podman):
    yield MANIFEST
    podman("manifest", "rm", MANIFEST, check=False)


def test_multiarch_manifest(podman, image, arm64_image, manifest):
    # Each image is its architecture's through and through, whichever was built
    # first (podman 4.3's layer cache does not tell platforms apart: see the
    # arm64_podman fixture).
    for name, arch, machine in [(image, "amd64", "x86_64"), (arm64_image, "arm64", "aarch64")]:
        assert podman.inspect(name, "{{.Architecture}}") == arch, name
        assert _machine(podman, name) == machine, name
    podman("manifest", "create", manifest)
    for name in (image, arm64_image):
        podman("manifest", "add", manifest, "containers-storage:" + name)
    listed = json.loads(podman("manifest", "inspect", manifest).stdout)["manifests"]
    platforms = sorted((m["platform"]["os"], m["platform"]["architecture"]) for m in listed)
    assert platforms == [("linux", "amd64"), ("linux", "arm64")]
