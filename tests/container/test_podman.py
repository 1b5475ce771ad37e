"""The pause image under podman + runc: alone, and as the infra container of a pod."""

import gzip
import json
import os
import re
import time

import pytest

import pypause
from tests.container.runtimes import (
    MEASURED,
    ORPHAN_MAKER,
    ORPHANS,
    ZOMBIE_HOLDER,
    adopt_then_kill_orphans,
    fetch_in_netns,
    git_head,
    metrics_port,
    orphans_of,
    scrape_reaped_and_held,
    wait_until_adopted,
    wait_until_reaped,
    zombies,
)
from tests.support.proc import (
    pidns_members,
    root_is_read_only,
    stat,
    status_field,
    thread_count,
    tids,
    title,
)
from tests.support.running import wait_for, wait_until_idle

# The first test to run also builds the base and the image (under a minute here).
pytestmark = pytest.mark.timeout(300)

PYPAUSE_LAYER_BUDGET = 5_000_000
# The whole pause image, uncompressed (issue 22): the interpreter, the C library
# and what pypause can import of the standard library.
IMAGE_BUDGET = 16_000_000

# What pause mode becomes when it is started as root (podman's infra
# container, CRI-O's): the Kubernetes pause image's user, no supplementary
# group, no capability left.
PAUSE_USER = {
    "Uid": ["65535"] * 4,
    "Gid": ["65535"] * 4,
    "Groups": [],
    "CapPrm": ["0" * 16],
    "CapEff": ["0" * 16],
}

# What the environment of a pod's containers may hold: auto-instrumentation
# injects PYTHONPATH (with a sitecustomize) into every one; the other two make
# an interpreter that honours them die before it runs a line ("Fatal Python
# error"). The image's #! line has -I, which ignores them all.
PYTHON_ENVIRONMENT = {
    "PYTHONHOME": "/nonexistent",
    "PYTHONPATH": "/nonexistent",
    "PYTHONINTMAXSTRDIGITS": "1",
}

# Run inside the image: what could be executed there, and whether pip came along.
LAYOUT_PROBE = """\
import importlib.machinery, json, os, sys
shebang = open("/usr/local/bin/pypause").readline().split()
executables = []
for directory, dirs, files in os.walk("/"):
    if directory == "/":
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
    for name in files:
        path = os.path.join(directory, name)
        # Libraries and stdlib modules with a #! line need the interpreter anyway.
        if (".so" not in name and not name.endswith(".py") and not os.path.islink(path)
                and os.path.isfile(path) and os.access(path, os.X_OK)):
            executables.append(path)
print(json.dumps({
    "python": os.path.realpath(sys.executable),
    "executables": sorted(executables),
    "pause": os.path.realpath("/pause"),
    # #!, the interpreter it names (resolved), and what follows it.
    "shebang": [shebang[0][:2], os.path.realpath(shebang[0][2:])] + shebang[1:],
    "pip": [m for m in ("pip", "ensurepip", "setuptools")
            if importlib.machinery.PathFinder.find_spec(m)],
    "licence": open("/usr/share/doc/pypause/LICENSE").read(200).split(),
}))
"""


@pytest.fixture
def pods(podman):
    """The private podman, emptied of every pod and container after the test."""
    yield podman
    podman.remove_everything()


def start_pod(podman, name, image, infra_command=None):
    """Start a pod whose infra container is `image`; return the infra's host PID."""
    args = [
        "pod",
        "create",
        "--name",
        name,
        "--infra-image",
        image,
        "--infra-name",
        name + "-infra",
        "--share",
        "pid,ipc,net",
        "--network",
        "none",
    ]
    if infra_command:
        # podman 4 splits this at whitespace: no argument may contain a space.
        args += ["--infra-command", infra_command]
    podman(*args)
    podman("pod", "start", name)
    return int(podman.inspect(name + "-infra", "{{.State.Pid}}"))


def run_in_pod(podman, pod, name, image, *args, options=()):
    """Start container `name` of `pod`, `args` going to `image`'s python3, with
    `options`; return its ID, as `podman run` prints it."""
    return podman(
        "run", "-d", "--name", name, "--pod", pod, "--entrypoint", "python3", *options, image, *args
    ).stdout.strip()


def start_orphan_maker(podman, pod, image, user=None):
    """A container of the pod that leaves ORPHANS orphans; as the image's USER, or `user`.

    Return its ID, as `podman run` prints it.
    """
    return run_in_pod(
        podman,
        pod,
        pod + "-worker",
        image,
        *ORPHAN_MAKER,
        options=["--user", user] if user else [],
    )


def start_zombie_holder(podman, pod, image):
    """A container of the pod whose process holds HELD zombies; return (its ID, its host PID)."""
    container_id = run_in_pod(
        podman,
        pod,
        pod + "-holder",
        image,
        *ZOMBIE_HOLDER,
    )
    return container_id, int(podman.inspect(container_id, "{{.State.Pid}}"))


def wait_for_title(podman, name, words):
    """Wait until container `name`'s process shows the title `words`; return its host PID.

    Fail at once, with what the container wrote, if its process ends instead.
    """
    pid = int(podman.inspect(name, "{{.State.Pid}}"))  # 0: not running
    # None: gone; []: a zombie (its cmdline reads empty).
    wait_for(
        lambda: not pid or title(pid) in (None, [], words),
        10,
        "pid %d to show the title %r" % (pid, " ".join(words)),
    )
    if not pid or title(pid) != words:
        logs = podman("logs", name, check=False)
        raise AssertionError(
            "%s ended (status %s) instead of showing the title %r:\n%s%s"
            % (
                name,
                podman.inspect(name, "{{.State.ExitCode}}"),
                " ".join(words),
                logs.stdout,
                logs.stderr,
            )
        )
    return pid


def credentials(pid):
    """Who `pid` (a process or a thread) runs as, in the terms of PAUSE_USER."""
    return {key: status_field(pid, key) for key in PAUSE_USER}


def test_image_config_and_contents(podman, image, base_image):
    config = json.loads(podman("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == "65535:65535"
    assert config["StopSignal"] == "SIGTERM"
    assert config["Entrypoint"] == ["pypause"]
    assert not config.get("Cmd"), "no CMD: no arguments means pause mode"
    assert config["Labels"]["org.opencontainers.image.title"] == "pypause"
    assert config["Labels"]["org.opencontainers.image.base.name"] == base_image
    # Filled in by deploy/image/build.sh from the one source of each value.
    assert config["Labels"]["org.opencontainers.image.version"] == pypause.__version__
    assert config["Labels"]["org.opencontainers.image.revision"] == git_head()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", config["Labels"]["org.opencontainers.image.created"]
    )

    probe = json.loads(podman.run_in(image, "-c", LAYOUT_PROBE, entrypoint="python3").stdout)
    # Nothing to run but the interpreter and pypause: no shell, no busybox, no pip.
    assert probe["executables"] == sorted([probe["python"], "/usr/local/bin/pypause"])
    assert probe["pip"] == []
    assert probe["licence"][:4] == ["Apache", "License", "Version", "2.0,"]
    assert probe["pause"] == "/usr/local/bin/pypause"
    # Python without `site` and deaf to PYTHON* variables (see
    # deploy/image/assemble_rootfs.py): one word after the interpreter, as the
    # kernel hands everything after it on as a single argument.
    assert probe["shebang"] == ["#!", probe["python"], "-IS"]
    # CRI-O starts /pause whatever the ENTRYPOINT is.
    version = podman.run_in(image, "--version", entrypoint="/pause").stdout
    assert version.startswith("pypause ")


def test_image_size(podman, image, base_image, workdir):
    history = json.loads(podman("history", "--format", "json", image).stdout)
    layers = [entry["size"] for entry in history if entry["size"]]  # newest first
    assert len(layers) == 2, "expected a runtime layer and a pypause layer: %s" % history
    own, runtime = layers
    total = int(podman.inspect(image, "{{.Size}}"))
    base = int(podman.inspect(base_image, "{{.Size}}"))
    archive = os.path.join(workdir, "pause-image.tar")
    podman("save", "--format", "docker-archive", "-o", archive, image)
    try:
        with open(archive, "rb") as f:
            compressed = len(gzip.compress(f.read(), 6))  # as a registry's layers are
    finally:
        os.remove(archive)
    MEASURED["image size"] = (
        "%.1f MB (gzip: %.1f MB) = Python runtime layer %.1f MB + pypause "
        "layer %.2f MB (the base it was taken from: %.1f MB)"
        % (total / 1e6, compressed / 1e6, runtime / 1e6, own / 1e6, base / 1e6)
    )
    assert own < PYPAUSE_LAYER_BUDGET
    assert total <= IMAGE_BUDGET
    # The runtime layer is the base less shell, pip and unused libraries, plus bytecode.
    assert total < base


# Every pypause module, and with them what they load of their dependencies
# (prometheus_client's and setproctitle's modules, not their __init__).
IMPORT_EVERYTHING = """\
import importlib, os, pypause
for name in sorted(os.listdir(pypause.__path__[0])):
    if name.endswith(".py") and name != "__main__.py":
        importlib.import_module("pypause." + name[:-3])
"""


def test_bytecode_is_precompiled_for_a_read_only_root(podman, image):
    # -v reports every module's code object: from a .pyc, or compiled from the .py.
    r = podman.run_in(
        image, "-v", "-c", IMPORT_EVERYTHING, entrypoint="python3", options=["--read-only"]
    )
    loaded = [line for line in r.stderr.splitlines() if line.startswith("# code object from")]
    compiled_at_start = [line for line in loaded if ".pyc" not in line]
    assert any("pypause/__pycache__/metrics." in line for line in loaded)
    assert compiled_at_start == []


def test_pause_mode_read_only_as_65535_stops_on_sigterm(pods, image):
    pods.run_in(
        image, options=["--name", "pp-single", "--read-only", "--user", "65535:65535"], detach=True
    )
    pid = int(pods.inspect("pp-single", "{{.State.Pid}}"))
    wait_until_idle(pid)
    assert pods.inspect("pp-single", "{{.State.Status}}") == "running"
    assert status_field(pid, "Uid") == ["65535"] * 4
    assert root_is_read_only(pid)

    start = time.monotonic()
    pods("stop", "--time", "10", "pp-single")
    elapsed = time.monotonic() - start
    MEASURED["podman stop, pause mode"] = "%.0f ms" % (elapsed * 1000)
    # 0, not 137: SIGTERM ended it, not the SIGKILL that follows 10 s later.
    assert pods.inspect("pp-single", "{{.State.ExitCode}}") == "0"
    logs = pods("logs", "pp-single")
    assert "Shutting down, got signal: Terminated" in logs.stdout + logs.stderr
    assert elapsed < 1.0


def test_pod_infra_drops_root_then_adopts_and_reaps_orphans_and_a_non_reaper_does_not(pods, image):
    infra = start_pod(pods, "pp-pod", image)
    wait_until_idle(infra)
    # podman starts the infra container as root (the control below shows it):
    # pypause gave that up before it began to wait for signals.
    assert credentials(infra) == PAUSE_USER
    # The pod's other containers may run as root: their orphans are still
    # adopted by, and reaped by, a PID 1 that no longer is.
    start_orphan_maker(pods, "pp-pod", image, user="0:0")
    wait_until_adopted(infra, ORPHANS)
    assert all(status_field(pid, "Uid") == ["0"] * 4 for pid in orphans_of(infra))
    adopt_then_kill_orphans(infra, ORPHANS)
    wait_until_reaped(infra)
    assert credentials(infra) == PAUSE_USER

    start = time.monotonic()
    pods("pod", "stop", "--time", "10", "pp-pod")
    MEASURED["podman pod stop, pypause infra"] = "%.0f ms" % ((time.monotonic() - start) * 1000)
    # 0, not 137: as the pause user, it still ended on podman's SIGTERM.
    assert pods.inspect("pp-pod-infra", "{{.State.ExitCode}}") == "0"
    logs = pods("logs", "pp-pod-infra")
    assert "Shutting down, got signal: Terminated" in logs.stdout + logs.stderr

    # Negative control: the same pod with an infra process that never reaps
    # keeps all the orphans as zombies, so the check above can fail.
    control = start_pod(
        pods, "pp-control", image, infra_command="python3 -c __import__('_signal').pause()"
    )
    start_orphan_maker(pods, "pp-control", image)
    adopt_then_kill_orphans(control, ORPHANS)
    wait_for(
        lambda: len(zombies(control)) == ORPHANS,
        10,
        "%d zombies under the non-reaping infra" % ORPHANS,
    )
    assert all(stat(pid).ppid == control for pid in zombies(control))
    # The same infra container, with a command that changes no credential, runs as root.
    assert status_field(control, "Uid") == ["0"] * 4
    assert status_field(control, "CapEff") != ["0" * 16]


@pytest.mark.parametrize("enabled_by", ["flag", "image env"])
def test_pod_infra_serves_metrics_in_the_pod_network_namespace(
    pods, image, metrics_image, enabled_by
):
    if enabled_by == "flag":
        port = 9100
        infra = start_pod(
            pods, "pp-metrics", image, infra_command="pypause --metrics-addr %d" % port
        )
    else:  # as a CRI runtime runs a sandbox: the image's entrypoint and env, no arguments
        port = metrics_port()
        infra = start_pod(pods, "pp-metrics", metrics_image)
    # Beside the orphan maker, a container whose process keeps its zombies.
    holder_id, holder = start_zombie_holder(pods, "pp-metrics", image)
    worker_id = start_orphan_maker(pods, "pp-metrics", image)
    # The containers, by the IDs `podman run` printed (runc names a
    # container's cgroup libpod-<ID>, in the unified hierarchy too): the
    # orphans' read from each zombie's unified line before the reap, the
    # holder's from its live process's.
    body = scrape_reaped_and_held(infra, port, worker_id, holder_id, holder)
    # Started as root (podman's infra container), pypause became the pause
    # user once the port was bound: every thread, the one serving included...
    threads = tids(infra)
    assert len(threads) == 2, "the loop and the metrics server"
    for thread in threads:
        assert credentials(int(thread)) == PAUSE_USER, "thread %s" % thread
    # ... and its process collector still reads its own /proc (stat, limits, fd).
    assert any(line.startswith("process_open_fds ") for line in body.splitlines()), body

    pods("pod", "stop", "--time", "10", "pp-metrics")
    assert pods.inspect("pp-metrics-infra", "{{.State.ExitCode}}") == "0"


@pytest.mark.parametrize("entrypoint", ["pypause", "/pause"])  # the image's; CRI-O's
def test_image_is_immune_to_the_python_environment_it_is_run_with(pods, image, entrypoint):
    environment = [
        arg
        for name, value in PYTHON_ENVIRONMENT.items()
        for arg in ("--env", "%s=%s" % (name, value))
    ]
    # Control: the image's interpreter, run plainly with these variables, dies.
    r = pods.run_in(image, "-c", "pass", entrypoint="python3", options=environment, check=False)
    assert (r.returncode, "Fatal Python error" in r.stderr) == (1, True), r.stderr

    # pypause, with metrics: its packages come from site-packages, which
    # `site` did not add to sys.path (-S); pypause's command did.
    port = 9100
    pods.run_in(
        image,
        "--metrics-addr",
        str(port),
        entrypoint=entrypoint,
        options=["--name", "pp-env", "--read-only", *environment],
        detach=True,
    )
    env = json.loads(pods.inspect("pp-env", "{{json .Config.Env}}"))
    assert {"%s=%s" % item for item in PYTHON_ENVIRONMENT.items()} <= set(env)
    pid = wait_for_title(pods, "pp-env", ["pypause", "--metrics-addr", str(port)])
    wait_until_idle(pid)
    responses = wait_for(
        lambda: fetch_in_netns(pid, port, "/metrics"),
        10,
        "the metrics endpoint in the container's network namespace",
    )
    assert responses["/metrics"][0] == 200
    assert thread_count(pid) == 2, "the loop and the metrics server"

    pods("stop", "--time", "10", "pp-env")
    assert pods.inspect("pp-env", "{{.State.ExitCode}}") == "0"
    logs = pods("logs", "pp-env")
    output = logs.stdout + logs.stderr
    assert "Shutting down, got signal: Terminated" in output
    # Not even a warning: nothing to re-execute, no environment to isolate from.
    assert "Fatal Python error" not in output and "WARNING" not in output, output


def test_init_mode_in_a_container_forwards_sigterm_and_passes_exit_codes(pods, image):
    # ENTRYPOINT ["pypause", "--"] of an app image, with the app as CMD.
    app = ["--", "python3", "-c"]
    r = pods.run_in(image, *app, "raise SystemExit(3)", entrypoint="pypause", check=False)
    assert r.returncode == 3, r.stderr

    pods.run_in(
        image,
        *app,
        "import _signal; _signal.pause()",
        entrypoint="pypause",
        options=["--name", "pp-app"],
        detach=True,
    )
    pid = int(pods.inspect("pp-app", "{{.State.Pid}}"))
    wait_for(
        lambda: any(s.ppid == pid and s.comm == "python3" for s in pidns_members(pid).values()),
        10,
        "pypause to start its child",
    )
    wait_until_idle(pid)
    pods("stop", "--time", "10", "pp-app")
    # The app died of the forwarded SIGTERM: 128 + 15, reported by pypause.
    assert pods.inspect("pp-app", "{{.State.ExitCode}}") == "143"
