"""Soak: pause mode with metrics under a steady trickle of orphans and scrapes.
Memory and fds stay flat, every orphan is reaped, and between events pypause
does not wake up at all."""

import os
import signal
import subprocess
import time

import pytest

from tests.stress.stress_support import Lines, measured, scaled
from tests.support.http import metric_samples as samples
from tests.support.http import metric_value as value
from tests.support.http import port_from
from tests.support.proc import (
    all_threads_asleep,
    children,
    context_switches,
    fd_count,
    rss_kib,
    thread_count,
)
from tests.support.running import PYPAUSE, helper, needs_pidns, stop, wait_for, wait_until_idle

DURATION = scaled(30, 600)  # seconds of trickle and scrapes
WARM_UP = scaled(5, 60)  # RSS is compared with its value at this point
INTERVAL = 0.05  # an orphan every 50 ms
SCRAPE_EVERY = 0.5
QUIET = scaled(3, 10)  # seconds of a window with nothing happening


@needs_pidns
@pytest.mark.timeout(DURATION + scaled(90, 300))
def test_soak_with_a_trickle_of_orphans_and_scrapes(pidns):
    ns = pidns([PYPAUSE, "--metrics-addr", "127.0.0.1:0"], stderr=subprocess.PIPE)
    port = port_from(ns.unshare.stderr)
    trickle = ns.enter(
        helper("orphans", 1, "--spawn", "--every", INTERVAL),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        _soak(ns, port, trickle)
    finally:
        stop(trickle)


def _soak(ns, port, trickle):
    out = Lines(trickle.stdout)

    def quiet_window():
        """Pause the trickle, let pypause catch up, and count its wake-ups while
        nothing happens: orphans made so far, context switches in QUIET seconds."""
        trickle.stdin.write(b"pause\n")
        trickle.stdin.flush()
        windows.append(None)
        paused = out.wait(
            lambda lines: [l for l in lines if l and l.startswith("paused")][len(windows) - 1 :],
            what="the trickle to pause",
        )
        made = int(paused[0].split()[1])
        wait_for(
            lambda: not children(ns.pid) and _reaped(port) == made,
            timeout=30,
            what="all %d orphans reaped" % made,
        )
        wait_for(lambda: thread_count(ns.pid) == 2, timeout=10, what="the scrapes' threads to end")
        wait_until_idle(ns.pid)
        # The HTTP thread too: it closes the last scrape's connection after the
        # client has its answer, and only then goes back to sleep.
        wait_for(
            lambda: all_threads_asleep(ns.pid),
            timeout=10,
            what="every thread of pypause to sleep in a system call",
        )
        before = context_switches(ns.pid)
        time.sleep(QUIET)  # nothing to poll: this is the window being measured
        woke = context_switches(ns.pid) - before
        trickle.stdin.write(b"resume\n")
        trickle.stdin.flush()
        return made, woke

    windows = []
    rss = []
    scrapes = 0
    t0 = time.monotonic()
    baseline_rss = baseline_fds = None
    middle_done = False
    wakeups = []
    while time.monotonic() - t0 < DURATION:
        elapsed = time.monotonic() - t0
        got = samples(port)
        scrapes += 1
        assert value(got, "pypause_zombies") is not None
        if baseline_rss is not None:
            rss.append(rss_kib(ns.pid))  # after the warm-up
        if baseline_rss is None and elapsed >= WARM_UP:
            made, woke = quiet_window()
            wakeups.append(woke)
            baseline_rss, baseline_fds = rss_kib(ns.pid), fd_count(ns.pid)
        elif baseline_rss is not None and not middle_done and elapsed >= DURATION / 2:
            middle_done = True
            wakeups.append(quiet_window()[1])
        time.sleep(SCRAPE_EVERY)  # the pace of the scrapes, not a wait for anything

    made, woke = quiet_window()
    wakeups.append(woke)
    trickle.stdin.close()
    assert trickle.wait(10) == 0
    after_rss, after_fds = rss_kib(ns.pid), fd_count(ns.pid)

    assert made >= DURATION / INTERVAL / 4  # the trickle really flowed
    assert _reaped(port) == made
    assert ns.zombies() == []
    assert wakeups == [0] * len(wakeups), "pypause woke up while idle: %r" % wakeups
    assert after_fds == baseline_fds
    assert after_rss <= baseline_rss + 1024, "RSS grew from %d to %d KiB" % (
        baseline_rss,
        after_rss,
    )
    assert max(rss) <= baseline_rss + 1024, "RSS peaked at %d KiB" % max(rss)
    os.kill(ns.pid, signal.SIGTERM)
    assert ns.unshare.wait(10) == 0
    assert b"Traceback" not in ns.unshare.stderr.read()
    measured(
        "soak",
        "%d s: %d orphans (all reaped), %d scrapes; RSS %d KiB after warm-up, "
        "%d KiB at the end (peak %d); fds %d -> %d; context switches in %d quiet "
        "windows of %d s: %r"
        % (
            DURATION,
            made,
            scrapes,
            baseline_rss,
            after_rss,
            max(rss),
            baseline_fds,
            after_fds,
            len(wakeups),
            QUIET,
            wakeups,
        ),
    )


def _reaped(port):
    return value(samples(port), "pypause_zombies_reaped_by_comm_total", comm="true") or 0
