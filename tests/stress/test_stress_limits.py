"""A pids cgroup limit low enough that forks fail with EAGAIN: pypause keeps
reaping (each zombie it reaps frees a slot), and exits right once it is over."""

import json
import os
import signal
import subprocess
import threading
import time

import pytest

from tests.stress.stress_support import (
    Lines,
    measured,
    pypause_running_storm_maker,
    reaps_logged,
    scaled,
)
from tests.support.http import http_get as get
from tests.support.http import metric_samples as samples
from tests.support.http import metric_value as value
from tests.support.http import port_from
from tests.support.proc import thread_count
from tests.support.running import PYPAUSE, needs_pidns, wait_for

ORPHANS = scaled(1000, 5000)
# unshare + pypause (2 threads: main, metrics server) + the storm maker + its
# middle: 5. What is left, 7, is shared by orphans not yet reaped and HTTP
# connection threads.
LIMIT = 12
CODE = 3


@needs_pidns
@pytest.mark.timeout(scaled(120, 600))
def test_under_a_pids_limit_pypause_keeps_reaping_and_exits_right(pids_cgroup, pidns):
    ns = pidns(
        pypause_running_storm_maker(
            ORPHANS,
            "--spawn",
            "--late",
            "--batch",
            50,
            "--report",
            "--go",
            "--stay",
            "--code",
            CODE,
        ),
        before=pids_cgroup.enter_argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    port = port_from(ns.unshare.stderr)
    err = Lines(ns.unshare.stderr)
    # The limit comes once the metrics server runs (a thread that cannot start
    # at all is another test, below) and before the storm.
    assert get(port, "/healthz")[0] == 200
    pids_cgroup.set_max(LIMIT)
    ns.unshare.stdin.write(b"go\n")
    ns.unshare.stdin.flush()
    t0 = time.monotonic()

    # Scrape now and then while forks fail: a scrape needs a thread, hence a
    # pid, so some may fail; the server must outlive them.
    scrapes = {"ok": 0, "failed": 0}
    done = threading.Event()

    def scrape():
        while not done.is_set():
            try:
                scrapes["ok" if get(port, timeout=5)[0] == 200 else "failed"] += 1
            except OSError:
                scrapes["failed"] += 1
            done.wait(0.05)

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        out = ns.unshare.stdout.readline()  # the report; then it stays until stdin closes
        # Every orphan reaped by pypause (-v logs each one) before the child ends:
        # ended first, it would take PID 1 and the last late orphans with it, unreaped.
        err.wait(
            lambda lines: reaps_logged(lines) >= ORPHANS or None in lines, what="the orphans reaped"
        )
    finally:
        done.set()
        scraper.join()
    took = time.monotonic() - t0
    ns.unshare.stdin.close()
    ns.unshare.wait(timeout=10)
    err.wait(lambda lines: None in lines, what="pypause's stderr to close")
    assert out, "the storm maker said nothing; stderr: %r" % err.lines[-10:]
    report = json.loads(out)

    assert ns.unshare.returncode == CODE
    assert report["orphans"] == ORPHANS
    assert report["eagain"] > 0, "the limit never bit: forks did not fail"
    assert pids_cgroup.max_events() > 0
    assert reaps_logged(err.lines) == ORPHANS
    assert not any("unexpected error" in line for line in err.lines if line)
    wait_for(lambda: pids_cgroup.current() == 0, what="every pid of the cgroup to be freed")
    measured(
        "fork limit",
        "pids.max %d: %d orphans made and reaped in %.1f s (%.0f/s) "
        "through %d failed forks (pids.events max %d); scrapes meanwhile: %d ok, "
        "%d failed; exit %d"
        % (
            LIMIT,
            ORPHANS,
            took,
            ORPHANS / took,
            report["eagain"],
            pids_cgroup.max_events(),
            scrapes["ok"],
            scrapes["failed"],
            ns.unshare.returncode,
        ),
    )


@needs_pidns
@pytest.mark.timeout(60)
def test_scrapes_need_no_pid_at_the_pids_limit(pids_cgroup, pidns):
    """The metrics server serves every connection from its one thread: with not
    one pid to spare, scrapes still answer, and no thread comes or goes."""
    pids_cgroup.set_max(100)
    ns = pidns(
        [PYPAUSE, "--metrics-addr", "127.0.0.1:0"],
        before=pids_cgroup.enter_argv,
        stderr=subprocess.PIPE,
    )
    port = port_from(ns.unshare.stderr)
    assert get(port, "/healthz")[0] == 200
    pids_cgroup.set_max(pids_cgroup.current())  # not one more thread
    for _ in range(20):
        assert value(samples(port), "pypause_processes") == 1
        assert get(port, "/healthz")[0] == 200
    assert thread_count(ns.pid) == 2
    os.kill(ns.pid, signal.SIGTERM)
    assert ns.unshare.wait(10) == 0
    assert b"Traceback" not in ns.unshare.stderr.read()


@needs_pidns
@pytest.mark.timeout(30)
def test_pid1_outlives_a_metrics_thread_that_cannot_start(pids_cgroup, pidns):
    # unshare, pypause and its child fit; the metrics server's thread does not.
    pids_cgroup.set_max(3)
    ns = pidns(
        [PYPAUSE, "--metrics-addr", "127.0.0.1:0", "--", "sh", "-c", "read x; exit 4"],
        before=pids_cgroup.enter_argv,
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_for(
        lambda: pids_cgroup.max_events() > 0 or ns.unshare.poll() is not None,
        what="the thread's start to fail",
    )
    ns.unshare.stdin.close()  # the child exits 4
    assert ns.unshare.wait(10) == 4
    err = ns.unshare.stderr.read().decode()
    assert "metrics disabled" in err
    assert "Traceback" not in err


@pytest.mark.timeout(30)
def test_child_that_cannot_be_forked_is_one_error_line_not_a_traceback(pids_cgroup):
    pids_cgroup.set_max(1)  # pypause itself, and no room for its child
    r = subprocess.run(
        pids_cgroup.enter_argv([PYPAUSE, "--", "true"]), capture_output=True, text=True, timeout=20
    )
    assert pids_cgroup.max_events() > 0  # the fork did fail
    assert r.returncode not in (0, 2, 126, 127)  # not mistaken for the child's or a usage error
    assert "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and "fork" in r.stderr
