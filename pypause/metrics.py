"""Prometheus metrics on what PID 1 reaps and forwards, served beside the loop.

Imported only when --metrics-addr is given: prometheus_client costs ~80 ms and
~14 MB. The HTTP server runs in daemon threads started after every waited
signal is blocked (they inherit the mask, so no signal lands in them). It never
calls into the loop: counters are updated by the loop and read by scrapes, and
/healthz asks the loop for a heartbeat by sending pypause a SIGCHLD.
"""

import os
import signal
import socket
import sys
import threading
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import (CollectorRegistry, Counter, Gauge, ProcessCollector,
                               make_wsgi_app)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from pypause import __version__, log, procfs, signals

#: Distinct `comm` label values kept; the rest are counted as comm="other".
MAX_COMMS = 64
#: Seconds /healthz waits for the loop to answer before saying 503.
HEALTH_TIMEOUT = 2.0
#: Seconds an HTTP connection may sit idle before it is closed (ends its thread).
IDLE_TIMEOUT = 30


class Metrics:
    """The loop's events, counted for Prometheus. Methods are called by the loop."""

    needs_comm = True  # orphans are counted by command name

    def __init__(self, mode):
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        r = self.registry
        self._reaped = Counter("pypause_zombies_reaped", "Processes reaped that were not the "
                               "main child, by command name", ["comm"], registry=r)
        self._received = Counter("pypause_signals_received", "Signals received by pypause",
                                 ["signal"], registry=r)
        self._forwarded = Counter("pypause_signals_forwarded", "Signals forwarded to the "
                                  "main child", ["signal"], registry=r)
        Gauge("pypause_info", "pypause version and mode (pause or init)",
              ["version", "mode"], registry=r).labels(__version__, mode).set(1)
        Gauge("pypause_start_time_seconds", "Start time of pypause since the Unix epoch",
              registry=r).set(time.time())
        if mode == "init":
            self._running = Gauge("pypause_child_running", "1 while the main child runs",
                                  registry=r)
            self._running.set(1)
        r.register(_ProcCollector())
        self._comms = set()
        self._beats = 0
        self._beat = threading.Condition()
        self._in_grace = False

    # -- called by the loop -------------------------------------------------
    def signal_received(self, signum):
        self._received.labels(signals.name(signum)).inc()

    def signal_forwarded(self, signum):
        self._forwarded.labels(signals.name(signum)).inc()

    def orphan_reaped(self, comm):
        comm = comm or "unknown"
        if comm not in self._comms:
            if len(self._comms) >= MAX_COMMS:
                comm = "other"
            self._comms.add(comm)
        self._reaped.labels(comm).inc()

    def child_exited(self, code):
        self._running.set(0)
        Gauge("pypause_child_exit_code", "Exit code of the main child (128+N: killed by "
              "signal N)", registry=self.registry).set(code)

    def heartbeat(self):
        with self._beat:
            self._beats += 1
            self._beat.notify_all()

    def grace_period(self):
        self._in_grace = True

    # -- called by HTTP threads ---------------------------------------------
    def loop_alive(self):
        """True if the loop runs a step within HEALTH_TIMEOUT of being woken.

        During the grace period the loop does not beat: it is in a wait that
        ends by itself at a deadline. pypause is doing its job, so it is healthy.
        """
        if self._in_grace:
            return True
        with self._beat:
            seen = self._beats
            os.kill(os.getpid(), signal.SIGCHLD)  # a reap pass: harmless, and it wakes the loop
            return self._beat.wait_for(lambda: self._beats > seen, HEALTH_TIMEOUT)

    def wsgi_app(self):
        metrics_app = make_wsgi_app(self.registry)

        def app(environ, start_response):
            path = environ.get("PATH_INFO", "")
            if path == "/metrics":
                return metrics_app(environ, start_response)
            if path == "/healthz":
                ok = self.loop_alive()
                start_response("200 OK" if ok else "503 Service Unavailable",
                               [("Content-Type", "text/plain")])
                return [b"ok\n" if ok else b"main loop not answering\n"]
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /metrics or /healthz\n"]
        return app


class _ProcCollector:
    """Gauges read from /proc at scrape time, and log lines dropped."""

    def collect(self):
        yield CounterMetricFamily("pypause_log_lines_dropped", "Log lines pypause dropped "
                                  "because stderr could not take them", value=log.dropped)
        census = procfs.census(os.getpid())
        if census is None:  # no /proc in this namespace: report what we can
            return
        processes, zombies = census
        yield GaugeMetricFamily("pypause_processes", "Processes visible in pypause's PID "
                                "namespace", value=processes)
        yield GaugeMetricFamily("pypause_zombies", "Zombies whose parent is pypause, "
                                "not yet reaped", value=zombies)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a thread per connection, never joined
    # socketserver's default backlog of 5 drops the SYNs of a burst of scrapers,
    # each of which then waits a second for its retransmission.
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # socketserver prints a traceback to sys.stderr: a blocking write that
        # would hang this thread (and leak its socket) on a full pipe.
        log.warning("metrics request failed: %r" % (sys.exc_info()[1],),
                    client="%s:%s" % client_address[:2])


class _LogStream:
    """What wsgiref's error reporting writes to: log lines, never a blocking write."""

    def write(self, text):
        if text.strip():
            log.warning("metrics: %s" % text.strip().splitlines()[-1])

    def flush(self):
        pass


class _Handler(WSGIRequestHandler):
    timeout = IDLE_TIMEOUT

    def log_message(self, *args):
        pass  # a line per scrape would drown the logs

    def get_stderr(self):
        return _LogStream()


def serve(metrics, host, port):
    """Serve `metrics` on host:port in a daemon thread. Return False if it cannot bind."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                    flags=socket.AI_PASSIVE)[0][0]
        server_class = type("Server", (_Server,), {"address_family": family})
        server = server_class((host, port), _Handler)
    except Exception as e:  # OSError, and UnicodeError from IDNA for odd names
        log.error("metrics disabled: cannot listen on %s:%d: %s"
                  % (host, port, getattr(e, "strerror", None) or e))
        return False
    server.set_app(metrics.wsgi_app())
    # poll_interval=None: the thread sleeps in select() until a connection comes.
    thread = threading.Thread(target=server.serve_forever, args=(None,), name="metrics",
                              daemon=True)
    try:
        thread.start()
    except RuntimeError as e:  # no thread to be had (a pids limit): PID 1 goes on
        server.server_close()
        log.error("metrics disabled: cannot start the server thread: %s" % e)
        return False
    bound = server.server_address
    log.info("serving metrics on http://%s:%d/metrics" % (
        "[%s]" % bound[0] if family == socket.AF_INET6 else bound[0], bound[1]))
    return True
