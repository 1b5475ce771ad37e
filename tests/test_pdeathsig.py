"""-p (PYPAUSE_PDEATHSIG): a signal when pypause's parent dies, kept across
the drop of root."""

import os
import signal
import subprocess

import pytest

from tests.support.proc import stat, status_field
from tests.support.running import PYPAUSE, helper, lines, needs_pidns, wait_for, wait_until_idle

pytestmark = pytest.mark.timeout(30)


# -- -p / PYPAUSE_PDEATHSIG ---------------------------------------------------


@pytest.mark.parametrize(
    "args, env", [(["-p", "USR1"], {}), ([], {"PYPAUSE_PDEATHSIG": "SIGUSR1"})]
)
def test_pdeathsig_arrives_when_the_parent_dies(args, env):
    # Subreaper only: the parent that dies is a shell that started pypause in
    # the background. A PID 1's parent is unshare (a runtime's shim there), and
    # -p replaces the SIGKILL unshare's --kill-child asked for: not the same test.
    # sh starts pypause in the background and exits when its stdin closes.
    parent = subprocess.Popen(
        [
            "sh",
            "-c",
            '"$@" & echo "pid $!"; read x; exit 0',
            "sh",
            PYPAUSE,
            *args,
            "--",
            *helper("signal_echo", 0, "--exit-on-term", "--no-stdin"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, **env},
    )
    first = lines(parent.stdout, 2)
    pypause = int(next(line for line in first if line.startswith("pid ")).split()[1])
    try:
        assert "ready" in first
        wait_until_idle(pypause)
        parent.stdin.close()
        assert parent.wait(10) == 0
        assert lines(parent.stdout, 1) == ["SIGUSR1"]
    finally:
        os.kill(pypause, signal.SIGTERM)  # the child echoes it and exits 0
    wait_for(lambda: stat(pypause) is None, what="pypause to exit")


@needs_pidns
def test_the_parent_death_signal_unshare_asked_for_survives_the_drop_of_root(pidns):
    # unshare --kill-child has the kernel SIGKILL its child (pypause, PID 1 in
    # pause mode) when unshare dies; leaving root clears that, unless asked again.
    ns = pidns([PYPAUSE])
    wait_until_idle(ns.pid)
    assert int(status_field(ns.pid, "Uid")[0]) == 65535  # the drop happened
    os.kill(ns.unshare.pid, signal.SIGKILL)
    ns.unshare.wait(10)
    wait_for(lambda: stat(ns.pid) is None, what="pypause to die with unshare")


def test_pdeathsig_survives_the_drop_of_root_in_pause_mode():
    parent = subprocess.Popen(
        ["sh", "-c", '"$@" & echo $!; read x; exit 0', "sh", PYPAUSE, "-p", "TERM"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    pypause = int(parent.stdout.readline())
    try:
        wait_until_idle(pypause)
        assert int(status_field(pypause, "Uid")[0]) == 65535
        parent.stdin.close()
        assert parent.wait(10) == 0
        wait_for(lambda: stat(pypause) is None, what="pypause to end on its SIGTERM")
    finally:
        if stat(pypause) is not None:
            os.kill(pypause, signal.SIGKILL)
