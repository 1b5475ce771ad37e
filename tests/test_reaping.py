"""Orphans are adopted and reaped: as PID 1 and as subreaper (fixture init), in storms."""

import os
import signal
import subprocess
import sys

import pytest

from tests.support.proc import children_of, context_switches
from tests.support.running import PYPAUSE, helper, needs_pidns, wait_for, wait_until_idle

pytestmark = pytest.mark.timeout(60)


def test_adopts_and_reaps_50_orphans(init):
    p = init.start(
        [PYPAUSE, "--", *helper("orphans", 50, "--sleep", 3, "--stay")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert p.stdout.readline() == b"orphaned\n"
    # The orphans belong to pypause, not to this test or to the host's init.
    wait_for(lambda: len(children_of(p.pid, "sleep")) == 50, what="50 orphans adopted")
    wait_for(lambda: not children_of(p.pid, "sleep"), what="the orphans to exit")
    assert p.zombies() == []
    p.stdin.close()
    assert p.wait(10) == 0


@pytest.fixture
def pause_pid1(pidns):
    """pypause in pause mode as PID 1 of a namespace of its own, past its start-up."""
    ns = pidns([PYPAUSE])
    wait_until_idle(ns.pid)
    return ns


# Pid1 only, the next two: a process that enters the namespace from outside
# (`kubectl exec`) leaves its orphans to PID 1, even to one in pause mode. Not
# PID 1, pypause in pause mode has no descendant: nothing can orphan a process
# to it.
@needs_pidns
def test_pause_mode_reaps_orphans_of_a_process_that_entered_the_namespace(pause_pid1):
    r = pause_pid1.nsenter(helper("orphans", 50, "--sleep", 3), capture_output=True, timeout=20)
    assert r.stdout == b"orphaned\n"
    wait_for(lambda: len(children_of(pause_pid1.pid, "sleep")) == 50, what="50 orphans adopted")
    wait_for(lambda: len(pause_pid1.members()) == 1, what="only PID 1 to be left")
    assert pause_pid1.zombies() == []
    os.kill(pause_pid1.pid, signal.SIGTERM)
    assert pause_pid1.unshare.wait(5) == 0


@needs_pidns
def test_storm_of_3000_orphans_leaves_no_zombie(pause_pid1):
    r = pause_pid1.nsenter(helper("orphans", 3000), capture_output=True, timeout=40)
    assert r.stdout == b"orphaned\n"
    wait_for(lambda: len(pause_pid1.members()) == 1, timeout=20, what="every orphan to be reaped")
    assert pause_pid1.zombies() == []
    os.kill(pause_pid1.pid, signal.SIGTERM)
    assert pause_pid1.unshare.wait(5) == 0


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "argv", [[PYPAUSE], [PYPAUSE, "--", "sleep", "30"]], ids=["pause mode", "init mode"]
)
def test_idle_pypause_never_wakes_up(init, argv):
    p = init.start(argv)
    wait_until_idle(p.pid)
    before = context_switches(p.pid)
    with pytest.raises(subprocess.TimeoutExpired):
        p.wait(3)
    assert context_switches(p.pid) == before


# A real Reaper, wrapped as main() wraps the metrics, with an observer that
# raises on every event; run in a process of its own, whose only children are
# the ones it makes: a main child (exit 7) and 20 others, all exited at once.
RAISING_OBSERVER = """
import os, sys
from pypause.events import Guarded
from pypause.reaper import Reaper

class Broken:
    inspects_zombies = True
    def __getattr__(self, name):
        def fail(*args):
            raise RuntimeError("observer bug in " + name)
        return fail

def child(code):
    pid = os.fork()
    if pid == 0:
        os._exit(code)
    return pid

main_pid = child(7)
others = [child(0) for _ in range(20)]
for pid in [main_pid] + others:  # all exited (zombies), none reaped yet
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
code, stop = Reaper(main_pid, Guarded(Broken())).reap_all()
left = [pid for pid in [main_pid] + others if os.path.exists("/proc/%d" % pid)]
print(code, stop, len(left))
"""


def test_an_observer_that_raises_costs_no_status_and_no_reap():
    r = subprocess.run(
        [sys.executable, "-c", RAISING_OBSERVER],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["7", "None", "0"]  # the status kept, every child reaped
    assert r.stderr.count("observer bug") == 1  # logged once, not per event
