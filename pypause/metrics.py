"""Prometheus metrics on what PID 1 reaps and forwards, served beside the loop.

Imported only when --metrics-addr is given. The loop reports events to a
`Metrics`, which keeps plain counters: the loop is their only writer, a scrape
reads a copy (made under the GIL), so the hot path of a reap storm takes no
lock. A scrape turns them into metric families through prometheus_client's
registry (see promclient.py for the parts of it that are loaded).

Every series whose labels are known in advance exists from the start, at 0,
so that increase() and rate() count the first event too. No series has a
`_created` sample: every counter starts with pypause, which
`pypause_start_time_seconds` dates.

The HTTP server (httpd.py) runs in one daemon thread, started after every
waited signal is blocked (it inherits the mask, so no signal lands in it). It
never calls into the loop: /healthz asks the loop for a heartbeat by sending
pypause a SIGCHLD, and the loop's heartbeat wakes the server.
"""

import _signal
import os
import threading
import time

from pypause import __version__, address, containers, httpd, log, procfs, promclient, signals
from pypause.events import Observer
from pypause.promclient import CounterMetricFamily, GaugeMetricFamily

#: typing-only imports without importing typing at run time (mypy: always_true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from typing import Any

    from pypause.httpd import Response

#: Distinct label values kept by a counter of orphans (by command name, by
#: container); the rest are counted under "other".
MAX_COMMS = MAX_CONTAINERS = 64
#: (parent command, container) pairs shown by the gauge of zombies held by
#: their parent: those that hold the most; the rest are summed under
#: ("other", "other").
MAX_HOLDERS = 64
#: Seconds /healthz waits for the loop to answer before saying 503.
HEALTH_TIMEOUT = 2.0
_INDEX = (
    b"<html><head><title>pypause</title></head><body><h1>pypause</h1>"
    b'<p><a href="/metrics">metrics</a> <a href="/healthz">healthz</a></p>'
    b"</body></html>\n"
)


class Metrics(Observer):
    """The loop's events, counted for Prometheus. Methods are called by the loop."""

    inspects_zombies = True  # reaped zombies are counted by command name and container

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.started = time.time()
        self.reaped = 0
        self.reaped_by_comm: dict[str, int] = {}
        self.reaped_by_container: dict[str, int] = {}
        # The signals that stop a container: counted from 0, from the start.
        self.received = {signals.name(signum): 0 for signum in signals.SHUTDOWN}
        self.forwarded = dict(self.received)
        # init mode: the main child's exit code, once it exited
        self.child_code: int | None = None
        self.in_grace = False
        self.server: httpd.Server | None = None
        self.server_ended = False  # set by a metrics thread that ended; heartbeat() restarts it
        self.thread_started = 0.0  # time.monotonic() of the last start of the thread
        # serve()'s `bound`, to be called by the loop once a name's port is bound
        self.bound: Callable[[], None] | None = None
        self.binding_over = False  # set by the thread once bound or given up
        self.beats = 0
        self.beat_wanted = False  # set by /healthz, cleared by the loop's next beat
        self.registry = promclient.CollectorRegistry(auto_describe=False)
        promclient.ProcessCollector(registry=self.registry)
        self.registry.register(self)

    # -- called by the loop -------------------------------------------------
    def signal_received(self, signum: int) -> None:
        name = signals.name(signum)
        self.received[name] = self.received.get(name, 0) + 1

    def signal_forwarded(self, signum: int) -> None:
        name = signals.name(signum)
        self.forwarded[name] = self.forwarded.get(name, 0) + 1

    def zombie_reaped(self, comm: "str | None", container: "str | None") -> None:
        self.reaped += 1
        _count(self.reaped_by_comm, comm or "unknown", MAX_COMMS)
        _count(self.reaped_by_container, container or containers.NONE, MAX_CONTAINERS)

    def child_exited(self, code: int) -> None:
        self.child_code = code

    def heartbeat(self) -> None:
        self.beats += 1
        if self.beat_wanted:
            self.beat_wanted = False
            self.server.wake()  # type: ignore[union-attr]  # set when beats are wanted
        if self.server_ended:
            self.server_ended = False
            _restart(self)
        if self.binding_over and self.bound:
            bound, self.bound = self.bound, None
            bound()

    def grace_period(self) -> None:
        self.in_grace = True

    # -- called by the HTTP thread ------------------------------------------
    def respond(
        self, method: str, path: str, headers: "Mapping[str, str]"
    ) -> "Response | httpd.Pending":
        if path == "/metrics":
            if "application/openmetrics-text" in (
                kind.partition(";")[0].strip() for kind in headers.get("accept", "").split(",")
            ):
                return 200, promclient.OPENMETRICS_TYPE, promclient.openmetrics(self.registry)
            return 200, promclient.TEXT_TYPE, promclient.text(self.registry)
        if path == "/healthz":
            # During the grace period the loop does not beat: it is in a wait
            # that ends by itself at a deadline, doing its job. Healthy.
            return _HEALTHY if self.in_grace else _HealthCheck(self)
        if path == "/":
            return 200, "text/html; charset=utf-8", _INDEX
        return 404, "text/plain", b"not found: try /metrics or /healthz\n"

    def collect(self) -> "Iterator[Any]":
        """Metric families for the registry (prometheus_client's collector protocol)."""
        yield _counter(
            "pypause_zombies_reaped", "Processes reaped that were not the main child", self.reaped
        )
        yield _by_label(
            "pypause_zombies_reaped_by_comm",
            "Processes reaped that were not the main child, by command name",
            "comm",
            self.reaped_by_comm,
        )
        yield _by_label(
            "pypause_zombies_reaped_by_container",
            "Processes reaped that were not the main child, by the container they ran in",
            "container_id",
            self.reaped_by_container,
        )
        yield _by_label(
            "pypause_signals_received", "Signals received by pypause", "signal", self.received
        )
        if self.mode == "init":
            yield _by_label(
                "pypause_signals_forwarded",
                "Signals forwarded to the main child",
                "signal",
                self.forwarded,
            )
            yield _gauge(
                "pypause_child_running", "1 while the main child runs", int(self.child_code is None)
            )
            if self.child_code is not None:
                yield _gauge(
                    "pypause_child_exit_code",
                    "Exit code of the main child (128+N: killed by signal N)",
                    self.child_code,
                )
        info = GaugeMetricFamily(
            "pypause_info", "pypause version and mode (pause or init)", labels=["version", "mode"]
        )
        info.add_metric([__version__, self.mode], 1)
        yield info
        yield _gauge(
            "pypause_start_time_seconds", "Start time of pypause since the Unix epoch", self.started
        )
        yield _counter(
            "pypause_log_lines_dropped",
            "Log lines pypause dropped because stderr could not take them",
            log.dropped,
        )
        if self.server is not None:
            yield _counter(
                "pypause_metrics_connections_rejected",
                "Metrics connections closed unserved to make room at the cap",
                self.server.rejected,
            )
            yield _counter(
                "pypause_metrics_errors",
                "Metrics connections that failed: "
                "accept errors, bad requests, missed deadlines, internal errors",
                self.server.errors,
            )
        census = procfs.census(os.getpid())
        if census is not None:  # no /proc of our own: report what we can
            processes, zombies, parents = census
            yield _gauge(
                "pypause_processes", "Processes visible in pypause's PID namespace", processes
            )
            yield _gauge(
                "pypause_zombies", "Zombies whose parent is pypause, not yet reaped", zombies
            )
            yield _held(parents)


_HEALTHY = (200, "text/plain", b"ok\n")


class _HealthCheck(httpd.Pending):
    """/healthz: healthy if the loop runs a step within HEALTH_TIMEOUT of being woken."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.seen = metrics.beats
        self.deadline = time.monotonic() + HEALTH_TIMEOUT
        metrics.beat_wanted = True  # before the SIGCHLD: its beat must wake the server
        os.kill(os.getpid(), _signal.SIGCHLD)  # a reap pass: harmless, and it wakes the loop

    def poll(self) -> "Response | None":
        # A wake-up may come from a beat that was under way when this check
        # began (before `seen` was read); then ask again for the next one, and
        # look once more, in case it came in between.
        if self.metrics.beats > self.seen:
            return _HEALTHY
        self.metrics.beat_wanted = True
        return _HEALTHY if self.metrics.beats > self.seen else None

    def expire(self) -> "Response":
        return 503, "text/plain", b"main loop not answering\n"


def _counter(name: str, documentation: str, value: float) -> "Any":
    return CounterMetricFamily(name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> "Any":
    return GaugeMetricFamily(name, documentation, value=value)


def _count(counts: "dict[str, int]", value: str, limit: int) -> None:
    """One more for `value`, or for "other" once `limit` values are kept."""
    if value in counts:
        counts[value] += 1
    elif len(counts) < limit:
        counts[value] = 1
    else:
        counts["other"] = counts.get("other", 0) + 1


def _held(parents: "Mapping[int, int]") -> "Any":
    """The gauge of zombies held by a live parent other than pypause (procfs.census's
    third figure): by the parent's command name and container, the MAX_HOLDERS
    pairs that hold the most."""
    pairs: dict[tuple[str, str], int] = {}
    for ppid, count in parents.items():
        comm = procfs.comm(ppid) if ppid else None
        if comm is None:  # a parent outside our namespace, or gone since
            key = ("unknown", containers.NONE)
        else:
            key = (comm, containers.of(ppid, True))
        pairs[key] = pairs.get(key, 0) + count
    ranked = sorted(pairs.items(), key=lambda pair: pair[1], reverse=True)
    family = GaugeMetricFamily(
        "pypause_zombies_held_by_parent",
        "Zombies whose parent is alive and is not pypause (only that parent can reap them), "
        "by the parent's command name and container",
        labels=["parent_comm", "container_id"],
    )
    for (comm, container), count in sorted(ranked[:MAX_HOLDERS]):
        family.add_metric([comm, container], count)
    rest = sum(count for _, count in ranked[MAX_HOLDERS:])
    if rest:
        family.add_metric(["other", "other"], rest)
    return family


def _by_label(name: str, documentation: str, label: str, counts: "Mapping[str, int]") -> "Any":
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, count in sorted(dict(counts).items()):  # a copy: the loop may add keys
        family.add_metric([value], count)
    return family


def serve(
    metrics: Metrics, host: "str | None", port: int, bound: "Callable[[], None] | None" = None
) -> bool:
    """Serve `metrics` on host:port from a daemon thread. False if it cannot.

    `host` None: every interface, IPv6 and IPv4 (see address.listen). A host
    name is resolved in that thread, not here: a name server that does not
    answer must not hold up the loop. Metrics then appear once it resolves,
    or one error line says why they never will.

    `bound()` is called once the port is bound or metrics gave up: before
    this returns for an address, from the loop (a heartbeat, which the thread
    asks for with a SIGCHLD) for a name. Never raises.
    """
    if host is None or address.is_numeric(host):
        server = _listen(metrics, host, port)
        started = server is not None and _start(metrics, server.serve_forever)
        if bound:
            bound()
        return started

    def resolve_then_serve() -> None:
        server = _listen(metrics, host, port)
        metrics.binding_over = True
        os.kill(os.getpid(), _signal.SIGCHLD)
        if server is not None:
            server.serve_forever()

    metrics.bound = bound
    if _start(metrics, resolve_then_serve):
        return True
    if bound:
        bound()
    return False


def _listen(metrics: Metrics, host: "str | None", port: int) -> "httpd.Server | None":
    """Listen on host:port and say where; None (and an error line) if it cannot."""
    try:
        listener, shown = address.listen(host, port)
    except Exception as e:  # OSError, and UnicodeError from IDNA for odd names
        log.error(
            "metrics disabled: cannot listen on %s:%d: %s"
            % (host or "*", port, getattr(e, "strerror", None) or e)
        )
        return None
    try:
        server = httpd.Server(listener, metrics.respond)
    except OSError as e:  # no descriptor left for its wake-up pipe
        listener.close()
        log.error("metrics disabled: %s" % e.strerror)
        return None
    metrics.server = server
    stack = " (IPv6 and IPv4)" if host is None and shown == "[::]" else ""
    log.info(
        "serving metrics on http://%s:%d/metrics%s" % (shown, listener.getsockname()[1], stack)
    )
    return server


#: A metrics thread that ended is started again at most this often (seconds).
RESTART_INTERVAL = 60.0


def _start(metrics: Metrics, target: "Callable[[], None]", after: float = 0.0) -> bool:
    """Run target() in the metrics thread, `after` seconds from now.

    If the thread ends with a server in place (serve_forever() never returns,
    so only through a bug it could not catch), it tells the loop with a
    SIGCHLD, as /healthz does, and the loop's heartbeat starts another.
    """

    def run() -> None:
        if after:
            time.sleep(after)
        try:
            target()
        finally:
            if metrics.server is not None:
                metrics.server_ended = True
                os.kill(os.getpid(), _signal.SIGCHLD)

    # No traceback from any thread: stderr is shared with the child, and a
    # traceback's writes could block. One line through the log instead.
    threading.excepthook = _thread_ended
    thread = threading.Thread(target=run, name="metrics", daemon=True)
    try:
        thread.start()
    except RuntimeError as e:  # no thread to be had (a pids limit): PID 1 goes on
        if metrics.server is not None:
            metrics.server.close()
            metrics.server = None
        log.error("metrics disabled: cannot start the server thread: %s" % e)
        return False
    metrics.thread_started = time.monotonic()
    return True


def _restart(metrics: Metrics) -> None:
    """The metrics thread ended: another on the same listener, at most once per
    RESTART_INTERVAL (it waits out the rest of the interval first)."""
    wait = max(0.0, metrics.thread_started + RESTART_INTERVAL - time.monotonic())
    log.error(
        "metrics: the server thread ended; starting another%s"
        % (" in %.0fs" % wait if wait else "")
    )
    _start(metrics, metrics.server.serve_forever, after=wait)  # type: ignore[union-attr]


def _thread_ended(args: "Any") -> None:
    """threading.excepthook: one log line instead of a traceback on stderr."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "a thread"
    what = httpd.described(args.exc_value) if args.exc_value is not None else args.exc_type
    log.error("%s ended: %s" % (name, what))
