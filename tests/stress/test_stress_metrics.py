"""Metrics under load: 50 scrapers at once and 200 idle connections during an
orphan storm. Reaping keeps pace, every scrape answers, nothing leaks. (The
bounds of the HTTP side itself, the cap and the deadlines, are tested in
tests/test_metrics_server.py.)"""

import collections
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from tests.stress.stress_support import measured, scaled, storm
from tests.support.http import http_get as get
from tests.support.http import metric_samples as samples
from tests.support.http import metric_value as value
from tests.support.http import port_from
from tests.support.proc import (
    all_threads_asleep,
    children,
    fd_count,
    listen_overflows,
    thread_count,
)
from tests.support.running import PYPAUSE, needs_pidns, wait_for, wait_until_idle

ORPHANS = scaled(3000, 20000)
SCRAPERS = 50
IDLE = 200


@needs_pidns
@pytest.mark.timeout(scaled(150, 600))
def test_scrapers_and_idle_connections_during_an_orphan_storm(pidns):
    ns = pidns([PYPAUSE, "--metrics-addr", "127.0.0.1:0"], stderr=subprocess.PIPE)
    port = port_from(ns.unshare.stderr)
    assert get(port, "/healthz")[0] == 200
    wait_for(lambda: thread_count(ns.pid) == 2, what="the first scrape's thread to end")
    wait_until_idle(ns.pid)
    # The HTTP thread closes the /healthz connection just after the client has
    # its answer: the baseline once it sleeps again (then that one is closed).
    wait_for(lambda: all_threads_asleep(ns.pid), what="every thread of pypause to sleep")
    threads0, fds0 = thread_count(ns.pid), fd_count(ns.pid)

    idle = []
    scrapes = collections.Counter()
    latencies = []
    stop = threading.Event()

    def scrape(i):
        path = "/healthz" if i % 5 == 0 else "/metrics"
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                status = get(port, path, timeout=30)[0]
            except OSError as e:
                scrapes["error %s" % type(e).__name__] += 1
                continue
            latencies.append(time.monotonic() - t0)
            scrapes[status] += 1

    scrapers = [threading.Thread(target=scrape, args=(i,)) for i in range(SCRAPERS)]
    try:
        # More idle connections than the server keeps: it closes the oldest to
        # make room for each scraper, and the rest at their deadline.
        idle.extend(socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(IDLE))
        overflows0 = listen_overflows()
        for t in scrapers:
            t.start()
        t0 = time.monotonic()
        made, _, made_in = storm(ns, ORPHANS, 4)
        assert made == ORPHANS
        # Reaping keeps pace: the last orphans go within seconds of the last made.
        wait_for(
            lambda: not children(ns.pid),
            timeout=scaled(20, 60),
            interval=0.005,
            what="every orphan reaped",
        )
        reaped_in = time.monotonic() - t0
        behind = reaped_in - made_in
    finally:
        stop.set()
        for t in scrapers:
            if t.is_alive() or t.ident:
                t.join()
        overflows = listen_overflows() - overflows0 if scrapers[0].ident else 0
        for s in idle:
            s.close()

    assert ns.zombies() == []
    assert set(scrapes) == {200}, scrapes  # every scrape answered, every /healthz 200
    got = samples(port)
    assert (
        value(got, "pypause_zombies_reaped_by_comm_total", comm="true")
        + value(got, "pypause_zombies_reaped_by_comm_total", comm="cat")
        == ORPHANS
    )
    assert value(got, "pypause_zombies_reaped_total") == ORPHANS
    assert value(got, "pypause_zombies") == 0
    # No thread or fd left behind by 200 closed idle connections and the scrapes.
    wait_for(
        lambda: thread_count(ns.pid) == threads0,
        timeout=30,
        what="pypause's threads to come back to %d" % threads0,
    )
    wait_for(
        lambda: fd_count(ns.pid) == fds0, timeout=10, what="pypause's fds to come back to %d" % fds0
    )
    os.kill(ns.pid, signal.SIGTERM)
    assert ns.unshare.wait(10) == 0
    assert b"Traceback" not in ns.unshare.stderr.read()
    latencies.sort()
    measured(
        "metrics under load",
        "%d orphans reaped in %.1f s (%.0f/s; %.2f s after the "
        "makers were done) with %d scrapers and %d idle connections; %d scrapes, "
        "latency median %.0f ms, p99 %.0f ms (%d SYNs dropped on the full listen backlog); "
        "threads %d and fds %d before and after"
        % (
            ORPHANS,
            reaped_in,
            ORPHANS / reaped_in,
            behind,
            SCRAPERS,
            IDLE,
            scrapes[200],
            latencies[len(latencies) // 2] * 1000,
            latencies[int(len(latencies) * 0.99)] * 1000,
            overflows,
            threads0,
            fds0,
        ),
    )


@pytest.mark.timeout(30)
def test_a_burst_of_50_connections_is_accepted_at_once(procs):
    import select

    p = procs([PYPAUSE, "--metrics-addr", "127.0.0.1:0"], stderr=subprocess.PIPE)
    port = port_from(p.stderr)
    socks = []
    try:
        t0 = time.monotonic()
        for _ in range(50):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))  # EINPROGRESS: all 50 SYNs at once
            socks.append(s)
        pending = set(socks)
        while pending and time.monotonic() - t0 < 5:
            pending -= set(select.select([], list(pending), [], 0.05)[1])
        took = time.monotonic() - t0
    finally:
        for s in socks:
            s.close()
    assert not pending
    # The kernel completes a handshake itself while the backlog has room: no
    # waiting on pypause at all. A dropped SYN costs a 1 s retransmission.
    assert took < 0.5, "50 connections took %.2f s" % took
