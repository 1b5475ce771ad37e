"""The pause image under podman + runc: alone, and as the infra container of a pod."""

import json
import re
import subprocess
import time

import pytest

import pypause
from runtimes import (MEASURED, METRICS_DOCKERFILE, ORPHAN_COMM, ORPHAN_MAKER, ORPHANS, REPO,
                      adopt_then_kill_orphans, fetch_in_netns, pidns_members, proc_stat,
                      proc_status,
                      root_is_read_only, wait_for, wait_until_reaped,
                      wait_until_waiting_for_signals, zombies)

# The first test to run also builds the base and the image (under a minute here).
pytestmark = pytest.mark.timeout(300)

PYPAUSE_LAYER_BUDGET = 5_000_000

# Run inside the image: what could be executed there, and whether pip came along.
LAYOUT_PROBE = """\
import importlib.util, json, os, sys
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
    "pip": [m for m in ("pip", "ensurepip", "setuptools") if importlib.util.find_spec(m)],
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
    args = ["pod", "create", "--name", name, "--infra-image", image,
            "--infra-name", name + "-infra", "--share", "pid,ipc,net", "--network", "none"]
    if infra_command:
        # podman 4 splits this at whitespace: no argument may contain a space.
        args += ["--infra-command", infra_command]
    podman(*args)
    podman("pod", "start", name)
    return int(podman.inspect(name + "-infra", "{{.State.Pid}}"))


def start_orphan_maker(podman, pod, image):
    podman("run", "-d", "--name", pod + "-worker", "--pod", pod, "--entrypoint", "python3",
           image, "-c", ORPHAN_MAKER, str(ORPHANS))


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
    revision = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                              text=True).stdout.strip() or "unknown"
    assert config["Labels"]["org.opencontainers.image.revision"] == revision
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
                        config["Labels"]["org.opencontainers.image.created"])

    probe = json.loads(podman("run", "--rm", "--network", "none", "--entrypoint", "python3",
                              image, "-c", LAYOUT_PROBE).stdout)
    # Nothing to run but the interpreter and pypause: no shell, no busybox, no pip.
    assert probe["executables"] == sorted([probe["python"], "/usr/local/bin/pypause"])
    assert probe["pip"] == []
    assert probe["licence"][:4] == ["Apache", "License", "Version", "2.0,"]
    assert probe["pause"] == "/usr/local/bin/pypause"
    # CRI-O starts /pause whatever the ENTRYPOINT is.
    version = podman("run", "--rm", "--network", "none", "--entrypoint", "/pause", image,
                     "--version").stdout
    assert version.startswith("pypause ")


def test_image_size(podman, image, base_image):
    history = json.loads(podman("history", "--format", "json", image).stdout)
    layers = [entry["size"] for entry in history if entry["size"]]  # newest first
    assert len(layers) == 2, "expected a runtime layer and a pypause layer: %s" % history
    own, runtime = layers
    total = int(podman.inspect(image, "{{.Size}}"))
    base = int(podman.inspect(base_image, "{{.Size}}"))
    MEASURED["image size"] = ("%.1f MB = Python runtime layer %.1f MB + pypause layer %.2f MB "
                              "(the base it was taken from: %.1f MB)"
                              % (total / 1e6, runtime / 1e6, own / 1e6, base / 1e6))
    assert own < PYPAUSE_LAYER_BUDGET
    # The runtime layer is the base less shell, pip and unused libraries, plus bytecode.
    assert total < base


# Every pypause module, so that an import the trimmed standard library lacks fails here.
IMPORT_EVERYTHING = """\
import importlib, pkgutil, pypause, prometheus_client, setproctitle
for module in pkgutil.iter_modules(pypause.__path__):
    if module.name != "__main__":
        importlib.import_module("pypause." + module.name)
"""


def test_bytecode_is_precompiled_for_a_read_only_root(podman, image):
    # -v reports every module's code object: from a .pyc, or compiled from the .py.
    r = podman("run", "--rm", "--network", "none", "--read-only", "--entrypoint", "python3",
               image, "-v", "-c", IMPORT_EVERYTHING)
    loaded = [line for line in r.stderr.splitlines() if line.startswith("# code object from")]
    compiled_at_start = [line for line in loaded if ".pyc" not in line]
    assert any("pypause/__pycache__/metrics." in line for line in loaded)
    assert compiled_at_start == []


def test_pause_mode_read_only_as_65535_stops_on_sigterm(pods, image):
    pods("run", "-d", "--name", "pp-single", "--network", "none", "--read-only",
         "--user", "65535:65535", image)
    pid = int(pods.inspect("pp-single", "{{.State.Pid}}"))
    wait_until_waiting_for_signals(pid)
    assert pods.inspect("pp-single", "{{.State.Status}}") == "running"
    assert proc_status(pid, "Uid") == ["65535"] * 4
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


def test_pod_infra_adopts_and_reaps_orphans_and_a_non_reaper_does_not(pods, image):
    infra = start_pod(pods, "pp-pod", image)
    wait_until_waiting_for_signals(infra)
    start_orphan_maker(pods, "pp-pod", image)
    adopt_then_kill_orphans(infra, ORPHANS)
    wait_until_reaped(infra)

    start = time.monotonic()
    pods("pod", "stop", "--time", "10", "pp-pod")
    MEASURED["podman pod stop, pypause infra"] = "%.0f ms" % ((time.monotonic() - start) * 1000)
    assert pods.inspect("pp-pod-infra", "{{.State.ExitCode}}") == "0"

    # Negative control: the same pod with an infra process that never reaps
    # keeps all the orphans as zombies, so the check above can fail.
    control = start_pod(pods, "pp-control", image,
                        infra_command="python3 -c __import__('signal').pause()")
    start_orphan_maker(pods, "pp-control", image)
    adopt_then_kill_orphans(control, ORPHANS)
    wait_for(lambda: len(zombies(control)) == ORPHANS, 10,
             "%d zombies under the non-reaping infra" % ORPHANS)
    assert all(proc_stat(pid)[2] == control for pid in zombies(control))


@pytest.mark.parametrize("enabled_by", ["flag", "image env"])
def test_pod_infra_serves_metrics_in_the_pod_network_namespace(pods, image, metrics_image,
                                                               enabled_by):
    if enabled_by == "flag":
        port = 9100
        infra = start_pod(pods, "pp-metrics", image,
                          infra_command="pypause --metrics-addr %d" % port)
    else:  # as a CRI runtime runs a sandbox: the image's entrypoint and env, no arguments
        with open(METRICS_DOCKERFILE) as f:
            port = int(re.search(r"^ENV PYPAUSE_METRICS_ADDR=(\d+)$", f.read(), re.M).group(1))
        infra = start_pod(pods, "pp-metrics", metrics_image)
    start_orphan_maker(pods, "pp-metrics", image)
    adopt_then_kill_orphans(infra, ORPHANS)
    wait_until_reaped(infra)

    responses = wait_for(lambda: fetch_in_netns(infra, port, "/metrics", "/healthz"), 10,
                         "the metrics endpoint in the pod's network namespace")
    status, content_type, body = responses["/metrics"]
    assert (status, content_type) == (200, "text/plain")
    reaped = 'pypause_zombies_reaped_by_comm_total{comm="%s"} %d.0' % (ORPHAN_COMM, ORPHANS)
    assert reaped in body.splitlines(), body
    assert responses["/healthz"][0] == 200

    pods("pod", "stop", "--time", "10", "pp-metrics")
    assert pods.inspect("pp-metrics-infra", "{{.State.ExitCode}}") == "0"


def test_init_mode_in_a_container_forwards_sigterm_and_passes_exit_codes(pods, image):
    # ENTRYPOINT ["pypause", "--"] of an app image, with the app as CMD.
    init = ["--entrypoint", "pypause", image, "--", "python3", "-c"]
    r = pods("run", "--rm", "--network", "none", *init, "raise SystemExit(3)", check=False)
    assert r.returncode == 3, r.stderr

    pods("run", "-d", "--name", "pp-app", "--network", "none", *init,
         "import signal; signal.pause()")
    pid = int(pods.inspect("pp-app", "{{.State.Pid}}"))
    wait_for(lambda: any(ppid == pid and comm == "python3"
                         for comm, _, ppid in pidns_members(pid).values()),
             10, "pypause to start its child")
    wait_until_waiting_for_signals(pid)
    pods("stop", "--time", "10", "pp-app")
    # The app died of the forwarded SIGTERM: 128 + 15, reported by pypause.
    assert pods.inspect("pp-app", "{{.State.ExitCode}}") == "143"
