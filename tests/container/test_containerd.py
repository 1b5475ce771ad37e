"""The pause image under containerd, the runtime kind and most clusters use.

`ctr` has no CRI client, so the sandbox is run the way containerd's CRI
plugin runs one: the image's entrypoint with no arguments, a read-only root
filesystem, the image's user, and SIGKILL to stop it. A second container joins
its PID namespace, as containers of a pod with shareProcessNamespace do. The
CRI plugin itself is loaded with our image as its sandbox_image, from the
snippet in deploy/.
"""

import os
import shutil
import signal
import subprocess
import time

import pytest

from tests.container.runtimes import (
    MEASURED,
    ORPHAN_MAKER,
    ORPHANS,
    REPO,
    adopt_then_kill_orphans,
    run,
    shims_of,
    wait_until_reaped,
)
from tests.support.proc import pidns_members, root_is_read_only, status_field
from tests.support.running import wait_for, wait_until_idle

pytestmark = pytest.mark.timeout(300)

NAMESPACE = "k8s.io"  # where the CRI plugin, and `kind load`, keep images
CONFIG_SNIPPET = os.path.join(REPO, "deploy", "containerd", "config-v2.toml")


class Containerd:
    """A containerd daemon of our own: private config, root, state and socket."""

    def __init__(self, workdir, sandbox_image):
        os.makedirs(workdir)
        self.dir = workdir
        self.socket = os.path.join(workdir, "containerd.sock")
        with open(CONFIG_SNIPPET) as f:
            # The snippet as a user would paste it, with our image in it.
            snippet = f.read().replace("localhost/pypause:local", sandbox_image)
        self.config = os.path.join(workdir, "config.toml")
        with open(self.config, "w") as f:
            # Top-level keys first: the snippet's `version` too must precede any table.
            f.write('root = "%s/root"\nstate = "%s/state"\n' % (workdir, workdir))
            f.write(snippet)
            f.write(
                '\n[grpc]\n  address = "%s"\n[ttrpc]\n  address = "%s.ttrpc"\n'
                '[plugins."io.containerd.internal.v1.opt"]\n  path = "%s/opt"\n'
                % (self.socket, self.socket, workdir)
            )
        self.log = os.path.join(workdir, "containerd.log")
        self.proc = None

    def start(self):
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                ["containerd", "--config", self.config],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        wait_for(
            lambda: self.ctr("version", check=False).returncode == 0 or self.proc.poll(),
            30,
            "containerd to answer on its socket",
        )
        assert self.proc.poll() is None, self.read_log()

    def ctr(self, *args, check=True):
        return run(
            ["ctr", "--address", self.socket, "--namespace", NAMESPACE] + list(args), check=check
        )

    def read_log(self):
        with open(self.log) as f:
            return f.read()

    def tasks(self):
        """{container id: (pid, status)} of the tasks containerd runs."""
        rows = self.ctr("tasks", "ls").stdout.splitlines()[1:]
        return {row.split()[0]: (int(row.split()[1]), row.split()[2]) for row in rows}

    def run_in_background(self, *args):
        """`ctr run --rm` in the background, as a Popen whose exit code is the task's."""
        return subprocess.Popen(
            ["ctr", "--address", self.socket, "--namespace", NAMESPACE, "run", "--rm"] + list(args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def remove_everything(self):
        for cid in self.tasks():
            self.ctr("tasks", "kill", "--signal", "SIGKILL", cid, check=False)
            wait_for(
                lambda: self.tasks().get(cid, (0, "STOPPED"))[1] == "STOPPED",
                10,
                "task %s to stop" % cid,
            )
            self.ctr("tasks", "delete", cid, check=False)
        for cid in self.ctr("containers", "ls", "--quiet").stdout.split():
            self.ctr("containers", "delete", cid, check=False)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.remove_everything()
            for image in self.ctr("images", "ls", "--quiet").stdout.split():
                self.ctr("images", "rm", "--sync", image, check=False)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        # Shims outlive a daemon that is gone; these were started for our socket only.
        for pid in shims_of(self.socket):
            os.kill(pid, signal.SIGKILL)
        with open("/proc/mounts") as f:
            mounts = [line.split()[1] for line in f if line.split()[1].startswith(self.dir)]
        for mount in reversed(mounts):
            run(["umount", mount], check=False)


def _containerd_problem():
    if os.geteuid() != 0:
        return "needs root: containerd and runc"
    missing = [
        t
        for t in ("containerd", "ctr", "containerd-shim-runc-v2", "runc")
        if shutil.which(t) is None
    ]
    if missing:
        return "not installed: %s (see .ci/run)" % ", ".join(missing)
    return None


@pytest.fixture(scope="module")
def containerd(podman, image, workdir):
    problem = _containerd_problem()
    if problem:
        pytest.skip(problem)
    daemon = Containerd(os.path.join(workdir, "containerd"), image)
    try:
        daemon.start()
        archive = os.path.join(workdir, "pypause-oci.tar")
        podman("save", "--format", "oci-archive", "--output", archive, image)
        daemon.ctr("images", "import", archive)
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def ctr_run(containerd):
    """Start `ctr run --rm ...` processes; whatever is left is removed after the test."""
    started = []

    def start(*args):
        proc = containerd.run_in_background(*args)
        started.append(proc)
        return proc

    yield start
    containerd.remove_everything()
    for proc in started:
        proc.wait(10)


def test_cri_plugin_loads_with_our_image_as_sandbox_image(containerd, image):
    plugins = containerd.ctr("plugins", "ls").stdout.splitlines()
    cri = [row.split() for row in plugins if " cri " in row]
    assert cri and cri[0][-1] == "ok", plugins
    # The CRI plugin logs its whole configuration when it starts.
    assert "SandboxImage:%s " % image in containerd.read_log()
    # ... and has taken over the imported image, as it does after `kind load`.
    images = containerd.ctr("images", "ls").stdout
    assert any(
        row.startswith(image + " ") and "io.cri-containerd.image=managed" in row
        for row in images.splitlines()
    ), images


def start_sandbox(containerd, ctr_run, image, cid):
    """Run the image as the CRI runs a sandbox; return (ctr process, host PID)."""
    proc = ctr_run("--read-only", image, cid)

    def running_pid():
        pid, status = containerd.tasks().get(cid, (None, None))
        return pid if status == "RUNNING" else None

    pid = wait_for(running_pid, 30, "sandbox task %s to run" % cid)
    wait_until_idle(pid)
    return proc, pid


@pytest.mark.parametrize("stop_signal, exit_code", [("SIGTERM", 0), ("SIGKILL", 137)])
def test_sandbox_reaps_orphans_of_a_container_in_its_pid_namespace(
    containerd, ctr_run, image, stop_signal, exit_code
):
    sandbox_id = "pp-sandbox-" + stop_signal.lower()
    sandbox, pid = start_sandbox(containerd, ctr_run, image, sandbox_id)
    assert status_field(pid, "Uid") == ["65535"] * 4, "the image's USER"
    assert root_is_read_only(pid)
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        assert f.read().split(b"\0")[0].split() == [b"pypause"], "no arguments: pause mode"

    worker = ctr_run(
        "--with-ns",
        "pid:/proc/%d/ns/pid" % pid,
        image,
        sandbox_id + "-worker",
        "python3",
        *ORPHAN_MAKER,
    )
    adopt_then_kill_orphans(pid, ORPHANS)
    wait_until_reaped(pid)
    assert len(pidns_members(pid)) == 2, "the sandbox and the worker"

    start = time.monotonic()
    containerd.ctr("tasks", "kill", "--signal", stop_signal, sandbox_id)
    output, _ = sandbox.communicate(timeout=10)
    MEASURED["containerd: %s to sandbox exit" % stop_signal] = "%.0f ms" % (
        (time.monotonic() - start) * 1000
    )
    assert sandbox.returncode == exit_code, output
    if stop_signal == "SIGTERM":
        assert "Shutting down, got signal: Terminated" in output
    # With PID 1 gone, the kernel ends the rest of the pod.
    assert worker.wait(10) == 128 + signal.SIGKILL
    assert pidns_members(pid) == {}
