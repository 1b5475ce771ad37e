"""The HTTP side of metrics: one thread, one selector, bounded in every way.

Why not http.server or wsgiref: they start a thread per connection (2,000 idle
connections made 2,000 threads, and under a pod's pids limit PID 1's threads
compete with the app for pids), restart an idle timer on every byte (a client
that trickles is held forever), spin when accept() has no descriptor to give,
and weigh ~5 MiB of imports in every pod. Here one thread serves every
connection, and:

- at most MAX_CONNECTIONS are open. At the cap, the one that has waited
  longest without a complete request is closed for the newcomer, so idle or
  slow clients cannot lock a scraper out;
- a connection has DEADLINE seconds from accept() to its last byte written,
  whatever it trickles;
- a request's line and headers are at most MAX_REQUEST bytes (else 431); only
  GET and HEAD are served (else 405); every response closes the connection;
- when accept() fails for want of descriptors or memory, accepting pauses for
  BACKOFF seconds instead of spinning on a listening socket that stays readable;
- what goes wrong is counted (`rejected`, `errors`) and logged at most once
  per LOG_INTERVAL;
- a bug cannot end the thread: an exception while serving a connection closes
  that connection, one outside any (select, accept, the wake-up pipe) pauses
  the server for BACKOFF seconds; both are counted and logged as above.

Idle, the thread sleeps in select() with no timeout: it wakes for a
connection, for the deadline of an open one, or when wake() is called.
"""

import errno
import os
import selectors
import socket
import time

from pypause import log

#: typing-only imports without importing typing at run time (mypy: always_true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    #: (status, content type, body)
    Response = tuple[int, str, bytes]

MAX_CONNECTIONS = 64
DEADLINE = 5.0
MAX_REQUEST = 8192
#: A head of MAX_REQUEST bytes and its terminator: what a connection may buffer.
_MAX_BUFFERED = MAX_REQUEST + len(b"\r\n\r\n")
BACKOFF = 1.0
LOG_INTERVAL = 60.0
#: accept() errors that say "not now": no descriptor or memory to give.
_SHORTAGES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Pending:
    """An answer that is not ready yet (/healthz waits for the loop).

    The server calls poll() whenever wake() is called, and expire() at
    `deadline` (time.monotonic()) if poll() has not answered by then (or at
    the connection's own deadline, if that comes first).
    """

    deadline = 0.0

    def poll(self) -> "Response | None":
        """The response (status, content type, body), or None if not ready."""
        raise NotImplementedError

    def expire(self) -> "Response":
        """The response once `deadline` has passed."""
        raise NotImplementedError


class _Connection:
    __slots__ = ("sock", "deadline", "request", "reply", "pending", "head_only", "closed")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        # Set by Server._close(): a closed connection's event may still be in
        # the batch select() returned (it was evicted by an earlier event).
        self.closed = False
        self.deadline = deadline
        self.request = bytearray()
        self.reply: bytes | None = None  # bytes still to send, once the request is answered
        self.pending: Pending | None = None  # a Pending answer being waited for
        self.head_only = False  # a HEAD request: the answer without its body


class Server:
    """Serves `respond(method, path, headers)` on `listener` from one thread.

    `respond` gets the method ("GET" or "HEAD"), the path without its query
    and the request's headers ({lower-case name: value}); it returns
    (status, content type, body bytes) or a Pending. It runs in the server's
    thread; an exception in it is a 500.
    """

    def __init__(
        self,
        listener: socket.socket,
        respond: "Callable[[str, str, dict[str, str]], Response | Pending]",
    ) -> None:
        self.listener = listener
        self.respond = respond
        self.rejected = 0  # connections closed unserved, to make room at the cap
        self.errors = 0  # accept failures, bad requests, deadlines missed, 500s
        # socket -> _Connection, oldest first
        self._connections: dict[socket.socket, _Connection] = {}
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._paused_until: float | None = None
        self._last_log: float | None = None
        self._unlogged = 0
        self._selector.register(self.listener, selectors.EVENT_READ, self._accept)
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._woken)

    def close(self) -> None:
        """Release the server's sockets and pipe; only if serve_forever() never ran."""
        self.listener.close()
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def wake(self) -> None:
        """Have the server poll its pending answers (any thread may call this)."""
        try:
            os.write(self._wake_w, b"!")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    def serve_forever(self) -> None:
        """Serve until the process ends. An exception outside any connection is
        counted and logged, and the server pauses BACKOFF seconds and goes on."""
        while True:
            try:
                self.step()
            except Exception as e:
                self.errors += 1
                self._log_limited("the server failed: %s; pausing %gs" % (described(e), BACKOFF))
                time.sleep(BACKOFF)

    def step(self) -> None:
        """Wait for what is ready (or the next deadline) and handle it: one turn."""
        for key, events in self._selector.select(self._timeout()):
            if not isinstance(key.data, _Connection):
                key.data()  # _accept or _woken
            elif not key.data.closed:
                self._guarded(key.data, self._read if events & selectors.EVENT_READ else self._send)
        self._expire()

    def _guarded(self, conn: _Connection, handle: "Callable[[_Connection], None]") -> None:
        """handle(conn); if that raises, count and log it and close conn."""
        try:
            handle(conn)
        except Exception as e:
            self.errors += 1
            self._log_limited("serving a connection failed: %s" % described(e))
            self._close(conn)

    # -- deadlines -----------------------------------------------------------
    def _timeout(self) -> "float | None":
        """Seconds until the next deadline; None (sleep until woken) if none."""
        deadlines = [c.deadline for c in self._connections.values()]
        if self._paused_until is not None:
            deadlines.append(self._paused_until)
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _expire(self) -> None:
        now = time.monotonic()
        if self._paused_until is not None and now >= self._paused_until:
            self._paused_until = None
            self._selector.register(self.listener, selectors.EVENT_READ, self._accept)
        for conn in list(self._connections.values()):
            if now >= conn.deadline and not conn.closed:
                self._guarded(conn, self._expired)

    def _expired(self, conn: _Connection) -> None:
        if conn.pending:  # a last look: its answer may have come with this very turn
            self._answer(conn, conn.pending.poll() or conn.pending.expire())
        else:
            self.errors += 1
            self._log_limited("a client did not finish within %gs" % DEADLINE)
            self._close(conn)

    def _woken(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        for conn in list(self._connections.values()):
            if conn.pending and not conn.closed:
                self._guarded(conn, self._polled)

    def _polled(self, conn: _Connection) -> None:
        answer = conn.pending.poll()  # type: ignore[union-attr]  # called only while pending
        if answer is not None:
            self._answer(conn, answer)

    # -- connections -----------------------------------------------------------
    def _accept(self) -> None:
        for _ in range(MAX_CONNECTIONS):  # a burst, but not forever: others wait too
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as e:
                self.errors += 1
                if e.errno in _SHORTAGES:
                    self._selector.unregister(self.listener)
                    self._paused_until = time.monotonic() + BACKOFF
                    self._log_limited(
                        "cannot accept connections: %s; pausing %gs" % (e.strerror, BACKOFF)
                    )
                    return
                self._log_limited("accept failed: %s" % e.strerror)  # ECONNABORTED and the like
                continue
            if len(self._connections) >= MAX_CONNECTIONS and not self._make_room():
                self.rejected += 1
                sock.close()
                continue
            sock.setblocking(False)
            conn = _Connection(sock, time.monotonic() + DEADLINE)
            self._connections[sock] = conn
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _make_room(self) -> bool:
        """Close the oldest connection still sending its request; False if none is."""
        for conn in self._connections.values():
            if conn.reply is None and conn.pending is None:
                self.rejected += 1
                self._log_limited(
                    "more than %d connections: closed the oldest unfinished one" % MAX_CONNECTIONS
                )
                self._close(conn)
                return True
        return False

    def _read(self, conn: _Connection) -> None:
        try:  # never more than a whole head and its terminator
            data = conn.sock.recv(_MAX_BUFFERED - len(conn.request))
        except OSError:  # ECONNRESET and the like: the client is gone
            data = b""
        if not data:
            self._close(conn)
            return
        conn.request += data
        end = conn.request.find(b"\r\n\r\n")
        if end < 0:
            end = conn.request.find(b"\n\n")  # bare LFs, as a hand-typed request has
        if end < 0 and len(conn.request) < _MAX_BUFFERED:
            return  # more to come
        if end < 0 or end > MAX_REQUEST:
            self.errors += 1
            self._log_limited("a request over %d bytes" % MAX_REQUEST)
            self._answer(conn, (431, "text/plain", b"request too large\n"))
            return
        self._selector.unregister(conn.sock)  # nothing more to read; reply registers again
        self._dispatch(conn, bytes(conn.request[:end]))

    def _dispatch(self, conn: _Connection, head: bytes) -> None:
        lines = head.decode("latin-1").splitlines() or [""]  # an empty head: malformed
        words = lines[0].split(" ")
        if len(words) != 3 or not words[2].startswith("HTTP/"):
            self.errors += 1
            self._log_limited("a malformed request")
            self._answer(conn, (400, "text/plain", b"bad request\n"))
            return
        method, target = words[0], words[1]
        conn.head_only = method == "HEAD"
        if method not in ("GET", "HEAD"):
            self._answer(conn, (405, "text/plain", b"only GET and HEAD\n"))
            return
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        try:
            answer = self.respond(method, target.partition("?")[0], headers)
        except Exception as e:
            self.errors += 1
            self._log_limited("answering %s failed: %r" % (target[:64], e))
            answer = (500, "text/plain", b"internal error\n")
        if isinstance(answer, Pending):
            conn.pending = answer
            conn.deadline = min(conn.deadline, answer.deadline)
        else:
            self._answer(conn, answer)

    def _answer(self, conn: _Connection, answer: "Response") -> None:
        status, content_type, body = answer
        allow = "Allow: GET, HEAD\r\n" if status == 405 else ""
        head = (
            "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s"
            "Connection: close\r\n\r\n" % (status, _REASONS[status], content_type, len(body), allow)
        ).encode("latin-1")
        conn.pending = None
        conn.reply = head if conn.head_only else head + body
        try:
            self._selector.modify(conn.sock, selectors.EVENT_WRITE, conn)
        except KeyError:  # not registered while its answer was being made
            self._selector.register(conn.sock, selectors.EVENT_WRITE, conn)
        self._send(conn)

    def _send(self, conn: _Connection) -> None:
        # Called only once conn.reply is set (the type: ignores).
        try:
            sent = conn.sock.send(conn.reply, socket.MSG_NOSIGNAL)  # type: ignore[arg-type]
        except BlockingIOError:
            return
        except OSError:  # EPIPE, ECONNRESET: the client left
            self._close(conn)
            return
        conn.reply = conn.reply[sent:]  # type: ignore[index]
        if not conn.reply:
            self._close(conn)

    def _close(self, conn: _Connection) -> None:
        """Close conn and forget it at once, whatever is left in this turn's batch."""
        if conn.closed:
            return
        conn.closed = True
        self._connections.pop(conn.sock, None)
        try:
            self._selector.unregister(conn.sock)
        except (KeyError, ValueError):  # not registered: waiting for a Pending answer
            pass
        conn.sock.close()

    # -- failures ----------------------------------------------------------------
    def _log_limited(self, what: str) -> None:
        """Log `what` unless a line was written within LOG_INTERVAL (then count it)."""
        now = time.monotonic()
        if self._last_log is not None and now - self._last_log < LOG_INTERVAL:
            self._unlogged += 1
            return
        more = (" (and %d more since the last line)" % self._unlogged) if self._unlogged else ""
        log.warning(
            "metrics: %s%s; counted in pypause_metrics_*_total, logged at most "
            "once a minute" % (what, more)
        )
        self._last_log = now
        self._unlogged = 0


def described(e: BaseException) -> str:
    """An exception's type and where it was raised: "IndexError at httpd.py:312 in _dispatch"."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return type(e).__name__
    code = tb.tb_frame.f_code
    return "%s at %s:%d in %s" % (
        type(e).__name__,
        os.path.basename(code.co_filename),
        tb.tb_lineno,
        code.co_name,
    )
