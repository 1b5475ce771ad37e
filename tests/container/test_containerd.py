"""The pause image under containerd, the runtime kind and most clusters use.

`ctr` has no CRI client, so the sandbox is run the way containerd's CRI
plugin runs one: the image's entrypoint with no arguments, a read-only root
filesystem, the image's user, and SIGKILL to stop it. A second container joins
its PID namespace, as containers of a pod with shareProcessNamespace do. The
CRI plugin itself is loaded with our image as its sandbox_image, from the
snippet in deploy/.
"""

import os
import signal
import subprocess
import time

import pytest

from tests.container import runtimes
from tests.container.runtimes import (
    CONTAINERD_NAMESPACE,
    MEASURED,
    ORPHAN_MAKER,
    ORPHANS,
    adopt_then_kill_orphans,
    run,
    setup_problem,
    wait_until_reaped,
)
from tests.support.proc import mounts_under, pidns_members, root_is_read_only, status_field, title
from tests.support.running import wait_for, wait_until_idle

pytestmark = pytest.mark.timeout(300)


class Containerd(runtimes.Containerd):
    """The daemon, with ctr's view of its tasks and containers."""

    def tasks(self):
        """{container id: (pid, status)} of the tasks containerd runs."""
        rows = self.ctr("tasks", "ls").stdout.splitlines()[1:]
        return {row.split()[0]: (int(row.split()[1]), row.split()[2]) for row in rows}

    def run_in_background(self, *args):
        """`ctr run --rm` in the background, as a Popen whose exit code is the task's."""
        return subprocess.Popen(
            ["ctr", "--address", self.socket, "--namespace", CONTAINERD_NAMESPACE, "run", "--rm"]
            + list(args),
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
        self.end()
        for mount in reversed(mounts_under(self.dir)):
            run(["umount", mount], check=False)


@pytest.fixture(scope="module")
def containerd(oci_archive, image, workdir):
    problem = setup_problem(
        "containerd and runc", ("containerd", "ctr", "containerd-shim-runc-v2", "runc")
    )
    if problem:
        pytest.skip(problem)
    daemon = Containerd(os.path.join(workdir, "containerd"), image)
    try:
        daemon.start()
        daemon.import_image(oci_archive(image))
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
    assert title(pid) == ["pypause"], "no arguments: pause mode"

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
