"""Properties of the metrics HTTP server (pypause/httpd.py), in process, with Hypothesis.

A Server is built here on a listening socket of its own, with a `respond` of
the test's, and the test turns its crank: it calls Server.step() itself, on a
fake clock, with the batch each select() returned put in an order the test
chooses. So every interleaving is the test's to pick: many sockets ready at
once, an eviction before the evicted connection's own event, a deadline in the
same turn as an answer. The clients are real loopback sockets, ending every
way a client can: close, RST (SO_LINGER 0), half-close (SHUT_WR), never
reading, a tiny receive window (SO_RCVBUF).

Invariants: no exception escapes step() and none is swallowed either (each
exception the server catches is recorded here and fails the test); every
answer is one well-formed response, the one the request calls for; a client
left without one was rejected or timed out, and counted; the server answers a
fresh request afterwards; connections, descriptors and _Connection objects
come back to idle.

Reproducing a failure: the Hypothesis database is off (database=None, here and
in CI alike), so nothing depends on a file of one machine: a failure prints
its minimal example and an `@reproduce_failure(...)` line (print_blob); add
that line above the test to run that very example again, or rerun with
`--hypothesis-seed=N` (`@seed(N)`) for the whole run. PYPAUSE_STRESS=1 selects
the "pypause-stress" profile: ten times the examples, three times the steps.

The focused tests after the properties are issue 19's inputs: the four bytes of
nmap's GenericLines probe, an eviction in the same batch as the evicted
connection's event, the /healthz race (a beat under way when the check
begins), and the fixes around them (a last poll() at a Pending's deadline, an
exception in one connection or outside any), and one thing these tests found:
a head of MAX_REQUEST-2 to MAX_REQUEST bytes was a 431 or served depending on
how it arrived.
"""

import contextlib
import gc
import os
import random
import select
import socket
import struct
import threading
import types
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from pypause import address, httpd, metrics
from tests.stress.stress_support import STRESS, scaled
from tests.support.http import REASONS
from tests.support.proc import fd_count

# -- Hypothesis profiles ----------------------------------------------------------
# database=None always: a failure is reproduced from what it prints (the blob,
# the seed), never from a local .hypothesis/ directory that differs between a
# laptop and CI and would replay old examples in place of new ones.
settings.register_profile(
    "pypause-default",
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "pypause-stress",
    settings.get_profile("pypause-default"),
    max_examples=600,
    stateful_step_count=120,
)
PROFILE = settings.get_profile("pypause-stress" if STRESS else "pypause-default")

MAX = httpd.MAX_REQUEST
BIG = bytes(range(256)) * 512  # 128 KiB: more than a tiny window or a non-reader takes
#: The server's own bodies, by status, for answers it makes itself.
OWN_BODIES = {
    400: b"bad request\n",
    405: b"only GET and HEAD\n",
    431: b"request too large\n",
    500: b"internal error\n",
}
#: respond() of these tests: path -> (status, body), or LATER for a Pending.
LATER = "later"
ROUTES = {
    "/ok": (200, b"ok\n"),
    "/big": (200, BIG),
    "/missing": (404, b"not found\n"),
    "/boom": (500, b"internal error\n"),
    "/later": LATER,
}
LATER_ANSWERS = {(200, b"later\n"), (503, b"expired\n")}
LATER_TIMEOUT = 2.0  # as metrics.HEALTH_TIMEOUT
#: What a Rig patches in httpd, as it is: each Rig checks it finds them so.
UNPATCHED = (httpd.time, httpd.log, httpd.MAX_CONNECTIONS)


def live_connections():
    """_Connection objects alive in this process (the server's memory of clients)."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is httpd._Connection)


# -- the rig: a Server whose turns the test makes ------------------------------------


class Clock:
    """time for httpd and metrics: monotonic() is what the test says; sleep() advances it."""

    def __init__(self):
        self.now = 1000.0
        self.slept = []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds

    def time(self):
        return 1.7e9 + self.now


class Batches:
    """The server's selector, but select() never blocks (the test decides when
    things are ready) and its batch comes back in the order `order` gives."""

    def __init__(self, real):
        self.real = real
        self.order = None

    def select(self, timeout=None):
        batch = self.real.select(0)
        if self.order is not None:
            batch = self.order(list(batch))
        return batch

    def ready(self):
        """The file objects ready now (level-triggered: this takes nothing away)."""
        return [key.fileobj for key, _ in self.real.select(0)]

    def __getattr__(self, name):  # register, unregister, modify, get_map, close...
        return getattr(self.real, name)


class Later(httpd.Pending):
    """A Pending the test releases: 200 once released (and polled), 503 at its deadline."""

    def __init__(self, now, client):
        self.deadline = now + LATER_TIMEOUT
        self.client = client  # the X-Client header of its request
        self.released_at = None
        self.due = None  # its connection's deadline (the earlier of its own and this one)

    def poll(self):
        return None if self.released_at is None else (200, "text/plain", b"later\n")

    def expire(self):
        return 503, "text/plain", b"expired\n"


class Rig:
    """A Server on 127.0.0.1 in this process, on a fake clock, stepped by the test.

    Every exception the server catches itself (httpd.described() is called for
    each) is recorded in `swallowed`: the invariants want none.
    """

    def __init__(self, cap=None, respond=None, sndbuf=None, count_connections=False):
        assert (httpd.time, httpd.log, httpd.MAX_CONNECTIONS) == UNPATCHED, (
            "an earlier Rig left httpd patched"
        )
        self.clock = Clock()
        self.swallowed = []
        self.logged = []
        self.laters = []
        self.clients = []
        self.fds_before = fd_count(os.getpid())
        # (those of earlier examples that failed live on in their tracebacks)
        self.connections_before = live_connections() if count_connections else None
        # Sockets first, patches last: nothing can fail once httpd is patched.
        self.listener, _ = address.listen("127.0.0.1", 0)
        try:
            if sndbuf:  # inherited by every accepted socket: a large answer takes many sends
                self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            self.port = self.listener.getsockname()[1]
            self.server = httpd.Server(self.listener, respond or self.respond)
        except BaseException:
            self.listener.close()
            raise
        # The one private the rig touches: the selector, to order its batches.
        self.batches = Batches(self.server._selector)
        self.server._selector = self.batches
        self.fds_idle = fd_count(os.getpid())
        self._patches = contextlib.ExitStack()
        self._patches.enter_context(mock.patch.object(httpd, "time", self.clock))
        self._patches.enter_context(
            mock.patch.object(httpd, "log", types.SimpleNamespace(warning=self.logged.append))
        )
        if hasattr(httpd, "described"):
            real = httpd.described

            def described(e):
                self.swallowed.append(e)
                return real(e)

            self._patches.enter_context(mock.patch.object(httpd, "described", described))
        if cap is not None:
            self._patches.enter_context(mock.patch.object(httpd, "MAX_CONNECTIONS", cap))
        self.cap = httpd.MAX_CONNECTIONS

    def respond(self, method, path, headers):
        route = ROUTES.get(path, (404, b"not found\n"))
        if route == LATER:
            later = Later(self.clock.now, headers.get("x-client"))
            self.laters.append(later)
            return later
        status, body = route
        if path == "/boom":
            raise RuntimeError("respond failed on purpose")
        return status, "application/octet-stream" if body is BIG else "text/plain", body

    def step(self, order=None):
        self.batches.order = order
        self.server.step()
        for conn in self.connections():
            if isinstance(conn.pending, Later) and conn.pending.due is None:
                conn.pending.due = conn.deadline

    def connections(self):
        return list(self.server._connections.values())

    def wait(self, socks=(), timeout=0.05):
        """Wait, in real time, until the server has something to do (its epoll fd
        is readable) or one of `socks` is: True if so. Before the fake clock
        jumps, a packet that loopback is slow to deliver (under load) must be in."""
        return bool(select.select([self.batches.real.fileno(), *socks], [], [], timeout)[0])

    def turn_until(self, condition, what):
        """step() until condition() holds (waiting for the network in between)."""
        for _ in range(200):
            self.step()
            if condition():
                return
            self.wait()
        raise AssertionError("no %s after 200 turns" % what)

    def waiting_to_be_accepted(self):
        return bool(select.select([self.listener], [], [], 0)[0])

    def release(self):
        for later in self.laters:
            if later.released_at is None:
                later.released_at = self.clock.now
        self.server.wake()

    def connect(self, **kwargs):
        client = Client(self, **kwargs)
        self.clients.append(client)
        return client

    def close(self):
        try:
            for c in self.clients:
                c.close()
            for conn in self.connections():  # only after a failure: a clean run leaves none
                conn.sock.close()
            self.server.close()
        finally:
            self._patches.close()


def split(data, cuts):
    """`data` cut at the positions `cuts` (fractions of its length): a list of chunks."""
    points = sorted({int(f * len(data)) for f in cuts} - {0, len(data)})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)]) if b > a]


ENDINGS = ("read", "close", "rst", "half", "noread", "tiny")


class Client:
    """A loopback client of the rig: sends `data` in `chunks`, ends as `ending` says.

    read: reads until the server closes. close/rst: closes (RST with SO_LINGER
    0) when told to end, without reading. half: shutdown(SHUT_WR) when told,
    then reads. noread: never reads until the very end. tiny: SO_RCVBUF of 1
    (the kernel's minimum), reads what little comes.
    """

    def __init__(self, rig, data=b"", cuts=(), ending="read", spec=None):
        self.id = len(rig.clients)
        self.data, self.spec, self.ending = data, spec, ending
        self.chunks = split(data, cuts)
        self.sent = bytearray()
        self.received = bytearray()
        self.eof = self.reset = self.ended = self.send_failed = False
        self.sock = socket.socket()
        if ending == "tiny":
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
        self.sock.settimeout(5)
        self.sock.connect(("127.0.0.1", rig.port))
        self.sock.setblocking(False)

    @property
    def reads(self):
        """Reads its answer (the socket stays open for it)."""
        return self.ending in ("read", "half", "noread", "tiny")

    def can_send(self):
        return bool(self.chunks) and not self.ended and not self.send_failed

    def send_next(self):
        if not self.can_send():
            return
        chunk = self.chunks[0]
        try:
            n = self.sock.send(chunk)
        except BlockingIOError:
            return
        except (BrokenPipeError, ConnectionResetError):
            self.send_failed = True  # the server answered (or gave up) and closed
            return
        self.sent += chunk[:n]
        if n == len(chunk):
            self.chunks.pop(0)
        else:
            self.chunks[0] = chunk[n:]

    def end(self):
        if self.ended or self.ending not in ("close", "rst", "half"):
            return
        self.ended = True
        if self.ending == "half":
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # reset by the server already
            return
        if self.ending == "rst":
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def closed_here(self):
        return self.ending in ("close", "rst") and self.ended

    def pump(self, most=1 << 30):
        """Read what is there (at most `most` bytes); True if anything happened."""
        if self.closed_here() or self.eof or self.reset:
            return False
        got = 0
        while got < most:
            try:
                chunk = self.sock.recv(min(65536, most - got))
            except BlockingIOError:
                break
            except ConnectionResetError:
                self.reset = True
                return True
            if not chunk:
                self.eof = True
                return True
            self.received += chunk
            got += len(chunk)
        return got > 0

    def settled(self):
        return not self.reads or self.eof or self.reset or self.ending == "noread"

    def close(self):
        if not self.closed_here():
            self.sock.close()


# -- what the server must answer ---------------------------------------------------------


def _decide(head):
    """The answer to a request whose head is `head`: (status, head_only, body), status
    LATER for a Pending (httpd._dispatch, restated)."""
    if len(head) > MAX:
        return 431, False, OWN_BODIES[431]
    lines = head.decode("latin-1").splitlines() or [""]
    words = lines[0].split(" ")
    if len(words) != 3 or not words[2].startswith("HTTP/"):
        return 400, False, OWN_BODIES[400]
    method, target = words[0], words[1]
    if method not in ("GET", "HEAD"):
        return 405, False, OWN_BODIES[405]
    route = ROUTES.get(target.partition("?")[0], (404, b"not found\n"))
    return (
        (LATER, method == "HEAD", b"") if route == LATER else (route[0], method == "HEAD", route[1])
    )


def outcomes(data):
    """The answer the server owes `data`, however TCP segments it: a set of
    (status, head_only, body), two for a Pending (200 or 503), none while it
    waits for more.

    The head ends at the first terminator to complete (CRLF CRLF or, as typed
    by hand, LF LF); a head over MAX bytes, or MAX + 4 bytes with no end, is a 431.
    """
    ends = [(i + len(t), i) for t in (b"\r\n\r\n", b"\n\n") for i in [data.find(t)] if i >= 0]
    if not ends or min(ends)[0] > MAX + 4:
        return set() if len(data) < MAX + 4 else {(431, False, OWN_BODIES[431])}
    status, head_only, body = _decide(data[: min(ends)[1]])
    if status == LATER:
        return {(s, head_only, b) for s, b in LATER_ANSWERS}
    return {(status, head_only, body)}


class Answer:
    """A client's bytes read as one response: status, headers, body, and what
    follows it. head_only(status): whether that answer comes without its body."""

    def __init__(self, raw, head_only):
        head, sep, rest = raw.partition(b"\r\n\r\n")
        assert sep, "no complete response head in %r" % raw[:300]
        lines = head.decode("latin-1").split("\r\n")
        version, code, reason = lines[0].split(" ", 2)
        assert version == "HTTP/1.1" and code.isdigit(), lines[0]
        self.status = int(code)
        assert reason == REASONS[self.status], lines[0]
        self.headers = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            assert colon and name.strip() == name, "bad header line %r" % line
            assert name.lower() not in self.headers, "header %s twice" % name
            self.headers[name.lower()] = value.strip()
        assert self.headers.get("connection") == "close", self.headers
        assert self.headers.get("content-type"), self.headers
        assert (self.status == 405) == ("allow" in self.headers), self.headers
        self.length = int(self.headers["content-length"])
        self.head_only = head_only(self.status)
        want = 0 if self.head_only else self.length
        self.body, self.extra = rest[:want], rest[want:]
        self.complete = len(self.body) == want

    def __repr__(self):
        return "Answer(%d, %d of %d bytes, extra %r)" % (
            self.status,
            len(self.body),
            self.length,
            self.extra[:40],
        )


# -- requests, as Hypothesis draws them ---------------------------------------------------


class Spec:
    """What a structured request should get by the documented rules (httpd's
    docstring): the answer of its route for GET and HEAD, 405 for another
    method, 400 for a malformed request line, 431 for a head over MAX."""

    def __init__(self, status, head_only, head_length):
        self.status, self.head_only, self.head_length = status, head_only, head_length

    def __repr__(self):
        return "Spec(%r, head_only=%r, head %d bytes)" % (
            self.status,
            self.head_only,
            self.head_length,
        )


TOKENS = st.sampled_from(
    [
        b"GET",
        b"HEAD",
        b"POST",
        b" ",
        b"  ",
        b"/ok",
        b"/big",
        b"/later",
        b"/boom",
        b"?x=1",
        b"HTTP/1.1",
        b"HTTP/",
        b"\r\n",
        b"\n",
        b"\r",
        b"\r\n\r\n",
        b"\n\n",
        b"\x85",
        b"\x0b",
        b"\x00",
        b"Host: a",
        b":",
        b"\xff",
    ]
)


@st.composite
def requests(draw, client_header=True):
    """(bytes, Spec or None): a request built to the rules (Spec says its answer)
    or bytes of any kind (None: only the server's own rules, restated, say)."""
    kind = draw(
        st.sampled_from(
            ["valid", "valid", "method", "malformed", "oversize", "incomplete", "garbage", "probe"]
        )
    )
    if kind == "garbage":
        parts = draw(st.lists(st.one_of(TOKENS, st.binary(max_size=40)), max_size=16))
        return b"".join(parts), None
    if kind == "probe":  # what scanners send first: nmap's GenericLines, empty lines
        return draw(
            st.sampled_from(
                [b"\r\n\r\n", b"\n\n", b"\r\n\n", b"\n\r\n\r\n", b" \r\n\r\n", b"\r\n\r\n\r\n\r\n"]
            )
        ), None
    eol = draw(st.sampled_from([b"\r\n", b"\n"]))
    method = draw(st.sampled_from([b"GET", b"HEAD"]))
    # (weighted: a Pending and a large answer are where the server has the most to do)
    path = draw(
        st.sampled_from(
            ["/ok", "/big", "/big", "/later", "/later", "/later", "/missing", "/boom", "/nope"]
        )
    ).encode()
    query = draw(st.sampled_from([b"", b"?a=1", b"?"]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]))
    if kind == "method":
        method = draw(st.sampled_from([b"POST", b"PUT", b"DELETE", b"get", b"GETX", b"OPTIONS"]))
    line = b"%s %s%s %s" % (method, path, query, version)
    if kind == "malformed":
        line = draw(
            st.sampled_from(
                [
                    b"%s %s" % (method, path),
                    b"%s  %s %s" % (method, path, version),
                    b"%s %s %s x" % (method, path, version),
                    b"%s %s FTP/1.1" % (method, path),
                    b"%s" % method,
                    b"",
                    b" %s %s %s" % (method, path, version),
                ]
            )
        )
    headers = [b"Host: 127.0.0.1"]
    if client_header:
        headers.append(b"X-Client: {id}")  # the client's number, 4 digits
    headers += draw(
        st.lists(
            st.sampled_from(
                [b"Accept: */*", b"User-Agent: hypothesis", b"X-Empty:", b"x-odd:  spaced  "]
            ),
            max_size=3,
        )
    )
    head = eol.join([line, *headers])
    if kind == "oversize":  # around MAX, and well past it
        target = draw(st.one_of(st.integers(MAX - 6, MAX + 6), st.integers(MAX, 2 * MAX)))
        pad = max(0, target - len(head) - len(eol) - len(b"X-Pad: "))
        head = eol.join([head, b"X-Pad: " + b"p" * pad])
    if kind == "incomplete":
        return head + draw(st.sampled_from([b"", eol])), None
    return head + eol + eol, expected(kind, head, method, path)


def expected(kind, head, method, path):
    """The Spec of the answer to a request of `kind` (of requests()) ended after `head`."""
    if len(head) > MAX:
        return Spec(431, False, len(head))
    if kind == "malformed":
        return Spec(400, False, len(head))
    if kind == "method":
        return Spec(405, False, len(head))
    route = ROUTES.get(path.decode(), (404, b"not found\n"))
    status = LATER if route == LATER else route[0]
    return Spec(status, method == b"HEAD", len(head))


def spec_statuses(spec):
    return {200, 503} if spec.status == LATER else {spec.status}


# -- the properties --------------------------------------------------------------------


def check_answer(client, answer_set, spec):
    """`client`'s bytes are one answer of `answer_set` (and of `spec`): return the Answer."""
    raw = bytes(client.received)

    def head_only(status):
        kinds = {h for s, h, _ in answer_set if s == status}
        assert len(kinds) <= 1, answer_set
        return kinds.pop() if kinds else False

    answer = Answer(raw, head_only)
    note("client %d (%s): %r" % (client.id, client.ending, answer))
    bodies = {b for s, _, b in answer_set if s == answer.status}
    assert bodies, "client %d got %d, expected one of %s for %r" % (
        client.id,
        answer.status,
        sorted(s for s, _, _ in answer_set),
        bytes(client.sent)[:200],
    )
    if spec is not None:
        assert answer.status in spec_statuses(spec), (spec, answer)
    assert len(bodies) == 1, bodies
    body = bodies.pop()
    assert answer.length == len(body), (answer, len(body))
    assert answer.extra == b"", "more than one answer: %r" % raw[-200:]
    if answer.complete:
        assert answer.body == (b"" if answer.head_only else body), answer
    return answer


@settings(PROFILE, max_examples=PROFILE.max_examples * 5)
@given(
    request=requests(),
    cuts=st.lists(st.floats(0, 1), max_size=6),
    ending=st.sampled_from(["read", "half", "tiny"]),
    release=st.booleans(),
)
def test_a_request_split_anywhere_gets_its_one_answer(request, cuts, ending, release):
    data, spec = request
    rig = Rig()
    try:
        client = rig.connect(data=data.replace(b"{id}", b"0000"), cuts=cuts, ending=ending)
        rig.step()  # accept
        while client.can_send():
            client.send_next()
            rig.step()
        if ending == "half":
            client.end()
        for _ in range(2000):
            if client.eof or client.reset:
                break
            rig.step()
            if release and rig.laters and rig.laters[-1].released_at is None:
                rig.release()
            elif not client.pump(2048 if ending == "tiny" else 1 << 30) and not rig.wait(
                [client.sock], 0.01
            ):
                rig.clock.now += 1.0  # nothing moves: let a deadline come
        assert client.eof or client.reset, "the server never closed the connection"
        answers = outcomes(bytes(client.sent))
        if not answers:  # incomplete: closed at the deadline (counted) or at our FIN
            assert client.received == b""
            assert rig.server.errors == (0 if ending == "half" else 1), rig.server.errors
        else:
            answer = check_answer(client, answers, spec)
            assert answer.complete, answer
            assert rig.server.errors == (answer.status in (400, 431, 500)), rig.server.errors
            if rig.laters:
                assert answer.status == (200 if release else 503), answer
        assert rig.swallowed == []
        assert rig.server.rejected == 0
        assert not rig.connections()
    finally:
        rig.close()
    assert fd_count(os.getpid()) == rig.fds_before


#: At most this many clients in one run of the machine (the listen backlog is 128).
MOST_CLIENTS = 100


class ServerMachine(RuleBasedStateMachine):
    """Clients come, send in pieces, end every way, many at once; the server
    turns with each batch in an order drawn here, and the clock jumps."""

    @initialize(
        cap=st.sampled_from([1, 2, 3, 5, httpd.MAX_CONNECTIONS]),
        sndbuf=st.sampled_from([None, 4096]),
    )
    def start(self, cap, sndbuf):
        self.rig = Rig(cap=cap, sndbuf=sndbuf, count_connections=True)

    # -- the clients' side --------------------------------------------------
    def _add(self, request, cuts, ending):
        data, spec = request
        client = self.rig.connect(data=data, cuts=cuts, ending=ending, spec=spec)
        client.data = client.data.replace(b"{id}", b"%04d" % client.id)  # same length
        client.chunks = split(client.data, cuts)

    @precondition(lambda self: len(self.rig.clients) < MOST_CLIENTS)
    @rule(
        request=requests(),
        cuts=st.lists(st.floats(0, 1), max_size=4),
        ending=st.sampled_from(ENDINGS),
    )
    def connect(self, request, cuts, ending):
        self._add(request, cuts, ending)

    @precondition(lambda self: len(self.rig.clients) < MOST_CLIENTS - 70)
    @rule(
        n=st.integers(2, 70),
        request=requests(),
        cuts=st.lists(st.floats(0, 1), max_size=2),
        endings=st.lists(st.sampled_from(ENDINGS), min_size=1, max_size=4),
        send=st.booleans(),
    )
    def burst(self, n, request, cuts, endings, send):
        """Many clients at once, the same request from each (and all sent, if `send`)."""
        for i in range(n):
            self._add(request, cuts, endings[i % len(endings)])
            if send:
                self.rig.clients[-1].send_next()

    @precondition(lambda self: any(c.can_send() for c in self.rig.clients))
    @rule(pick=st.integers(0, 1 << 16))
    def send_one(self, pick):
        senders = [c for c in self.rig.clients if c.can_send()]
        senders[pick % len(senders)].send_next()

    @precondition(lambda self: any(c.can_send() for c in self.rig.clients))
    @rule()
    def send_all(self):
        """Every client sends its next piece: a batch with many sockets ready."""
        for c in self.rig.clients:
            c.send_next()

    @precondition(lambda self: self.rig.clients)
    @rule(pick=st.integers(0, 1 << 16), everyone=st.booleans())
    def end(self, pick, everyone):
        clients = self.rig.clients
        for c in clients if everyone else [clients[pick % len(clients)]]:
            c.end()

    @precondition(lambda self: self.rig.clients)
    @rule(most=st.sampled_from([1, 100, 4096, 1 << 20]))
    def read(self, most):
        for c in self.rig.clients:
            if c.ending != "noread":
                c.pump(most if c.ending != "tiny" else min(most, 2048))

    # -- the server's side --------------------------------------------------
    @rule(order=st.randoms(use_true_random=False), release=st.booleans())
    def step(self, order, release):
        if release and self.rig.laters:
            self.rig.release()  # answers ready, and a wake-up in this very batch
        self.rig.step(lambda batch: order.sample(batch, len(batch)))

    @rule(seconds=st.sampled_from([0.5, 1.0, LATER_TIMEOUT + 0.01, httpd.DEADLINE + 0.01]))
    def advance(self, seconds):
        self.rig.clock.now += seconds

    @precondition(lambda self: self.rig.laters)
    @rule()
    def release(self):
        self.rig.release()

    # -- after every rule -----------------------------------------------------
    @invariant()
    def nothing_swallowed_and_within_bounds(self):
        if not hasattr(self, "rig"):
            return
        rig = self.rig
        assert rig.swallowed == [], "the server caught %r" % rig.swallowed
        conns = rig.connections()
        assert len(conns) <= rig.cap
        registered = {key.fileobj for key in rig.batches.get_map().values()}
        for conn in conns:
            # Open: waiting for its Pending, or watched (reading or writing).
            assert (conn.pending is not None) != (conn.sock in registered), conn
            assert conn.sock.fileno() >= 0
        assert len(registered) == 2 + sum(c.pending is None for c in conns), (
            "the selector watches something that is no open connection"
        )

    # -- the end: back to idle --------------------------------------------------
    def teardown(self):
        if not hasattr(self, "rig"):
            return
        rig = self.rig
        try:
            self._settle()
            self._check()
        finally:
            rig.close()
        assert fd_count(os.getpid()) == rig.fds_before, "the server left descriptors open"

    def _progress(self):
        """What changes whenever a turn of the server did something."""
        rig = self.rig
        return (
            sum(len(c.received) for c in rig.clients),
            [(c.eof, c.reset) for c in rig.clients],
            len(rig.connections()),
            rig.server.rejected,
            rig.server.errors,
        )

    def _settle(self):
        """Turn until every client has its answer or was let go, and nobody waits."""
        rig = self.rig
        order = random.Random(len(rig.clients))
        for _ in range(20000):
            before = self._progress()
            rig.step(lambda batch: order.sample(batch, len(batch)))
            for c in rig.clients:
                if c.ending != "noread":
                    c.pump()
            if (
                not rig.connections()
                and not rig.waiting_to_be_accepted()
                and all(c.settled() for c in rig.clients)
            ):
                break
            readers = [
                c.sock
                for c in rig.clients
                if c.reads and c.ending != "noread" and not (c.eof or c.reset)
            ]
            if self._progress() == before and not rig.wait(readers, 0.01):
                rig.clock.now += 1.0  # nothing moves: let deadlines come
        else:
            raise AssertionError(
                "not idle after 20000 turns: %d connections, %d waiting "
                "clients" % (len(rig.connections()), sum(not c.settled() for c in rig.clients))
            )
        for c in rig.clients:  # what the non-readers got, now that the server is done
            if c.ending == "noread":
                c.sock.settimeout(2)
                while not (c.eof or c.reset):
                    try:
                        chunk = c.sock.recv(65536)
                    except ConnectionResetError:
                        c.reset = True
                        break
                    c.eof = not chunk
                    c.received += chunk

    def _check_laters(self, answered):
        """Each Pending answered as its release says, by {client id: Answer} `answered`."""
        for later in self.rig.laters:
            if later.client is None or int(later.client) not in answered:
                continue
            status = answered[int(later.client)].status
            if later.released_at is None:
                assert status == 503, "an unreleased Pending answered %d" % status
            elif later.due is not None and later.released_at < later.due:
                assert status == 200, "released before its deadline, it answered %d" % status

    def _check(self):
        rig = self.rig
        silent = 0
        answered = {}
        cut = []
        for c in rig.clients:
            if not c.reads:
                continue  # it closed or reset: there was nobody to answer
            if not c.received:
                answers = outcomes(bytes(c.sent))
                if not (c.ending == "half" and c.ended and not answers):
                    silent += 1  # not its own FIN ending an unfinished request
                continue
            # Bytes after the head (sent later) may still be unread when the server
            # closes; then the kernel resets the connection and drops what the
            # client had not received yet: only a prefix of the answer is sure.
            answer = check_answer(c, outcomes(bytes(c.sent)), c.spec)
            answered[c.id] = answer
            if not (answer.complete or c.ending in ("noread", "tiny") or c.reset):
                # A reader can still be cut: evicted at the cap, or at its
                # connection's deadline while its answer was being sent
                # (the clock moved on before it read it all). Counted below.
                cut.append(answer)
        self._check_laters(answered)
        server = rig.server
        # Each client left without a word, or cut short, was rejected at the cap or
        # timed out: counted.
        assert silent + len(cut) <= server.rejected + server.errors, (
            silent,
            cut,
            server.rejected,
            server.errors,
        )
        if len(rig.clients) <= rig.cap:
            assert server.rejected == 0
        counted_errors = sum(a.status in (400, 431, 500) for a in answered.values())
        assert server.errors >= counted_errors
        # The server still answers, and every _Connection is gone once it has.
        fresh = rig.connect(data=b"GET /ok HTTP/1.1\r\n\r\n")
        exchange(rig, fresh)
        assert Answer(bytes(fresh.received), lambda status: False).status == 200, fresh.received
        assert not rig.connections() and len(rig.batches.get_map()) == 2
        for c in rig.clients:
            c.close()
        assert fd_count(os.getpid()) == rig.fds_idle, "descriptors left after every client left"
        assert live_connections() == rig.connections_before, "a _Connection outlived its client"
        assert rig.swallowed == []


@pytest.mark.timeout(scaled(60, 1800))
def test_the_server_state_machine():
    run_state_machine_as_test(ServerMachine, settings=settings(PROFILE))


# -- issue 19, one input at a time ---------------------------------------------------------


def exchange(rig, client, most=200):
    """Send what `client` has to send and turn until the server closed it."""
    for _ in range(most):
        client.send_next()
        rig.step()
        client.pump()
        if client.eof or client.reset:
            return
        rig.wait([client.sock])
    raise AssertionError("client %d: no end after %d turns" % (client.id, most))


def served(rig):
    """A fresh GET /ok gets 200 from the server: it still answers."""
    client = rig.connect(data=b"GET /ok HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    exchange(rig, client)
    return Answer(bytes(client.received), lambda status: False).status == 200


@pytest.mark.parametrize(
    "probe", [b"\r\n\r\n", b"\n\n", b"\r\n\r\n\r\n\r\n"], ids=["generic-lines", "bare-lf", "twice"]
)
def test_an_empty_request_head_is_a_400_and_the_server_answers_afterwards(probe):
    # printf '\r\n\r\n' | nc: nmap -sV's GenericLines probe ended the HTTP thread
    # (IndexError in _dispatch: lines[0] of an empty head).
    rig = Rig()
    try:
        client = rig.connect(data=probe)
        exchange(rig, client)
        answer = Answer(bytes(client.received), lambda status: False)
        assert (answer.status, answer.body) == (400, b"bad request\n"), answer
        assert rig.server.errors == 1
        assert rig.swallowed == [], "the probe raised %r inside the server" % rig.swallowed
        assert served(rig)
    finally:
        rig.close()


def test_an_eviction_in_the_same_batch_as_the_evicted_connections_own_event():
    # At the cap, a newcomer evicts the oldest unfinished connection; when that
    # one's own event came in the same select() batch, after the listener's, its
    # stale key reached _read -> _close -> unregister() of a closed socket: ValueError.
    rig = Rig()
    try:
        cap = httpd.MAX_CONNECTIONS
        partial = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        trickling = [rig.connect(data=partial) for _ in range(cap)]
        for c in trickling:
            c.send_next()
        rig.turn_until(
            lambda: (
                len(rig.connections()) == cap
                and all(conn.request == partial for conn in rig.connections())
            ),
            "%d partial requests" % cap,
        )
        assert not rig.batches.ready()
        oldest = rig.connections()[0]

        newcomer = rig.connect(data=b"GET /ok HTTP/1.1\r\n\r\n")
        trickling[0].sock.send(b"User-Agent: trickle\r\n")  # still no end of head
        for _ in range(200):  # both ready at once (loopback delivers at send; to be sure)
            ready = rig.batches.ready()
            if rig.listener in ready and oldest.sock in ready:
                break
            select.select([], [], [], 0.005)
        assert rig.listener in ready and oldest.sock in ready, ready
        seen = []

        def listener_first(batch):
            batch.sort(key=lambda item: item[0].fileobj is not rig.listener)
            seen.extend(key.fileobj for key, _ in batch)
            return batch

        rig.step(listener_first)  # raised ValueError before the fix

        assert seen[:1] == [rig.listener] and oldest.sock in seen, "not the batch meant"
        assert rig.server.rejected == 1
        assert rig.swallowed == []
        assert oldest.sock.fileno() == -1 and oldest not in rig.connections()
        assert len(rig.connections()) == cap
        trickling[0].pump()
        assert (trickling[0].eof or trickling[0].reset) and trickling[0].received == b""
        exchange(rig, newcomer)
        assert Answer(bytes(newcomer.received), lambda status: False).status == 200
        assert not [c for c in trickling[1:] if c.pump() or c.eof or c.reset], (
            "a connection other than the oldest was closed"
        )
    finally:
        rig.close()


class LoopStandIn:
    """What Metrics.heartbeat() (the loop) and _HealthCheck (the HTTP thread)
    touch of a Metrics. after_increment() runs once right after the next
    `beats += 1`: the HTTP thread's turn between the two halves of a beat."""

    server_ended = binding_over = False
    bound = None

    def __init__(self, server):
        self.server = server
        self._beats = 0
        self.beat_wanted = False
        self.after_increment = None

    @property
    def beats(self):
        return self._beats

    @beats.setter
    def beats(self, value):
        self._beats = value
        hook, self.after_increment = self.after_increment, None
        if hook:
            hook()


@contextlib.contextmanager
def healthz_rig():
    """(rig, loop stand-in, signals the checks sent) for /healthz on a fake loop."""
    signals = []
    fake_os = types.SimpleNamespace(
        getpid=os.getpid, kill=lambda pid, signum: signals.append(signum)
    )
    holder = {}
    rig = Rig(respond=lambda method, path, headers: metrics._HealthCheck(holder["loop"]))
    loop = holder["loop"] = LoopStandIn(rig.server)
    try:
        with (
            mock.patch.object(metrics, "time", rig.clock),
            mock.patch.object(metrics, "os", fake_os),
        ):
            yield rig, loop, signals
    finally:
        rig.close()


def test_healthz_is_200_when_a_beat_was_under_way_as_the_check_began():
    # /healthz read `beats` between the loop's `beats += 1` and its beat_wanted
    # check: the loop's wake-up came too early (the poll saw no new beat), the
    # next beat sent none, and the check expired with a 503, the loop alive.
    with healthz_rig() as (rig, loop, signals):
        client = rig.connect(data=b"GET /healthz HTTP/1.1\r\n\r\n")
        client.send_next()
        rig.turn_until(lambda: rig.connections(), "accept")
        for _ in range(200):  # its request in, not read yet
            if rig.connections()[0].sock in rig.batches.ready():
                break
            rig.wait(timeout=0.01)
        loop.after_increment = rig.step  # the check begins inside the beat
        metrics.Metrics.heartbeat(loop)  # a beat under way: += 1, check, wake
        assert len(rig.connections()) == 1 and rig.connections()[0].pending, (
            "the check did not begin between the two halves of the beat"
        )
        assert signals == [metrics._signal.SIGCHLD]  # it asked the loop for a beat
        rig.step()  # the early wake-up: poll() sees no beat since the check began
        assert client.received == b""
        metrics.Metrics.heartbeat(loop)  # the loop answers the SIGCHLD
        rig.step()
        client.pump()
        if not client.received:  # (before the fix: no wake-up came; at the deadline...)
            rig.clock.now += metrics.HEALTH_TIMEOUT + 0.01
            exchange(rig, client)
        answer = Answer(bytes(client.received), lambda status: False)
        assert (answer.status, answer.body) == (200, b"ok\n"), "the loop is alive: %r" % answer
        assert rig.clock.now < 1000.0 + metrics.HEALTH_TIMEOUT, "200 only at the deadline"


def test_a_pending_answer_ready_without_a_wake_gets_a_last_poll_at_its_deadline():
    rig = Rig()
    try:
        client = rig.connect(data=b"GET /later HTTP/1.1\r\n\r\n")
        client.send_next()
        rig.turn_until(lambda: rig.laters, "Pending")
        [later] = rig.laters
        later.released_at = rig.clock.now  # its answer is there, but nobody called wake()
        rig.step()
        assert client.received == b"" and rig.connections()[0].pending is later
        rig.clock.now = later.deadline
        exchange(rig, client)
        answer = Answer(bytes(client.received), lambda status: False)
        assert (answer.status, answer.body) == (200, b"later\n"), answer
    finally:
        rig.close()


def test_an_exception_while_serving_one_connection_closes_that_one_only():
    answers = {"/odd": (299, "text/plain", b"no reason phrase for this\n")}  # KeyError inside

    def respond(method, path, headers):
        return answers.get(path, (200, "text/plain", b"ok\n"))

    rig = Rig(respond=respond)
    try:
        odd = rig.connect(data=b"GET /odd HTTP/1.1\r\n\r\n")
        other = rig.connect(data=b"GET /ok HTTP/1.1\r\n\r\n")
        for _ in range(50):
            odd.send_next()
            other.send_next()
            rig.step()  # raised the KeyError out of the server before the fix
            odd.pump()
            other.pump()
            if (odd.eof or odd.reset) and other.eof:
                break
            rig.wait([odd.sock, other.sock])
        assert (odd.eof or odd.reset) and odd.received == b""
        assert Answer(bytes(other.received), lambda status: False).status == 200
        assert [type(e) for e in rig.swallowed] == [KeyError]
        assert rig.server.errors == 1 and not rig.connections()
        assert len(rig.logged) == 1 and "serving a connection failed: KeyError" in rig.logged[0]
        assert served(rig)
    finally:
        rig.close()


class Stop(BaseException):
    """Ends serve_forever() in a test (it goes on after any Exception)."""


def test_an_exception_outside_any_connection_is_counted_and_the_server_backs_off():
    rig = Rig()
    try:
        failures = iter(
            [OSError("select failed"), RuntimeError("again"), OSError("and again"), None, Stop()]
        )
        real_select = rig.batches.select

        def select_(timeout=None):
            failure = next(failures)
            if failure is not None:
                raise failure
            return real_select(timeout)

        rig.batches.select = select_
        with pytest.raises(Stop):
            rig.server.serve_forever()  # raised OSError out of the thread before the fix
        assert rig.server.errors == 3
        assert rig.clock.slept == [httpd.BACKOFF] * 3
        assert len(rig.logged) == 1 and "the server failed: OSError" in rig.logged[0], rig.logged
        del rig.batches.select
        assert served(rig)
    finally:
        rig.close()


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"], ids=["crlf", "lf"])
def test_a_head_of_max_request_bytes_is_served_however_it_arrives(eol):
    # Found by the properties above: one recv() of MAX+1 bytes cut the terminator
    # of a head of MAX-2 to MAX bytes, and the over-MAX check answered 431 (in
    # one piece; split before the terminator, the same head was served).
    statuses = set()
    for cut in (None, MAX - 100):
        rig = Rig()
        try:
            head = b"GET /ok HTTP/1.1" + eol + b"X-Pad: "
            data = head + b"p" * (MAX - len(head)) + eol + eol  # a head of MAX bytes
            client = rig.connect(data=data, cuts=[cut / len(data)] if cut else [])
            exchange(rig, client)
            statuses.add(Answer(bytes(client.received), lambda status: False).status)
        finally:
            rig.close()
    assert statuses == {200}, "the same %d-byte head got %s" % (MAX, sorted(statuses))


# -- /healthz: every interleaving of the loop and the HTTP thread ---------------------------


class Turns:
    """Runs actor threads one at a time: each waits at every point() until the
    test picks it; run() makes the picks until every actor has ended."""

    def __init__(self):
        self.cond = threading.Condition()
        self.at = {}  # actor -> the point it waits at
        self.running = None
        self.alive = set()
        self.threads = []
        self.failure = None
        self.abort = False

    def spawn(self, name, target):
        def run():
            try:
                self.point("start")
                if not self.abort:
                    target()
            except BaseException as e:  # reported by run()
                self.failure = self.failure or e
            finally:
                with self.cond:
                    self.alive.discard(name)
                    if self.running == name:
                        self.running = None
                    self.cond.notify_all()

        self.alive.add(name)
        thread = threading.Thread(target=run, name=name, daemon=True)
        self.threads.append(thread)
        thread.start()

    def point(self, label):
        name = threading.current_thread().name
        if name not in self.alive or self.abort:
            return  # the test's own thread reads freely
        with self.cond:
            self.at[name] = label
            if self.running == name:
                self.running = None
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.running == name or self.abort)
            del self.at[name]

    def run(self, options, pick, limit=2000):
        """options(at) -> the actors (or callables) that may go next; pick(list) -> one."""
        try:
            for _ in range(limit):
                with self.cond:
                    settled = self.cond.wait_for(
                        lambda: self.running is None and set(self.at) == self.alive, timeout=10
                    )
                    assert settled, "an actor neither reached a point nor ended: %r" % self.at
                    if self.failure:
                        raise self.failure
                    if not self.alive:
                        return
                    choice = pick(options(dict(self.at)))
                    if not callable(choice):
                        self.running = choice
                        self.cond.notify_all()
                        continue
                choice()
            raise AssertionError("no end after %d turns" % limit)
        finally:
            with self.cond:
                self.abort = True
                self.cond.notify_all()
            for thread in self.threads:
                thread.join(10)


def _turn_points(name, attribute):
    """A property over `attribute` whose every read and write is a point of
    self.turns first: "read NAME", "write NAME"."""

    def read(self):
        self.turns.point("read %s" % name)
        return getattr(self, attribute)

    def write(self, value):
        self.turns.point("write %s" % name)
        setattr(self, attribute, value)

    return property(read, write)


class SharedMetrics(LoopStandIn):
    """LoopStandIn whose `beats` and `beat_wanted` are points of `turns`: every
    read or write of them by the loop or the HTTP thread is a place the other
    may run first (a GIL switch may come between any two bytecodes)."""

    beats = _turn_points("beats", "_beats")
    beat_wanted = _turn_points("beat_wanted", "_wanted")

    def __init__(self, server, turns):
        self.turns = turns
        super().__init__(server)


class HealthzRace:
    """/healthz between pypause's two threads, which `turns` runs a point at a
    time. The loop: a heartbeat (metrics.Metrics.heartbeat) for each SIGCHLD,
    the first `signals` of them under way as the requests come. The HTTP
    thread: step() after step(), until `clients` checks are answered. The clock
    passes HEALTH_TIMEOUT only while the loop has nothing to do (alive means:
    it handles a SIGCHLD well within that). Who goes next is drawn from `data`
    until a budget of draws is spent. `os` stands in for metrics.os: a check's
    kill() is a SIGCHLD for the loop."""

    def __init__(self, clients, signals, data):
        self.clients, self.signals, self.data = clients, signals, data
        self.stopping = False
        self.checks = self.deadlines = self.steps = 0
        self.budget = 400
        self.turns = Turns()
        self.rig = Rig(respond=self.respond)
        self.shared = SharedMetrics(self.rig.server, self.turns)
        self.os = types.SimpleNamespace(getpid=os.getpid, kill=self.sigchld)

    def sigchld(self, pid, signum):
        self.signals += 1

    def respond(self, method, path, headers):
        self.checks += 1
        return metrics._HealthCheck(self.shared)

    def loop(self):
        while True:
            self.turns.point("wait for a signal")
            if self.stopping or self.turns.abort:
                return
            self.signals -= 1
            metrics.Metrics.heartbeat(self.shared)

    def http(self):
        while (self.checks < self.clients or self.rig.connections()) and not self.turns.abort:
            self.turns.point("step")
            self.steps += 1
            self.rig.server.step()

    def deadline(self):
        self.deadlines += 1
        self.steps = 0
        self.rig.clock.now += metrics.HEALTH_TIMEOUT + 0.01

    def options(self, at):
        """Who may go next: the loop first, then the HTTP thread (pick() takes
        the first once its budget of draws is spent)."""
        if "http" not in at:  # every client answered: the loop may stop
            self.stopping = True
            return ["loop"]
        ready = []
        if at.get("loop") not in (None, "wait for a signal") or self.signals:
            ready.append("loop")
        if at["http"] != "step":
            ready.append("http")  # inside a step (a check being made or polled)
        elif not ready and self.checks and self.rig.connections():
            # The loop is idle, a check waits, the HTTP thread is in select():
            # time may pass.
            ready += ["http", self.deadline]
        else:
            ready.append("http")
        return ready

    def pick(self, ready):
        self.budget -= 1
        if self.budget < 0:  # enough exploring: the first; time passes after a turn
            return self.deadline if self.deadline in ready and self.steps else ready[0]
        return ready[self.data.draw(st.integers(0, len(ready) - 1))]

    def run(self):
        self.turns.spawn("loop", self.loop)
        self.turns.spawn("http", self.http)
        self.turns.run(self.options, self.pick)


def healthz_requests_waiting(rig, clients):
    """`clients` clients accepted, then each one's GET /healthz in its socket,
    ready to be read: their sockets."""
    socks = [rig.connect(data=b"GET /healthz HTTP/1.1\r\n\r\n") for _ in range(clients)]
    rig.turn_until(lambda: len(rig.connections()) == clients, "accepts")
    for c in socks:
        c.send_next()
    for _ in range(200):
        if {conn.sock for conn in rig.connections()} <= set(rig.batches.ready()):
            return socks
        rig.wait(timeout=0.01)
    raise AssertionError("the requests did not arrive")


@settings(PROFILE, max_examples=PROFILE.max_examples * 5)
@given(clients=st.integers(1, 3), signals=st.integers(0, 2), data=st.data())
def test_healthz_is_200_whatever_the_interleaving_while_the_loop_is_alive(clients, signals, data):
    race = HealthzRace(clients, signals, data)
    rig = race.rig
    try:
        with (
            mock.patch.object(metrics, "time", rig.clock),
            mock.patch.object(metrics, "os", race.os),
        ):
            # Every request in its socket before the two threads start: each is
            # read at the HTTP thread's turn.
            socks = healthz_requests_waiting(rig, clients)
            race.run()
        for c in socks:
            c.pump()
            answer = Answer(bytes(c.received), lambda status: False)
            note("client %d: %r after %d deadlines" % (c.id, answer, race.deadlines))
            assert (answer.status, answer.body) == (200, b"ok\n"), (
                "the loop was alive, /healthz said %d" % answer.status
            )
        assert rig.swallowed == []
    finally:
        rig.close()
