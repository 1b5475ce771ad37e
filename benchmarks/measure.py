"""The eight measurements. Each runs every init in the same way, in one run.

Each measurement writes its figures into a `Results`, by figure and init.
Every process is started through a `Session`, which ends them all by PID
when the measurement is done or has failed.
"""

import math
import os
import random
import resource
import signal
import socket
import statistics
import threading
import time

from benchmarks import inits, pidns, procevents
from tests.support.http import http_get
from tests.support.proc import (
    accept_queue,
    children,
    context_switches,
    cpu_ns,
    listening_tcp_ports,
    pss_kib,
    rss_kib,
    thread_count,
    uss_kib,
    zombies_of,
)

# The children behind every init: the tests' orphan maker and signal echo.
HELPERS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "helpers"
)
ORPHANS = os.path.join(HELPERS, "orphans.py")
SIGNAL_ECHO = os.path.join(HELPERS, "signal_echo.py")
#: storm_command's kinds: orphans.py's options for each.
STORMS = {"zombies": "--held", "exits": "--until-released", "crowd": "--crowd"}
NO_INIT = "no init"


def p99(values):
    """Nearest-rank 99th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


class Results:
    """Figures by key, then by init name; notes say what was skipped and why."""

    def __init__(self):
        self.values = {}
        self.notes = []

    def set(self, key, init_name, value):
        self.values.setdefault(key, {})[init_name] = value

    def get(self, key, init_name):
        return self.values.get(key, {}).get(init_name)


class Session:
    """Starts inits as PID 1 and guarantees that each one is ended."""

    def __init__(self, log_fd):
        self.log_fd = log_fd
        self._running = []

    def start(self, argv, pipes=False, env=None):
        proc = pidns.Pid1(argv, self.log_fd, pipes=pipes, env=env)
        self._running.append(proc)
        return proc

    def stop(self, proc):
        proc.stop()
        self._running.remove(proc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        while self._running:
            self.stop(self._running[-1])


def _wait_for_port(proc, timeout):
    """The TCP port the init listens on, or None if none within `timeout`."""
    deadline = time.monotonic() + timeout
    while proc.alive():
        ports = listening_tcp_ports(proc.pid)
        if ports:
            return ports[0]
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)
    return None


def _wait_for_child(proc, timeout):
    deadline = time.monotonic() + timeout
    while not children(proc.pid):
        if not proc.alive() or time.monotonic() > deadline:
            raise RuntimeError("%s did not start its child" % " ".join(proc.argv))
        time.sleep(0.01)


def startup(all_inits, runs, warmup, log_fd, results):
    """1. Median wall time of `INIT -- true` as PID 1, runs interleaved across inits,
    and over the same runs the time from the init's exec to its child's exec.

    Interleaving (in a new random order each round) spreads any drift of the
    machine over all inits alike. The no-init row runs `true` alone as PID 1:
    the cost of spawn, exit and namespace teardown that every row contains.
    Both execs are stamped by the kernel (procevents.py); without its process
    events the second figure is skipped with a note.
    """
    true = "/bin/true" if os.path.exists("/bin/true") else "/usr/bin/true"
    subjects = [(i.name, i.init_argv(["true"]), i.env) for i in all_inits]
    subjects.append((NO_INIT, [true], None))
    events = _process_events(results)
    try:
        times, to_child = _startup_rounds(subjects, runs, warmup, log_fd, events)
    finally:
        if events:
            events.close()
    for name, samples in times.items():
        results.set("startup_ms", name, statistics.median(samples) * 1e3)
    for name, samples in to_child.items():
        found = [ns for ns in samples if ns is not None]
        if len(found) < len(samples) and events:
            results.notes.append(
                "time until the child runs, %s: %d of %d runs without both "
                "execs among the kernel's events" % (name, len(samples) - len(found), len(samples))
            )
        if found:
            results.set("child_ms", name, statistics.median(found) / 1e6)


def _process_events(results):
    """The kernel's process events (a procevents.ProcEvents), or None with a note why not."""
    try:
        return procevents.ProcEvents()
    except OSError as e:
        results.notes.append(
            "time until the child runs: skipped, no process events "
            "from the kernel (%s)" % e.strerror
        )
        return None


def _startup_rounds(subjects, runs, warmup, log_fd, events):
    """`warmup` + `runs` rounds of every subject (name, argv, env) as PID 1, each
    round in a new random order: ({name: [seconds]}, {name: [nanoseconds from
    the init's exec to its child's, or None]}) of the rounds after the warm-up;
    the latter for the inits only, not NO_INIT."""
    times = {name: [] for name, _, _ in subjects}
    to_child = {name: [] for name, _, _ in subjects if name != NO_INIT}
    for round_no in range(warmup + runs):
        random.shuffle(subjects)
        for name, argv, env in subjects:
            elapsed, code, pid = pidns.time_as_pid1(argv, log_fd, env)
            if code != 0:
                raise RuntimeError("%s exited %d instead of 0" % (" ".join(argv[:3]), code))
            seen = events.read() if events else []
            if round_no >= warmup:
                times[name].append(elapsed)
                if name in to_child:
                    to_child[name].append(procevents.exec_to_child_exec(seen, pid))
    return times, to_child


def idle(all_inits, seconds, settle, log_fd, results):
    """2 and 3. Memory and context switches of every init idle in every mode.

    All of them idle at the same time, over one window: the window costs
    `seconds` once rather than once per init and mode.
    """
    with Session(log_fd) as session:
        running = _start_idle(session, all_inits)
        time.sleep(settle)
        before = {id(p): (context_switches(p.pid), thread_count(p.pid)) for _, _, p in running}
        time.sleep(seconds)
        for mode, init, proc in running:
            name = init.name
            if not proc.alive():
                raise RuntimeError(
                    "%s exited while idle (code %s)" % (" ".join(proc.argv[:3]), proc.exit_code)
                )
            switches, threads = before[id(proc)]
            if thread_count(proc.pid) != threads:
                results.notes.append(
                    "%s (%s mode) started or ended threads while idle: "
                    "its wake-ups may be undercounted" % (name, mode)
                )
            results.set("wakeups_" + mode, name, context_switches(proc.pid) - switches)
            results.set("rss_" + mode, name, rss_kib(proc.pid) / 1024)
            results.set("uss_" + mode, name, uss_kib(proc.pid) / 1024)
    # pypause serving metrics next to the floor serving none: how much its
    # metrics cost in all, prometheus_client included (a target of its own);
    # launched without site, next to the floor without site.
    for name, floor in (
        (inits.PYPAUSE_NAME, inits.FLOOR_NAME),
        (inits.NO_SITE_NAME, inits.NO_SITE_FLOOR_NAME),
    ):
        if results.get("uss_metrics", name) is not None:
            results.set("uss_metrics_floor", name, results.get("uss_metrics", name))
            results.set("uss_metrics_floor", floor, results.get("uss_pause", floor))


def _start_idle(session, all_inits):
    """Every init started in `session` in each mode it has, sleeping: [(mode, init,
    Pid1)], returned once each has started (its child runs, its metrics are served)."""
    running = []
    for init in all_inits:
        sleeping = init.init_argv(["sleep", "infinity"])
        running.append(("init", init, session.start(sleeping, env=init.env)))
        if init.pause_argv:
            running.append(("pause", init, session.start(init.pause_argv, env=init.env)))
        if init.metrics_argv:
            running.append(("metrics", init, session.start(init.metrics_argv, env=init.env)))
    for mode, init, proc in running:
        if mode == "init":
            _wait_for_child(proc, timeout=10)
        elif mode == "metrics" and init.serves_metrics:
            if _wait_for_port(proc, timeout=10) is None:
                raise RuntimeError("%s --metrics-addr stopped serving" % init.name)
    return running


def pods(pause_inits, count, settle, log_fd, results):
    """8. Mean PSS and USS per process of `count` copies of each init in pause mode.

    As on a node with `count` pods: the copies run side by side, each PID 1 of
    its own namespace, and one init's copies alone at a time, so that they
    share their pages (the interpreter's, for a Python init) only with each
    other. PSS divides each shared page among the processes that map it.
    """
    for init in pause_inits:
        with Session(log_fd) as session:
            running = [session.start(init.pause_argv, env=init.env) for _ in range(count)]
            time.sleep(settle)
            pss, uss = [], []
            for proc in running:
                if not proc.alive():
                    raise RuntimeError(
                        "%s exited in pause mode (code %s)"
                        % (" ".join(proc.argv[:3]), proc.exit_code)
                    )
                pss.append(pss_kib(proc.pid))
                uss.append(uss_kib(proc.pid))
        results.set("pss_pods", init.name, statistics.mean(pss) / 1024)
        results.set("uss_pods", init.name, statistics.mean(uss) / 1024)


def _scrape(port):
    """One scrape of /metrics on a new connection, read as a scraper reads it (up
    to its Content-Length, not to the server's close); return the body's length."""
    status, _, body = http_get(port, timeout=5)
    if status != 200:
        raise RuntimeError("scrape failed: HTTP %d" % status)
    return len(body)


class _Scraper(threading.Thread):
    """Scrapes /metrics every `interval` seconds until stopped."""

    def __init__(self, port, interval):
        super().__init__(daemon=True)
        self.port = port
        self.interval = interval
        self.done = 0
        self.failed = 0
        self._stop_event = threading.Event()

    def run(self):
        next_at = time.monotonic()
        while not self._stop_event.wait(max(0.0, next_at - time.monotonic())):
            next_at += self.interval
            try:
                _scrape(self.port)
                self.done += 1
            except (OSError, RuntimeError):
                self.failed += 1

    def stop(self):
        """Idempotent: the storm stops it once measured, and again on any failure."""
        self._stop_event.set()
        if self.is_alive():
            self.join()


def _storm_once(session, argv, orphans, grace, scrape_interval=None, env=None):
    """One storm behind one init; return (CPU ns per orphan, context switches, zombies).

    CPU time is that of the whole init process (all threads, alive or gone)
    from just before the storm until `grace` seconds after its last orphan exited, when
    the zombies not yet reaped are counted. With `scrape_interval`, /metrics
    is scraped that often over the same window.
    """
    proc = session.start(argv, pipes=True, env=env)
    scraper = None
    try:
        if proc.readline(timeout=120) != "ready":
            raise RuntimeError("storm child did not get ready")
        if scrape_interval is not None:
            port = _wait_for_port(proc, timeout=10)
            if port is None:
                raise RuntimeError("pypause --metrics-addr served nothing in init mode")
            scraper = _Scraper(port, scrape_interval)
        cpu_before = cpu_ns(proc.pid)
        switches_before = context_switches(proc.pid)
        if scraper:
            scraper.start()
        proc.send("go")
        if proc.readline(timeout=120) != "exited":
            raise RuntimeError("storm child did not see its orphans exit")
        time.sleep(grace)
        zombies = len(zombies_of(proc.pid))
        cpu = cpu_ns(proc.pid) - cpu_before
        switches = context_switches(proc.pid) - switches_before
        if scraper:
            scraper.stop()
            if scraper.failed or not scraper.done:
                raise RuntimeError(
                    "scrapes during the storm: %d done, %d failed" % (scraper.done, scraper.failed)
                )
        proc.send("exit")
        code = proc.wait(timeout=10)
        if code != 0:
            raise RuntimeError("%s exited %d after the storm" % (argv[0], code))
        return cpu / orphans, switches, zombies
    finally:
        if scraper:
            scraper.stop()
        session.stop(proc)


def storm_command(python, kind, orphans):
    """The main child of a storm of `kind` (STORMS), which speaks orphans.py's --storm protocol."""
    return [python, "-I", "-S", ORPHANS, str(orphans), STORMS[kind], "--storm"]


def reap_storm(all_inits, python, orphans, repeats, grace, log_fd, results):
    """4. Init CPU per orphan reaped in two kinds of storm, and zombies left after.

    - "zombies": a middle process forks N children that exit at once, without
      reaping them, then dies itself: N zombies are reparented to the init in
      one go. Each wait() finds a zombie first in the init's child list, so the
      CPU per orphan is the init's own cost of reaping one.
    - "exits": N live orphans, already reparented to the init, are released at
      the same moment and exit while the init reaps. Closer to a crashing
      worker pool, but noisy: the kernel's wait() walks the init's list of
      children, alive ones included, so its cost depends on how the exits and
      the init's wake-ups interleave.

    Repeats are interleaved across
    inits and kinds; the median of each figure is kept, and the worst count
    of zombies.
    """
    kinds = ("zombies", "exits")
    runs = {(i.name, k): [] for i in all_inits for k in kinds}
    with Session(log_fd) as session:
        for _ in range(repeats):
            order = [(i, k) for i in all_inits for k in kinds]
            random.shuffle(order)
            for init, kind in order:
                argv = init.init_argv(storm_command(python, kind, orphans))
                runs[init.name, kind].append(
                    _storm_once(session, argv, orphans, grace, env=init.env)
                )
    for (name, kind), outcomes in runs.items():
        suffix = "" if kind == "zombies" else "_exits"
        results.set("reap_us" + suffix, name, statistics.median(o[0] for o in outcomes) / 1e3)
        if kind == "exits":
            results.set("switches_exits", name, statistics.median(o[1] for o in outcomes))
        worst = max(o[2] for o in outcomes)
        results.set("zombies", name, max(worst, results.get("zombies", name) or 0))


def signal_latency(all_inits, python, samples, warmup, log_fd, results):
    """5. Time from kill(init, SIGUSR1) until the child woke up with it.

    All inits run at once, each with the same child; each round signals them
    one at a time in a new random order, waiting for the child's answer
    before the next signal, so no two measurements overlap. The init's CPU
    time per forwarded signal is taken over the same rounds: unlike the
    latency, it hardly depends on how busy the machine is.
    """
    # It stamps each SIGUSR1 with the CLOCK_MONOTONIC time it woke up with it:
    # a round trip would add the harness's own wake-up to the figure.
    child = [python, "-I", "-S", SIGNAL_ECHO, "--wait", "SIGUSR1", "--stamps", "--no-stdin"]
    with Session(log_fd) as session:
        subjects = [
            (i.name, session.start(i.init_argv(child), pipes=True, env=i.env)) for i in all_inits
        ]
        subjects.append((NO_INIT, session.start(child, pipes=True)))
        for name, proc in subjects:
            if proc.readline(timeout=10) != "ready":
                raise RuntimeError("signal child behind %s did not get ready" % name)
        latencies = {name: [] for name, _ in subjects}
        cpu_before = {}
        for round_no in range(warmup + samples):
            if round_no == warmup:
                cpu_before = {name: cpu_ns(proc.pid) for name, proc in subjects}
            random.shuffle(subjects)
            for name, proc in subjects:
                sent = time.monotonic_ns()
                os.kill(proc.pid, signal.SIGUSR1)
                received = int(proc.readline(timeout=5))
                if round_no >= warmup:
                    latencies[name].append(received - sent)
        for name, proc in subjects:
            if name != NO_INIT:  # there, the "init" is the child itself
                cpu = cpu_ns(proc.pid) - cpu_before[name]
                results.set("signal_cpu_us", name, cpu / samples / 1e3)
    for name, values in latencies.items():
        results.set("signal_median_us", name, statistics.median(values) / 1e3)
        results.set("signal_p99_us", name, p99(values) / 1e3)


def metrics_served(script, timeout, log_fd):
    """Whether `pypause --metrics-addr` listens within `timeout` seconds: tried, not assumed."""
    with Session(log_fd) as session:
        return (
            _wait_for_port(session.start([script, "--metrics-addr", inits.METRICS_ADDR]), timeout)
            is not None
        )


#: Processes in the namespace for the crowded scrape: the init included.
CROWD = 1000


def metrics_cost(script, python, scrapes, orphans, repeats, grace, log_fd, results):
    """6. /metrics scrape latency, alone and with CROWD processes in the namespace
    (some of them parents that hold zombies: each scrape reads every process's
    /proc entry, and the cgroup of each such parent), and what metrics add to
    reaping.

    Metrics on, pypause reads each orphan's command name and cgroup before
    reaping it: the zombie storm shows that cost alone, the exit storm
    scraped 10 times a second adds the scrapes that fall into it.
    """
    with Session(log_fd) as session:
        proc = session.start([script, "--metrics-addr", inits.METRICS_ADDR])
        port = _wait_for_port(proc, timeout=10)
        if port is None:
            raise RuntimeError("pypause --metrics-addr stopped serving")
        _scrape(port)  # the first scrape may import or build what later ones reuse
        latencies = []
        for _ in range(scrapes):
            started = time.perf_counter_ns()
            _scrape(port)
            latencies.append(time.perf_counter_ns() - started)
        session.stop(proc)
        results.set("scrape_median_ms", "pypause", statistics.median(latencies) / 1e6)
        results.set("scrape_p99_ms", "pypause", p99(latencies) / 1e6)

        crowd = session.start(
            inits.pypause_metrics_init_argv(script, storm_command(python, "crowd", CROWD)),
            pipes=True,
        )
        if crowd.readline(timeout=120) != "ready":
            raise RuntimeError("the crowd did not get ready")
        port = _wait_for_port(crowd, timeout=10)
        if port is None:
            raise RuntimeError("pypause --metrics-addr served nothing in init mode")
        _scrape(port)
        latencies = []
        for _ in range(scrapes):
            started = time.perf_counter_ns()
            _scrape(port)
            latencies.append(time.perf_counter_ns() - started)
        crowd.send("go")
        if crowd.readline(timeout=30) != "exited":
            raise RuntimeError("the crowd did not exit")
        crowd.send("exit")
        if crowd.wait(timeout=30) != 0:
            raise RuntimeError("pypause did not exit 0 after the crowd")
        session.stop(crowd)
        results.set("scrape_crowd_median_ms", "pypause", statistics.median(latencies) / 1e6)
        results.set("scrape_crowd_p99_ms", "pypause", p99(latencies) / 1e6)

        zombie_storm = inits.pypause_metrics_init_argv(
            script, storm_command(python, "zombies", orphans)
        )
        exit_storm = inits.pypause_metrics_init_argv(
            script, storm_command(python, "exits", orphans)
        )
        quiet, scraped, zombies = [], [], 0
        for _ in range(repeats):
            cpu, _, left = _storm_once(session, zombie_storm, orphans, grace)
            quiet.append(cpu)
            zombies = max(zombies, left)
            cpu, _, left = _storm_once(session, exit_storm, orphans, grace, scrape_interval=0.1)
            scraped.append(cpu)
            zombies = max(zombies, left)
        results.set("reap_metrics_us", "pypause", statistics.median(quiet) / 1e3)
        results.set("reap_scraped_us", "pypause", statistics.median(scraped) / 1e3)
        results.set("zombies_metrics", "pypause", zombies)


def idle_connections(script, connections, settle, log_fd, results):
    """7. pypause's threads and RSS, metrics on, while `connections` idle clients are connected.

    The clients connect to the metrics port all at once and send nothing. The
    server may close some of them (it keeps a bounded number); the figures are
    what the crowd costs pypause, sampled once it has accept()ed them all: the
    threads it has (len of /proc/PID/task) and its RSS, against its RSS just
    before. pypause is started before the harness raises its own descriptor
    limit, so it runs with the limit every other init had.
    """
    with Session(log_fd) as session:
        proc = session.start([script, "--metrics-addr", inits.METRICS_ADDR])
        port = _wait_for_port(proc, timeout=10)
        if port is None:
            raise RuntimeError("pypause --metrics-addr stopped serving")
        time.sleep(settle)
        idle_rss = rss_kib(proc.pid)
        limits = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits[1], limits[1]))
        clients = []
        try:
            for _ in range(connections):
                clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            deadline = time.monotonic() + 2
            while accept_queue(proc.pid):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        "pypause left %d metrics connections unaccepted" % accept_queue(proc.pid)
                    )
                time.sleep(0.01)
            threads, rss = thread_count(proc.pid), rss_kib(proc.pid)
        finally:
            for client in clients:
                client.close()
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
        if not proc.alive():
            raise RuntimeError(
                "pypause exited with idle metrics connections open (code %s)" % proc.exit_code
            )
    results.set("threads_connections", "pypause", threads)
    results.set("rss_connections", "pypause", rss / 1024)
    results.set("rss_connections_growth", "pypause", (rss - idle_rss) / 1024)
