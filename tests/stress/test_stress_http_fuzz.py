"""Black-box fuzz of the metrics server of a running pypause (issue 19).

pypause runs in init mode with --metrics-addr 127.0.0.1:0 and a child that
echoes the signals it gets (helpers/signal_echo.py). Each round, seeded (the seed is in
every message), is a bounded number of random clients within a bounded time:
random bytes and random valid or invalid requests, sent in random pieces, ending
every way (read to the end, close, RST, half-close, never read, a tiny receive
window), many at once. Between rounds pypause is stopped (SIGSTOP), a burst of
connections waits in its accept queue, and it goes on (SIGCONT): they arrive in
one batch. After each round and each burst: /healthz and /metrics answer 200,
pypause has 2 threads, its descriptors come back to the idle count, a SIGUSR1
reaches the child, and stderr says nothing of a failure. At the end SIGTERM:
the child's exit status is pypause's, and stderr holds no traceback.

Short by default (a few seconds); PYPAUSE_STRESS=1 runs more seeds, more
clients, longer rounds, and clients that hold their connection until the
server's deadline closes it.
"""

import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import time

import pytest

from tests.stress.stress_support import Lines, echo_child, measured, scaled
from tests.support.http import REASONS, port_from
from tests.support.http import http_get as get
from tests.support.http import metric_samples as samples
from tests.support.http import metric_value as value
from tests.support.proc import fd_count, stat, thread_count
from tests.support.running import PYPAUSE, wait_for

SEEDS = scaled([19001, 19002, 19003], [19001 + i for i in range(12)])
CLIENTS = scaled(100, 600)  # per round
ROUND = scaled(0.6, 8.0)  # seconds over which a round's clients start and send
# Connections waiting while pypause is stopped: more than its cap of 64, fewer
# than its listen backlog of 128.
BURST = scaled(90, 120)
HOLD = scaled(False, True)  # some clients wait for the server's deadline to close them
CODE = 7  # the child's exit status on SIGTERM
DEADLINE = 5.0  # httpd.DEADLINE: the server closes a connection by then
MAX = 8192  # httpd.MAX_REQUEST
REJECTED = "pypause_metrics_connections_rejected_total"
ERRORS = "pypause_metrics_errors_total"
#: stderr lines that say the server caught a bug (or the thread ended).
FAILURE_LINES = re.compile(
    r"Traceback|server failed|serving a connection failed|"
    r"thread ended|metrics ended|unexpected error"
)


# -- requests -----------------------------------------------------------------------


def draw_request(rng):
    """(bytes, statuses it may get or None: none due, HEAD?): random, valid or not."""
    eol = rng.choice([b"\r\n", b"\n"])
    path = rng.choice([b"/metrics", b"/healthz", b"/", b"/nope", b"/metrics?x=1"])
    status = {b"/nope": 404}.get(path, 200)
    headers = [b"Host: 127.0.0.1"] + rng.sample(
        [
            b"Accept: */*",
            b"Accept: application/openmetrics-text; version=1.0.0",
            b"User-Agent: fuzz",
            b"X-Odd:  v  ",
            b"Connection: keep-alive",
        ],
        rng.randint(0, 3),
    )
    kind = rng.choice(
        ["valid"] * 4
        + ["method", "malformed", "oversize", "probe", "incomplete", "garbage", "tokens"]
    )
    if kind == "probe":
        return rng.choice([b"\r\n\r\n", b"\n\n", b"\r\n\n", b" \r\n\r\n"]), {400}, False
    if kind == "garbage":
        data = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 600)))
        return data, _any_if_due(data), None
    if kind == "tokens":
        parts = [
            b"GET",
            b"HEAD",
            b" ",
            b"/metrics",
            b"/healthz",
            b"HTTP/1.1",
            b"\r\n",
            b"\n",
            b"\x85",
            b":",
            b"\x00",
            b"?",
            b"\xff",
            b"Host: a",
        ]
        data = b"".join(rng.choice(parts) for _ in range(rng.randint(0, 30)))
        return data, _any_if_due(data), None
    method = rng.choice([b"GET", b"HEAD"])
    line = b"%s %s HTTP/1.1" % (method, path)
    if kind == "method":
        line, status = (
            b"%s %s HTTP/1.1" % (rng.choice([b"POST", b"PUT", b"get", b"BREW"]), path),
            405,
        )
    elif kind == "malformed":
        line, status = (
            rng.choice(
                [b"GET", b"GET %s" % path, b"GET  %s HTTP/1.1" % path, b"GET %s FTP/1" % path, b""]
            ),
            400,
        )
    head = eol.join([line, *headers])
    if kind == "oversize":  # at MAX's edge (a head of MAX bytes is served), and past it
        size = rng.choice([rng.randint(MAX - 3, MAX + 3), rng.randint(MAX + 10, 2 * MAX)])
        head += eol + b"X-Pad: " + b"p" * (size - len(head) - len(eol) - len(b"X-Pad: "))
        status = 431 if len(head) > MAX else status
    if kind == "incomplete":
        return head + rng.choice([b"", eol]), set(), False
    head_only = method == b"HEAD" and kind in ("valid", "oversize") and status != 431
    return head + eol + eol, {status}, head_only


def _any_if_due(data):
    """What random bytes may get: any answer once a head ends (or passes MAX), else none."""
    due = b"\r\n\r\n" in data or b"\n\n" in data or len(data) > MAX
    return {200, 400, 404, 405, 431} if due else set()


# -- clients ------------------------------------------------------------------------------

ENDINGS = ["read"] * 4 + ["close", "rst", "half", "noread", "tiny"]


class Client:
    """One fuzz client: connects at `start`, sends its pieces at their times, ends."""

    def __init__(self, rng, start, span, hold):
        self.data, self.statuses, self.head_only = draw_request(rng)
        self.ending = rng.choice(ENDINGS + (["hold"] if hold else []))
        if not self.statuses and self.ending in ("read", "tiny"):
            # No answer due: the server would hold it to its deadline; short
            # rounds leave instead (long ones have "hold" clients for that).
            self.ending = rng.choice(["close", "rst", "half"])
        cuts = sorted(rng.randint(1, max(1, len(self.data) - 1)) for _ in range(rng.randint(0, 3)))
        self.chunks = [self.data[a:b] for a, b in zip([0, *cuts], [*cuts, len(self.data)]) if b > a]
        self.times = sorted(start + rng.uniform(0, span) for _ in self.chunks)
        self.start = start
        self.sock = None
        self.sent = 0
        self.received = bytearray()
        self.eof = self.reset = self.ended = self.unconnected = False
        self.blocked_since = None

    @property
    def reads(self):
        return self.ending in ("read", "half", "tiny", "hold")

    def open(self, port):
        self.sock = socket.socket()
        if self.ending == "tiny":
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
        self.sock.setblocking(False)
        self.sock.connect_ex(("127.0.0.1", port))

    def next_time(self):
        if self.sock is None:
            return self.start
        if self.ended:
            return None
        return self.times[0] if self.times else self.start

    def act(self, now):
        """Connect, send the next piece, or end (once everything is sent)."""
        if self.sock is None:
            return "open"
        if self.times and self.times[0] <= now:
            chunk = self.chunks[0]
            try:
                n = self.sock.send(chunk, socket.MSG_NOSIGNAL)
            except BlockingIOError:  # still connecting, or the server does not read
                n = 0
            except OSError:  # refused, reset, broken pipe: closed by the server
                self.unconnected = not self.sent and not self.received
                self.times, self.chunks = [], []
                n = 0
            self.sent += n
            if not self.chunks:
                return
            if n == len(chunk):
                self.times.pop(0)
                self.chunks.pop(0)
                self.blocked_since = None
            else:
                self.chunks[0] = chunk[n:]
                self.times[0] = now + 0.01  # the rest, soon
                self.blocked_since = self.blocked_since or now
                if now - self.blocked_since > 3:  # nobody reads: give up sending
                    self.unconnected = not self.sent
                    self.times, self.chunks = [], []
        if not self.times and not self.ended:
            self.end()

    def end(self):
        self.ended = True
        if self.ending == "half":
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        elif self.ending == "rst":
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()
        elif self.ending == "close":
            self.sock.close()

    def closed_here(self):
        return self.ending in ("close", "rst") and self.ended

    def read(self):
        try:
            chunk = self.sock.recv(512 if self.ending == "tiny" else 65536)
        except BlockingIOError:
            return
        except (ConnectionResetError, ConnectionRefusedError):
            self.reset = True
            return
        if not chunk:
            self.eof = True
        self.received += chunk

    def finished(self):
        return (
            self.closed_here() or self.eof or self.reset or (self.ended and self.ending == "noread")
        )

    def finish(self):
        """The end of the round: what a non-reader has got, then close."""
        if self.closed_here() or self.sock is None:
            return
        if self.ending == "noread":
            while not (self.eof or self.reset):
                before = len(self.received)
                self.read()
                if len(self.received) == before and not self.eof:
                    break
        self.sock.close()


def run_clients(clients, port, limit):
    """Drive `clients` (each on its own times) until all are done or `limit` passes."""
    while True:
        now = time.monotonic()
        for c in clients:
            t = c.next_time()
            if t is not None and t <= now and not c.closed_here():
                if c.act(now) == "open":
                    c.open(port)
        live = [c for c in clients if c.sock is not None and not c.finished()]
        pending = [t for t in (c.next_time() for c in clients) if t is not None]
        if (not live and not pending) or now > limit:
            return
        readers = {c.sock: c for c in live if c.reads and c.sock.fileno() >= 0}
        # Wait for an answer to read, or for the time of the next piece to send.
        wait = max(0.0, min([*pending, now + 0.05]) - now)
        for sock in select.select(list(readers), [], [], wait)[0]:
            readers[sock].read()


# -- what a client got -------------------------------------------------------------------


def parse_answer(raw, head_only):
    """(status, complete, body) of `raw` read as one response; AssertionError if it is not."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep, "no response head in %r" % raw[:200]
    lines = head.decode("latin-1").split("\r\n")
    version, code, reason = lines[0].split(" ", 2)
    status = int(code)
    assert version == "HTTP/1.1" and reason == REASONS[status], lines[0]
    headers = dict(
        (k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])
    )
    assert headers.get("connection") == "close", headers
    length = int(headers["content-length"])
    want = 0 if head_only else length
    assert len(rest) <= want, "more than one answer: %r" % rest[want:][:100]
    return status, len(rest) == want, rest


def check_client(c, where):
    """The client's bytes: nothing, or the one answer its request may get. True if
    it got nothing although an answer was due (evicted or timed out: counted)."""
    if not c.reads or c.sock is None or c.unconnected:
        return False
    if not c.received:  # silent: counted if its whole request was sent, an answer due
        return bool(c.statuses) and c.sent == len(c.data)
    assert c.statuses, "%s: an answer to an unfinished request: %r" % (where, c.received[:200])
    status, complete, body = parse_answer(bytes(c.received), c.head_only)
    assert status in c.statuses, "%s: %d for %r" % (where, status, c.data[:200])
    # Truncated only if the server closed with unread bytes of ours (then the
    # kernel resets the connection and drops what we had not read yet).
    assert complete or c.reset, "%s: %d bytes of an answer, then EOF" % (where, len(body))
    return False


def counted_errors_seen(clients):
    """Answers the clients saw that pypause counts as errors (bad requests, 500s)."""
    return sum(
        int(c.received.split(b" ", 2)[1]) in (400, 431, 500)
        for c in clients
        if c.reads and c.received
    )


# -- pypause --------------------------------------------------------------------------------


class Pypause:
    def __init__(self, procs):
        self.p = procs(
            [PYPAUSE, "--metrics-addr", "127.0.0.1:0", "--", *echo_child(CODE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.pid = self.p.pid
        self.port = port_from(self.p.stderr)
        self.out = Lines(self.p.stdout)
        self.err = Lines(self.p.stderr)
        self.out.wait(lambda lines: "ready" in lines, what="the child to be ready")
        self.usr1 = 0

    def counters(self):
        got = samples(self.port)
        return value(got, REJECTED) or 0, value(got, ERRORS) or 0

    def healthy(self, where, fds0):
        """What must hold after each round: answers, 2 threads, idle fds, signals forwarded."""
        assert self.p.poll() is None, "%s: pypause ended with %s" % (where, self.p.returncode)
        try:
            healthz = get(self.port, "/healthz")[::2]
            status, _, text = get(self.port, "/metrics")
        except OSError as e:  # (the HTTP thread died: nobody accepts)
            raise AssertionError(
                "%s: no answer (%s); pypause's stderr ends %r" % (where, e, self.err.lines[-12:])
            ) from None
        assert healthz == (200, "ok\n"), where
        assert status == 200 and "pypause_info" in text, where
        assert thread_count(self.pid) == 2, "%s: %d threads" % (where, thread_count(self.pid))
        # The HTTP thread closes a connection just after its client has the answer.
        wait_for(
            lambda: fd_count(self.pid) == fds0,
            timeout=DEADLINE + 3,
            what="%s: pypause's fds back to %d (has %d)" % (where, fds0, fd_count(self.pid)),
        )
        os.kill(self.pid, signal.SIGUSR1)
        self.usr1 += 1
        self.out.wait(
            lambda lines: lines.count(str(int(signal.SIGUSR1))) == self.usr1,
            what="%s: SIGUSR1 %d echoed by the child" % (where, self.usr1),
        )
        failures = [line for line in self.err.lines if line and FAILURE_LINES.search(line)]
        assert not failures, "%s: %r" % (where, failures[:5])


def stopped(pid):
    return stat(pid).state == "T"


@pytest.mark.timeout(scaled(90, 1800))
def test_fuzzed_clients_never_stop_the_metrics_server(procs):
    pp = Pypause(procs)
    fds0 = fd_count(pp.pid)  # before any connection: the listener, epoll, the wake-up pipe
    assert get(pp.port, "/metrics")[0] == 200 and get(pp.port, "/healthz")[0] == 200  # warm up
    rejected0, errors0 = pp.counters()
    statuses, silent_total, total = {}, 0, 0
    t_start = time.monotonic()
    for seed in SEEDS:
        rng = random.Random(seed)
        where = "seed %d" % seed
        # -- a round of random clients ----------------------------------------------
        t0 = time.monotonic()
        clients = [Client(rng, t0 + rng.uniform(0, ROUND), ROUND / 2, HOLD) for _ in range(CLIENTS)]
        run_clients(clients, pp.port, t0 + ROUND * 1.5 + DEADLINE + 3)
        silent = 0
        for i, c in enumerate(clients):
            silent += check_client(
                c, "%s, client %d (%s, %r...)" % (where, i, c.ending, c.data[:60])
            )
            if c.received:
                code = int(c.received.split(b" ", 2)[1])
                statuses[code] = statuses.get(code, 0) + 1
            c.finish()
        total += len(clients)
        pp.healthy(where, fds0)
        rejected, errors = pp.counters()
        # A client left without a word was evicted at the cap, or timed out: counted,
        # beside the errors the clients saw (the checks' own requests count nothing).
        unexplained = (rejected - rejected0) + (errors - errors0) - counted_errors_seen(clients)
        assert silent <= unexplained, (where, silent, rejected, errors)
        rejected0, errors0, silent_total = rejected, errors, silent_total + silent

        # -- pypause stopped while a burst waits; then they come in one batch ---------
        os.kill(pp.pid, signal.SIGSTOP)
        wait_for(lambda: stopped(pp.pid), what="%s: pypause to stop" % where)
        burst = []
        for _ in range(BURST):
            c = Client(rng, 0, 0, False)
            # (the unfinished one half-closes: else the server holds it to its deadline)
            c.data, c.statuses, c.ending = rng.choice(
                [
                    (b"GET /healthz HTTP/1.1\r\n\r\n", {200}, "read"),
                    (b"GET /metrics HTTP/1.1\r\n\r\n", {200}, "read"),
                    (b"\r\n\r\n", {400}, "read"),
                    (b"GET /metrics HTTP/1.1\r\n", set(), "half"),
                ]
            )
            c.head_only, c.chunks, c.times = False, [c.data], [0]
            c.open(pp.port)
            burst.append(c)
        # Every request sent into the kernel's queues (it completes the handshakes),
        # none read by pypause yet.
        give_up = time.monotonic() + 5
        while [c for c in burst if c.chunks] and time.monotonic() < give_up:
            for c in burst:
                if c.chunks:
                    c.act(time.monotonic())
            select.select([], [c.sock for c in burst if c.chunks], [], 0.05)
        assert not [c for c in burst if c.chunks], "%s: the burst was not sent" % where
        assert stopped(pp.pid)
        os.kill(pp.pid, signal.SIGCONT)
        run_clients(burst, pp.port, time.monotonic() + DEADLINE + 3)
        silent = 0
        for i, c in enumerate(burst):
            silent += check_client(c, "%s, burst client %d (%r)" % (where, i, c.data))
            c.finish()
        pp.healthy(where + ", after the burst", fds0)
        rejected, errors = pp.counters()
        unexplained = (rejected - rejected0) + (errors - errors0) - counted_errors_seen(burst)
        assert silent <= unexplained, (where + ", burst", silent, rejected, errors)
        rejected0, errors0, silent_total = rejected, errors, silent_total + silent
        total += len(burst)

    os.kill(pp.pid, signal.SIGTERM)
    assert pp.p.wait(10) == CODE, "the child's exit status was not kept"
    pp.err.wait(lambda lines: lines and lines[-1] is None, what="pypause's stderr to end")
    assert not [line for line in pp.err.lines if line and "Traceback" in line]
    assert {200, 400, 405, 431} <= set(statuses), statuses  # the fuzz reaches them
    measured(
        "HTTP fuzz, black box",
        "%d seeds, %d clients in %.1f s: statuses %s, "
        "%d left without a word (rejected %d, errors %d)"
        % (
            len(SEEDS),
            total,
            time.monotonic() - t_start,
            dict(sorted(statuses.items())),
            silent_total,
            rejected0,
            errors0,
        ),
    )
