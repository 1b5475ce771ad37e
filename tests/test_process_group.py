"""-g (PYPAUSE_PGROUP): signals for the child's whole process group; without
it, for the child alone, which leads a process group of its own."""

import json
import os
import signal
import subprocess

import pytest

from tests.support.proc import children
from tests.support.running import PYPAUSE, helper, lines, wait_until_idle

pytestmark = pytest.mark.timeout(30)


# -- -g / PYPAUSE_PGROUP ------------------------------------------------------

# sh lives on until both echoes have finished (it ignores SIGUSR1/2; on SIGTERM
# it waits for them, then exits 143 as if killed by it): the main child's end
# is PID 1's, which takes the rest of its namespace with it.
GROUP_OF_TWO = [
    "sh",
    "-c",
    'trap "" USR1 USR2; "$@" & a=$!; "$@" & b=$!; trap "wait $a; wait $b; exit 143" TERM; wait',
    "sh",
    *helper("signal_echo", 0, "--exit-on-term", "--no-stdin"),
]


@pytest.mark.parametrize(
    "flag, env", [(["-g"], {}), (["--pgroup"], {}), ([], {"PYPAUSE_PGROUP": "1"})]
)
def test_pgroup_forwards_to_the_whole_group(init, flag, env):
    p = init.start(
        [PYPAUSE, *flag, "--", *GROUP_OF_TWO],
        stdout=subprocess.PIPE,
        env={**os.environ, **env},
    )
    assert lines(p.stdout, 2) == ["ready", "ready"]
    wait_until_idle(p.pid)
    os.kill(p.pid, signal.SIGUSR1)
    assert lines(p.stdout, 2) == ["SIGUSR1", "SIGUSR1"]
    os.kill(p.pid, signal.SIGTERM)
    assert lines(p.stdout, 2) == ["SIGTERM", "SIGTERM"]
    assert p.wait(10) == 143  # sh, the main child, was in the group too


def test_without_pgroup_only_the_child_gets_the_signal(init):
    p = init.start([PYPAUSE, "--", *GROUP_OF_TWO], stdout=subprocess.PIPE)
    assert lines(p.stdout, 2) == ["ready", "ready"]
    wait_until_idle(p.pid)
    group = os.getpgid(children(p.pid)[0])
    os.kill(p.pid, signal.SIGUSR1)  # to sh alone, which ignores it
    wait_until_idle(p.pid)
    os.killpg(group, signal.SIGUSR2)
    assert lines(p.stdout, 2) == ["SIGUSR2", "SIGUSR2"]  # no SIGUSR1 came first
    os.killpg(group, signal.SIGTERM)
    assert lines(p.stdout, 2) == ["SIGTERM", "SIGTERM"]


def test_child_leads_its_own_process_group(init):
    p = init.start([PYPAUSE, "--", *helper("report")], stdout=subprocess.PIPE)
    got = json.loads(p.stdout.readline())
    # The child sees PIDs of its namespace: pypause is 1 there as PID 1.
    pypause = 1 if init.pid1 else p.pid
    assert got["ppid"] == pypause
    assert got["pgid"] == got["pid"] != os.getpgid(p.pid)
    assert got["pgid"] != pypause
    assert p.wait(10) == 0
