"""The metrics HTTP server under abuse: few threads, bounded connections with
deadlines, eviction at the cap, EMFILE back-off, dual-stack by default, strict
HTTP (431, 405, Connection: close), zero-initialised series.

Black-box: pypause runs as the installed command; its threads, memory, CPU and
file descriptors are read from /proc, and it is spoken to over loopback (or
inside a network namespace made here).
"""

import errno
import html.parser
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.support.http import get_inside, port_from, url
from tests.support.http import http_get as get
from tests.support.http import metric_samples as samples
from tests.support.http import metric_value as value
from tests.support.proc import (
    accept_queue,
    children,
    cpu_ns,
    fd_count,
    ipv6_addresses,
    namespace,
    rss_kib,
    thread_count,
)
from tests.support.running import PYPAUSE, helper, wait_for, wait_until_idle

pytestmark = pytest.mark.timeout(60)

#: What the spec promises, and the slack these tests allow around it.
MAX_THREADS = 2  # the main loop and one metrics thread
CAP = 64  # open client connections
DEADLINE = 5.0  # seconds from accept to the end of the response
HEADER_CAP = 8192  # request line + headers

REJECTED = "pypause_metrics_connections_rejected_total"
ERRORS = "pypause_metrics_errors_total"


# -- fixtures -----------------------------------------------------------------


@pytest.fixture
def sockets():
    """A list the test puts its client sockets in; every one is closed afterwards."""
    held = []
    yield held
    for s in held:
        s.close()


@pytest.fixture
def nofile():
    """nofile(n): raise this process's soft RLIMIT_NOFILE to at least n (restored after)."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)

    def need(n):
        soft, hard = before
        if soft != resource.RLIM_INFINITY and soft < n:
            if hard != resource.RLIM_INFINITY and hard < n:
                pytest.skip("RLIMIT_NOFILE hard limit %d < %d fds needed" % (hard, n))
            resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))

    yield need
    resource.setrlimit(resource.RLIMIT_NOFILE, before)


# -- starting pypause ------------------------------------------------------------


def start(procs, addr="127.0.0.1:0", command=(), **kwargs):
    """pypause --metrics-addr ADDR [-- COMMAND]: return (Popen, port)."""
    argv = [PYPAUSE, "--metrics-addr", addr] + (["--", *command] if command else [])
    kwargs.setdefault("stderr", subprocess.PIPE)
    p = procs(argv, **kwargs)
    return p, port_from(p.stderr)


def stop_and_read_stderr(p):
    """SIGTERM the pypause we started (pause mode), reap it, and return the
    stderr lines it wrote after the "serving metrics" line, shutdown line aside."""
    if p.poll() is None:
        os.kill(p.pid, signal.SIGTERM)
    p.wait(10)
    rest = p.stderr.read().decode(errors="replace")
    return [line for line in rest.splitlines() if "Shutting down" not in line]


# -- HTTP, as a scraper and as a raw client ------------------------------------


class Response:
    def __init__(self, raw, closed):
        self.raw = raw
        self.closed = closed  # the server closed the connection (EOF or reset)
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        words = lines[0].split()
        self.status = int(words[1]) if len(words) > 1 and words[1].isdigit() else None
        self.headers = {}
        for line in lines[1:]:
            name, _, text = line.partition(":")
            self.headers[name.strip().lower()] = text.strip()

    def __repr__(self):
        return "Response(%r, closed=%r)" % (self.raw[:300], self.closed)


def exchange(port, data, host="127.0.0.1", timeout=5):
    """Send `data` on a fresh connection, read until the server closes it (or
    `timeout` passes): the Response."""
    chunks, closed = [], False
    with socket.create_connection((host, port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before it read everything
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            chunks.append(chunk)
    return Response(b"".join(chunks), closed)


def request(method, path, *headers):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# -- many client connections ------------------------------------------------------


def open_idle(port, n, held, host="127.0.0.1", batch=25, timeout=10, established=True):
    """Open `n` connections that send nothing, `batch` SYNs at a time, into `held`.

    With `established`, wait until each batch's handshake is done (a SYN dropped
    on a full backlog is retried by the kernel) and fail if one is not.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    opened = []
    for first in range(0, n, batch):
        pending = {}
        for _ in range(min(batch, n - first)):
            s = socket.socket(family, socket.SOCK_STREAM)
            held.append(s)
            opened.append(s)
            s.setblocking(False)
            s.connect_ex((host, port))
            pending[s.fileno()] = s
        if not established:
            continue
        poller = select.poll()
        for fd in pending:
            poller.register(fd, select.POLLOUT)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for fd, _ in poller.poll(50):
                poller.unregister(fd)
                s = pending.pop(fd)
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                # (a reset: the server accepted and already closed it, fine here)
                assert err in (0, errno.ECONNRESET), "connect failed: %s" % os.strerror(err)
        assert not pending, "%d connections not established in %d s" % (len(pending), timeout)
    return opened


def closed_by_server(s):
    """True if the server closed `s` (EOF or reset); False if it is still open.

    Whatever the server sent before closing (an error response) is read and dropped.
    """
    while True:
        try:
            data = s.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        if not data:
            return True


def wait_closed(socks, timeout, what):
    """Wait until the server has closed every socket of `socks`; return
    {socket: monotonic time its closing was seen}."""
    seen = {}
    poller = select.poll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout
    while len(seen) < len(by_fd):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(
                "timed out waiting for %s: %d of %d still open after %.1f s"
                % (what, len(by_fd) - len(seen), len(by_fd), timeout)
            )
        for fd, _ in poller.poll(min(left, 0.1) * 1000):
            s = by_fd[fd]
            if closed_by_server(s):
                seen[s] = time.monotonic()
                poller.unregister(fd)
    return seen


def trickle(socks, data, interval, end):
    """Send `data` on every socket of `socks`, a byte every `interval` seconds,
    until the server has closed them all or time.monotonic() reaches `end`:
    ({socket: monotonic time its closing was seen}, bytes sent on each)."""
    closed = {}
    poller = select.poll()
    for s in socks:
        poller.register(s, select.POLLIN)
    by_fd = {s.fileno(): s for s in socks}
    sent = 0
    next_byte = time.monotonic()
    while len(closed) < len(socks) and time.monotonic() < end:
        now = time.monotonic()
        if now >= next_byte and sent < len(data):
            for s in socks:
                if s not in closed:
                    try:
                        s.send(data[sent : sent + 1])
                    except (BrokenPipeError, ConnectionResetError):
                        closed[s] = time.monotonic()
            sent += 1
            next_byte += interval
        wait_ms = max(0.0, min(next_byte, end) - time.monotonic()) * 1000
        for fd, _ in poller.poll(wait_ms):
            s = by_fd[fd]
            if s not in closed and closed_by_server(s):
                closed[s] = time.monotonic()
                poller.unregister(fd)
    return closed, sent


# -- a. many idle connections cost neither threads nor memory -----------------


def test_a_thousand_idle_connections_cost_no_threads_and_little_memory(procs, sockets, nofile):
    nofile(1000 + 200)
    p, port = start(procs)
    # Warm up: the first scrape and /healthz import and allocate what they need.
    assert get(port)[0] == 200 and get(port, "/healthz")[0] == 200
    wait_until_idle(p.pid)
    rss0 = rss_kib(p.pid)
    most_threads, most_rss = thread_count(p.pid), rss0

    t0 = time.monotonic()
    for _ in range(40):  # 40 x 25 = 1000
        open_idle(port, 25, sockets)
        most_threads = max(most_threads, thread_count(p.pid))
        most_rss = max(most_rss, rss_kib(p.pid))
    opened_in = time.monotonic() - t0
    last_opened = time.monotonic()

    # A real scrape while every idle connection is still held from here.
    t1 = time.monotonic()
    status, _, text = get(port, timeout=10)
    took = time.monotonic() - t1
    most_threads = max(most_threads, thread_count(p.pid))
    most_rss = max(most_rss, rss_kib(p.pid))

    assert most_threads <= MAX_THREADS, (
        "pypause ran %d threads for 1000 idle connections" % most_threads
    )
    assert most_rss - rss0 < 4096, "VmRSS grew by %d KiB (from %d KiB)" % (most_rss - rss0, rss0)
    assert status == 200 and "pypause_info" in text
    assert took < 2, "a scrape among 1000 idle connections took %.2f s" % took
    # The server closes every one of them by itself: evicted at the cap, or at
    # the latest when the deadline of the last ones passes.
    closed = wait_closed(
        sockets,
        timeout=max(1.0, last_opened + DEADLINE + 3 - time.monotonic()),
        what="pypause to close the 1000 idle connections",
    )
    assert len(closed) == 1000
    lines = stop_and_read_stderr(p)
    assert len(lines) <= 5, "%d stderr lines for 1000 idle connections (opened in %.1f s): %r" % (
        len(lines),
        opened_in,
        lines[:10],
    )


# -- b. slow clients are closed at their deadline ------------------------------


def test_clients_trickling_a_request_are_closed_at_the_deadline(procs):
    p, port = start(procs)
    # 62 bytes at 2 bytes a second: 31 s to send, never complete within the test.
    line = request("GET", "/metrics", "User-Agent: trickle-trickle-trickle")
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(20)]
    opened = {s: time.monotonic() for s in socks}
    scrape = {}

    def scrape_meanwhile():
        t0 = time.monotonic()
        scrape["status"] = get(port, "/metrics", timeout=10)[0]
        scrape["took"] = time.monotonic() - t0

    scraper = threading.Timer(1.0, scrape_meanwhile)
    try:
        scraper.start()
        closed, sent = trickle(socks, line, 0.5, min(opened.values()) + DEADLINE + 3)
        scraper.join(15)
    finally:
        scraper.cancel()
        for s in socks:
            s.close()

    assert len(closed) == len(socks), (
        "%d of 20 trickling clients still open %.1f s after "
        "they connected (%d bytes sent each)" % (len(socks) - len(closed), DEADLINE + 3, sent)
    )
    lived = sorted(closed[s] - opened[s] for s in socks)
    # A deadline from accept, not an idle timer, and not earlier than it either.
    assert lived[0] >= DEADLINE - 1, "closed after only %.1f s" % lived[0]
    assert sent < len(line)  # none of them ever completed its request
    assert scrape.get("status") == 200 and scrape["took"] < 2, scrape
    # Expired deadlines are counted as errors, and logged once, not 20 times.
    wait_for(
        lambda: (value(samples(port), ERRORS) or 0) >= 20,
        timeout=3,
        what="%s to count the 20 expired deadlines" % ERRORS,
    )
    lines = stop_and_read_stderr(p)
    assert len(lines) <= 1, "20 expired deadlines logged as %d lines: %r" % (len(lines), lines)


# -- c. connections take no pids from the app -----------------------------------

FORKER = r"""
import os, sys
sys.stdin.readline()
failures = 0
for _ in range(200):
    try:
        pid = os.fork()
    except OSError:
        failures += 1
        continue
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
print("failures %d" % failures, flush=True)
"""


def test_a_connection_flood_takes_no_pids_from_the_app(pids_cgroup, procs, sockets, nofile):
    nofile(300 + 200)
    pids_cgroup.set_max(48)
    p = procs(
        pids_cgroup.enter_argv(
            [PYPAUSE, "--metrics-addr", "127.0.0.1:0", "--", sys.executable, "-c", FORKER]
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    port = port_from(p.stderr)  # sh execs pypause: p.pid is pypause
    assert get(port, "/healthz")[0] == 200
    # 300 connections opened and held, and every one accept()ed by pypause
    # before the app forks: then the server has done what it does with them.
    open_idle(port, 300, sockets)
    wait_for(
        lambda: accept_queue(p.pid) == 0,
        timeout=10,
        what="pypause to accept every pending connection",
    )
    most_threads = thread_count(p.pid)
    p.stdin.write(b"go\n")
    p.stdin.flush()
    out = p.stdout.readline().decode()
    most_threads = max(most_threads, thread_count(p.pid))
    assert out.startswith("failures "), "the app said %r" % out
    assert int(out.split()[1]) == 0, (
        "%d of 200 forks failed under pids.max 48 with a "
        "connection flood (pids.events max %d, pypause threads up to %d)"
        % (int(out.split()[1]), pids_cgroup.max_events(), most_threads)
    )
    p.stdin.close()
    assert p.wait(10) == 0


# -- d, e. dual-stack by default ----------------------------------------------------


def _ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1) here")
def test_a_bare_port_answers_on_ipv4_and_ipv6(procs):
    _, port = start(procs, addr="0")
    status4, _, body4 = get(port, "/healthz", host="127.0.0.1")
    try:
        status6, _, body6 = get(port, "/healthz", host="::1")
    except urllib.error.URLError as e:
        raise AssertionError(
            "a bare --metrics-addr port does not answer on [::1]: %s" % e.reason
        ) from None
    assert (status4, body4) == (200, "ok\n")
    assert (status6, body6) == (200, "ok\n")


def _netns_problem():
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            return "%s(8) is not installed" % tool
    r = subprocess.run(["unshare", "--net", "true"], capture_output=True)
    if r.returncode:
        return "unshare --net not permitted: %s" % r.stderr.decode().strip()
    return None


NETNS_PROBLEM = _netns_problem()

DISABLE_IPV6 = r"""
ip link set lo up || exit 97
if [ -d /proc/sys/net/ipv6 ]; then
    for c in all default lo; do
        echo 1 > /proc/sys/net/ipv6/conf/$c/disable_ipv6 || exit 98
    done
fi
exec "$@"
"""


@pytest.mark.skipif(NETNS_PROBLEM is not None, reason=NETNS_PROBLEM or "")
def test_a_bare_port_serves_ipv4_where_ipv6_is_disabled(procs):
    # unshare (no --fork) execs sh, which execs pypause: p.pid is pypause, in
    # a network namespace of its own that goes away with it.
    p = procs(
        ["unshare", "--net", "sh", "-c", DISABLE_IPV6, "sh", PYPAUSE, "--metrics-addr", "0"],
        stderr=subprocess.PIPE,
    )
    port = port_from(p.stderr)
    assert namespace(p.pid, "net") != namespace(os.getpid(), "net")
    # The namespace really has no IPv6 (else this test proves nothing).
    assert ipv6_addresses(p.pid) == []
    inside = ["nsenter", "--net=/proc/%d/ns/net" % p.pid]
    assert get_inside(inside, port, "/healthz", host="::1") is None
    status, _, body = get_inside(inside, port, "/healthz")
    assert (status, body) == (200, "ok\n")


# -- f. zero-initialised series -----------------------------------------------------

N_ORPHANS = 20


@pytest.fixture
def init_waiting_for_go(procs):
    """pypause in init mode whose child, on "go", leaves N_ORPHANS `sleep` orphans
    and stays until stdin closes; returns (proc, port) before any reap."""
    p, port = start(
        procs,
        command=[
            "sh",
            "-c",
            'read go && exec "$@"',
            "sh",
            *helper("orphans", N_ORPHANS, "--sleep", 0.1, "--stay"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    return p, port


def _go(p):
    p.stdin.write(b"go\n")
    p.stdin.flush()
    assert p.stdout.readline() == b"orphaned\n"


def test_series_exist_at_zero_then_count_orphans(init_waiting_for_go):
    p, port = init_waiting_for_go
    got = samples(port)
    assert value(got, "pypause_zombies_reaped_total") == 0, (
        "no unlabelled pypause_zombies_reaped_total at 0 before any reap: %r"
        % sorted(k for k in got if "reaped" in k[0])
    )
    assert value(got, "pypause_signals_received_total", signal="SIGTERM") == 0
    assert value(got, "pypause_signals_received_total", signal="SIGINT") == 0
    assert value(got, REJECTED) == 0
    assert value(got, ERRORS) == 0
    assert not [k for k in got if k[0] == "pypause_zombies_reaped_by_comm_total"]

    _go(p)
    wait_for(
        lambda: value(samples(port), "pypause_zombies_reaped_total") == N_ORPHANS,
        what="%d orphans counted" % N_ORPHANS,
    )
    got = samples(port)
    assert value(got, "pypause_zombies_reaped_by_comm_total", comm="sleep") == N_ORPHANS
    assert value(got, "pypause_signals_received_total", signal="SIGTERM") == 0
    p.stdin.close()
    assert p.wait(10) == 0


def promtool_problems(text):
    r = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=20
    )
    return (
        None
        if r.returncode == 0 and r.stdout + r.stderr == ""
        else "exit %d: %s" % (r.returncode, r.stdout + r.stderr)
    )


@pytest.mark.skipif(
    not shutil.which("promtool"), reason="promtool (Debian package prometheus) not installed"
)
def test_promtool_accepts_scrapes_before_and_after_reaping(init_waiting_for_go):
    p, port = init_waiting_for_go
    status, _, before = get(port)
    assert status == 200
    assert promtool_problems(before) is None, promtool_problems(before)
    _go(p)
    # Reaped, as /proc shows: only the main child is left.
    wait_for(lambda: len(children(p.pid)) == 1, what="the %d orphans to be reaped" % N_ORPHANS)
    status, _, after = get(port)
    assert status == 200 and 'comm="sleep"' in after
    assert promtool_problems(after) is None, promtool_problems(after)


# -- g. HTTP: methods, limits, paths, Connection: close ------------------------------


@pytest.fixture
def server(procs):
    """(proc, port) of a pypause in pause mode with metrics on loopback."""
    return start(procs)


def test_an_oversized_header_is_431_and_closed(server):
    _, port = server
    big = request("GET", "/metrics", "X-Padding: " + "a" * 9 * 1024)
    assert len(big) > HEADER_CAP
    r = exchange(port, big)
    assert r.status == 431, r
    assert r.closed, r
    # Just under the cap is served.
    fits = request("GET", "/metrics", "X-Padding: " + "a" * 7 * 1024)
    assert len(fits) < HEADER_CAP
    assert exchange(port, fits).status == 200


@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/metrics"),
        ("PUT", "/metrics"),
        ("DELETE", "/metrics"),
        ("POST", "/healthz"),
        ("POST", "/"),
    ],
)
def test_other_methods_than_get_and_head_are_405(server, method, path):
    _, port = server
    r = exchange(port, request(method, path, "Content-Length: 0"))
    assert r.status == 405, r
    assert r.closed, r


@pytest.mark.parametrize("path", ["/metrics", "/healthz"])  # /healthz: answered later
def test_head_is_served_without_a_body(server, path):
    _, port = server
    r = exchange(port, request("HEAD", path))
    assert r.status == 200, r
    assert r.body == b"", r
    assert r.closed, r


def test_a_request_with_bare_line_feeds_is_answered(server):
    _, port = server  # as typed by hand into nc: HTTP allows a recipient to accept it
    r = exchange(port, b"GET /healthz HTTP/1.0\n\n")
    assert (r.status, r.body) == (200, b"ok\n"), r


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs.extend(v for k, v in attrs if k == "href" and v)


def test_root_is_a_page_linking_metrics_and_healthz(server):
    _, port = server
    status, headers, body = get(port, "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    links = _Links()
    links.feed(body)
    base = url("127.0.0.1", port, "/")
    paths = {urllib.parse.urlsplit(urllib.parse.urljoin(base, h)).path for h in links.hrefs}
    assert {"/metrics", "/healthz"} <= paths, links.hrefs


@pytest.mark.parametrize("path", ["/metricsx", "/favicon.ico", "/healthz/x", "/metrics/x"])
def test_other_paths_are_404(server, path):
    _, port = server
    assert get(port, path)[0] == 404


@pytest.mark.parametrize(
    "path, status, body_start",
    [
        ("/metrics", 200, b"# HELP"),
        ("/healthz", 200, b"ok"),
        ("/", 200, b""),
        ("/nope", 404, b""),
    ],
)
def test_every_response_says_connection_close_and_closes(server, path, status, body_start):
    _, port = server
    # HTTP/1.1 with no Connection header: keep-alive unless the server says close.
    r = exchange(port, request("GET", path))
    assert r.status == status, r
    assert r.headers.get("connection", "").lower() == "close", r
    assert r.body.startswith(body_start), r
    assert r.closed, "the server kept the connection open after its response"


def test_openmetrics_only_when_asked_for(server):
    _, port = server
    _, headers, text = get(port)
    assert headers["Content-Type"].startswith("text/plain")
    _, headers, text = get(port, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n")


# -- h. EMFILE: back off, do not spin -------------------------------------------------


def _nofile_24():
    resource.setrlimit(resource.RLIMIT_NOFILE, (24, 24))


def test_out_of_fds_the_server_backs_off_instead_of_spinning(procs, sockets):
    p, port = start(procs, preexec_fn=_nofile_24)
    wait_until_idle(p.pid)
    open_idle(port, 40, sockets, established=False)
    # The server accepts until it has no fd left: accept() now fails with EMFILE.
    wait_for(
        lambda: fd_count(p.pid) >= 24,
        timeout=10,
        what="pypause to use its 24 fds (it has %d)" % fd_count(p.pid),
    )
    cpu0, t0 = cpu_ns(p.pid) / 1e9, time.monotonic()
    wait_for(lambda: time.monotonic() - t0 >= 3, timeout=5, interval=0.1, what="3 s to pass")
    used = cpu_ns(p.pid) / 1e9 - cpu0
    assert used < 0.5, "pypause used %.2f s of CPU in %.1f s out of fds" % (
        used,
        time.monotonic() - t0,
    )
    # Once fds are free again it serves, and it counted the failed accepts.
    for s in sockets:
        s.close()
    wait_for(
        lambda: _status(port, "/healthz") == 200,
        timeout=DEADLINE + 3,
        what="pypause to serve again once the idle connections are gone",
    )
    assert (value(samples(port), ERRORS) or 0) >= 1


def _status(port, path):
    try:
        return get(port, path, timeout=2)[0]
    except OSError:
        return None


# -- i. at the cap, the oldest idle connection makes room ------------------------------


def test_at_the_cap_the_oldest_idle_connection_makes_room_for_a_scrape(server, sockets):
    p, port = server
    # Warm up, and read to EOF: the server has closed its side, fds0 counts no client.
    warm = exchange(port, request("GET", "/metrics"))
    assert warm.status == 200 and warm.closed
    wait_until_idle(p.pid)
    fds0 = fd_count(p.pid)
    idle = open_idle(port, CAP, sockets)
    first_opened = time.monotonic()
    wait_for(
        lambda: fd_count(p.pid) >= fds0 + CAP,
        timeout=3,
        what="pypause to accept the %d idle connections" % CAP,
    )

    t0 = time.monotonic()
    status, _, text = get(port, timeout=DEADLINE + 5)
    took = time.monotonic() - t0
    assert status == 200 and "pypause_info" in text
    assert took < 1, "a scrape at the cap took %.2f s" % took
    # The one evicted is the oldest, and well before its own deadline.
    closed_first = wait_closed(idle[:1], timeout=1, what="the oldest idle connection to be evicted")
    assert closed_first[idle[0]] - first_opened < DEADLINE - 1
    assert not [s for s in idle[-CAP // 2 :] if closed_by_server(s)], (
        "newer idle connections were closed instead of (or with) the oldest"
    )
    assert (value(samples(port), REJECTED) or 0) >= 1
