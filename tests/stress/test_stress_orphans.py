"""Orphan storms as PID 1: every orphan reaped, memory flat; the main child
exiting while hundreds of others live on."""

import os
import signal
import subprocess
import time

import pytest

from tests.stress.stress_support import measured, scaled, storm
from tests.support.proc import children, cpu_ns, rss_kib
from tests.support.running import PYPAUSE, helper, needs_pidns, wait_for, wait_until_idle

TOTAL = scaled(3000, 20000)
MAKERS = 4


@needs_pidns
@pytest.mark.timeout(scaled(120, 600))
def test_orphan_storm_from_several_processes_leaves_no_zombie_and_flat_memory(pidns):
    ns = pidns([PYPAUSE])
    wait_until_idle(ns.pid)
    # Warm-up: a first, smaller storm before the "before" reading, so that
    # what the allocator grows on first use (pymalloc arenas, the int cache,
    # the kernel's page tables for the first waitid() buffers) is not counted
    # as growth. What must stay flat is the cost of the *next* storm.
    made, _, _ = storm(ns, 500, MAKERS)
    assert made == 500
    wait_for(
        lambda: not ns.zombies() and not _children_left(ns),
        timeout=30,
        what="the warm-up storm to be reaped",
    )
    wait_until_idle(ns.pid)
    before = rss_kib(ns.pid)
    cpu0 = cpu_ns(ns.pid) / 1e9

    t0 = time.monotonic()
    made, _, made_in = storm(ns, TOTAL, MAKERS)
    assert made == TOTAL
    wait_for(
        lambda: not _children_left(ns),
        timeout=scaled(30, 120),
        interval=0.005,
        what="every orphan to be reaped",
    )
    reaped_in = time.monotonic() - t0
    wait_until_idle(ns.pid)
    after = rss_kib(ns.pid)

    assert ns.zombies() == []
    assert after <= before + 1024, "RSS grew from %d to %d KiB" % (before, after)
    cpu = cpu_ns(ns.pid) / 1e9 - cpu0
    measured(
        "orphan storm",
        "%d orphans from %d makers at once, all reaped in %.1f s "
        "(%.0f orphans/s; makers done in %.1f s), pypause CPU %.0f us/orphan, "
        "RSS %d -> %d KiB"
        % (TOTAL, MAKERS, reaped_in, TOTAL / reaped_in, made_in, cpu / TOTAL * 1e6, before, after),
    )
    os.kill(ns.pid, signal.SIGTERM)
    assert ns.unshare.wait(10) == 0


def _children_left(ns):
    return children(ns.pid)


# -- the main child exits while the rest live on -------------------------------

LEFT = 200  # half of them ignore SIGTERM
# A main child that leaves LEFT orphans behind, alive, and exits 5. Each holds
# the fd given with --term-fd, so EOF on its read end means all LEFT are gone.
LEFTOVERS = helper("orphans", LEFT, "--until-killed", "--code", 5)


def _leftovers_run(pidns, *pypause_args):
    """pypause -v [args] -- LEFT leftovers; return (exit status, seconds from the
    child's exit to pypause's, SIGTERM handlers that ran, stderr)."""
    r, w = os.pipe()
    ns = pidns(
        [PYPAUSE, "-v", *pypause_args, "--", *LEFTOVERS, "--term-fd", str(w)],
        pass_fds=(w,),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    os.close(w)
    try:
        assert ns.unshare.stdout.readline().startswith(b"orphaned ")
        t0 = time.monotonic()
        out, err = ns.unshare.communicate(timeout=30)
        took = time.monotonic() - t0
        # EOF on the pipe: every leftover (each holds its write end) is gone.
        handled = b""
        while True:
            chunk = os.read(r, 4096)
            if not chunk:
                break
            handled += chunk
    finally:
        os.close(r)
    return ns.unshare.returncode, took, handled.count(b"T"), err.decode()


@needs_pidns
@pytest.mark.timeout(60)
def test_pid1_exits_with_the_childs_code_and_the_kernel_takes_200_leftovers(pidns):
    code, took, handled, err = _leftovers_run(pidns)
    assert code == 5
    assert handled == 0  # SIGKILLed by the kernel: no handler ran
    assert took < 5
    assert "Traceback" not in err
    measured(
        "leftovers, no grace period",
        "exit 5 %.2f s after the child, %d leftovers killed by the kernel" % (took, LEFT),
    )


@needs_pidns
@pytest.mark.timeout(60)
def test_grace_period_terms_then_kills_200_leftovers_half_ignoring_sigterm(pidns):
    grace = 2.0
    code, took, handled, err = _leftovers_run(pidns, "--grace-period", str(grace))
    assert code == 5
    assert handled == LEFT // 2  # every leftover that handles SIGTERM got it and cleaned up
    assert grace <= took < grace + 5
    assert "sent SIGTERM to every process in the namespace" in err
    assert "sending SIGKILL" in err
    # pypause reaped every leftover itself before exiting: none was left to the kernel.
    assert err.count("reaped zombie") == LEFT
    assert "Traceback" not in err
    measured(
        "leftovers, --grace-period 2",
        "exit 5 %.2f s after the child; %d ran their "
        "SIGTERM handler, %d SIGKILLed, all %d reaped by pypause"
        % (took, handled, LEFT - handled, LEFT),
    )
