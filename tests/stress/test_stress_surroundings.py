"""Broken surroundings: closed stdio, a stderr nobody reads, no /proc, a
read-only root without a writable /tmp. PID 1 must go on in each."""

import fcntl
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from tests.stress.stress_support import (
    Lines,
    echo_child,
    measured,
    pypause_running_storm_maker,
    reaps_logged,
    scaled,
    storm,
)
from tests.support.http import free_port, port_from
from tests.support.http import http_get as get
from tests.support.http import metric_samples as samples
from tests.support.http import metric_value as value
from tests.support.proc import children, fd_flags, stat, syscall, thread_count
from tests.support.running import (
    HELPERS,
    PRIVATE_MOUNTS,
    PYPAUSE,
    WITHOUT_PROC,
    needs_pidns,
    wait_for,
    wait_until_idle,
)

SIGNALS = scaled(2000, 10000)
MARKER = signal.SIGRTMAX
MIX = [
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGHUP,
    signal.SIGWINCH,
    signal.SIGURG,
    signal.SIGALRM,
    signal.SIGCONT,
    signal.SIGRTMIN,
    signal.SIGRTMIN + 1,
]


def _healthy(port):
    try:
        return get(port, "/healthz", timeout=2)[0] == 200
    except OSError:
        return False


def _signal_bursts(pid, out, total, seed=3):
    """Send `total` signals to `pid` in bursts, each confirmed by MARKER reaching
    the echo child (whose stdout `out` collects). Returns the number of bursts."""
    rng = random.Random(seed)
    sent = bursts = 0
    while sent < total:
        burst = [rng.choice(MIX) for _ in range(rng.randint(1, 100))]
        for signum in burst:
            os.kill(pid, signum)
        os.kill(pid, MARKER)
        sent += len(burst) + 1
        bursts += 1
        out.wait(
            lambda lines: lines.count(str(MARKER)) == bursts,
            timeout=10,
            what="burst %d to get through" % bursts,
        )
    return bursts


# -- stdin, stdout and stderr closed -----------------------------------------


@pytest.mark.timeout(60)
def test_closed_stdio_neither_kills_pypause_nor_leaks_into_the_child(procs, tmp_path):
    port = free_port()
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    report = tmp_path / "report.json"
    orphans = 300
    script = (
        '"$0" "$1" && "$0" "$2" %d --spawn --late --batch 100 && read x < "$3"; exit 6' % orphans
    )
    p = procs(
        [
            "sh",
            "-c",
            'exec "$@" <&- >&- 2>&-',
            "sh",
            PYPAUSE,
            "-vv",
            "--metrics-addr",
            "127.0.0.1:%d" % port,
            "--",
            "sh",
            "-c",
            script,
            sys.executable,
            os.path.join(HELPERS, "report.py"),
            os.path.join(HELPERS, "orphans.py"),
            str(fifo),
        ],
        env={**os.environ, "REPORT_TO": str(report)},
    )
    wait_for(lambda: _healthy(port), what="metrics to be served")
    # -vv: a log line per signal and per orphan, all to a closed stderr.
    for i in range(SIGNALS):
        os.kill(p.pid, (signal.SIGWINCH, signal.SIGURG, signal.SIGCHLD)[i % 3])
    wait_for(lambda: _reaped(port) == orphans, what="every orphan counted")
    with open(fifo, "w") as f:
        f.write("go\n")
    assert p.wait(10) == 6
    # The child got stdio as closed as pypause did (pypause's placeholders are close-on-exec).
    assert json.loads(report.read_text())["stdio_open"] == [False, False, False]


def _reaped(port):
    got = samples(port)
    return sum(v for (name, _), v in got.items() if name == "pypause_zombies_reaped_total")


# -- stderr that does not take what is written --------------------------------


def _fill(fd):
    """Write to `fd` until it would block; leave it blocking."""
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except BlockingIOError:
        pass
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)


def _full_pipe():
    """A pipe whose buffer is full: (read end, write end), the write end blocking."""
    r, w = os.pipe()
    _fill(w)
    return r, w


@pytest.mark.parametrize("kind", ["full pipe", "pipe without reader", "socket nobody reads"])
@pytest.mark.timeout(scaled(90, 300))
def test_stderr_that_takes_nothing_never_blocks_pypause(procs, kind):
    reader = None
    if kind == "full pipe":
        reader, w = _full_pipe()
    elif kind == "pipe without reader":
        r, w = os.pipe()
        os.close(r)
    else:
        # As a stuck log collector (journald takes stderr on a stream socket)
        reader, peer = socket.socketpair()
        w = os.dup(peer.fileno())
        peer.close()
        _fill(w)
    port = free_port()
    try:
        p = procs(
            [
                PYPAUSE,
                "-vv",
                "--metrics-addr",
                "127.0.0.1:%d" % port,
                "--",
                *echo_child(9),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=w,
        )
    finally:
        os.close(w)
    out = Lines(p.stdout)
    out.wait(lambda lines: "ready" in lines, what="the child to be ready")
    wait_for(lambda: _healthy(port), what="metrics to be served")
    child = children(p.pid)[0]

    t0 = time.monotonic()
    bursts = _signal_bursts(p.pid, out, SIGNALS)
    took = time.monotonic() - t0
    assert _healthy(port)
    got = samples(port)
    forwarded = sum(v for (name, _), v in got.items() if name == "pypause_signals_forwarded_total")
    dropped = value(got, "pypause_log_lines_dropped_total")
    # -vv logs every forward; none of those lines could be written.
    assert dropped >= forwarded >= bursts

    # fd 2 is one open file shared by pypause and its child: never made non-blocking.
    assert not fd_flags(p.pid, 2) & os.O_NONBLOCK
    assert not fd_flags(child, 2) & os.O_NONBLOCK
    p.stdin.write(b"flags\n")
    p.stdin.flush()
    flags = out.wait(
        lambda lines: [l for l in lines if l and l.startswith("flags ")], what="the child's flags"
    )[0]
    assert not int(flags.split()[1], 8) & os.O_NONBLOCK

    if kind == "full pipe":
        # Once someone reads, the child's own writes to the shared stderr go
        # through (blocking, never EAGAIN), and pypause's lines come back.
        drained = []
        drain = threading.Thread(
            target=lambda: drained.extend(iter(lambda: os.read(reader, 65536), b""))
        )
        drain.start()
        p.stdin.write(b"write 262144\n")
        p.stdin.flush()
        assert (
            out.wait(
                lambda lines: [l for l in lines if l and l.startswith(("wrote", "error"))],
                what="the child's write",
            )[0]
            == "wrote 262144"
        )
        # Once the pipe is empty again, pypause's next line goes through.
        wait_for(lambda: b"".join(drained).count(b"e") >= 262144, what="the pipe to be drained")
        os.kill(p.pid, signal.SIGUSR2)
        wait_for(
            lambda: b"forwarded signal signal=SIGUSR2" in b"".join(drained),
            what="pypause to log again",
        )
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(10) == 9
    if reader is not None:
        (os.close if isinstance(reader, int) else socket.socket.close)(reader)
    measured(
        "stderr: " + kind,
        "%d signals in %d confirmed bursts in %.2f s with -vv; "
        "%d log lines dropped, %d forwards" % (SIGNALS, bursts, took, dropped, forwarded),
    )


@pytest.mark.timeout(60)
def test_metrics_connections_reset_with_a_full_stderr_leak_no_thread(procs):
    r, w = _full_pipe()
    port = free_port()
    try:
        p = procs([PYPAUSE, "--metrics-addr", "127.0.0.1:%d" % port], stderr=w)
    finally:
        os.close(w)
    try:
        wait_for(lambda: _healthy(port), what="metrics to be served")
        wait_for(lambda: thread_count(p.pid) == 2, what="the scrape threads to end")
        for _ in range(20):
            _reset_mid_request(port)
        assert _healthy(port)
        wait_for(
            lambda: thread_count(p.pid) == 2,
            timeout=10,
            what="the threads of 20 reset connections to end",
        )
    finally:
        os.close(r)


def _reset_mid_request(port):
    """Connect, send half a request, and reset the connection (RST, not FIN)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /metrics HTTP/1.1\r\n")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


@pytest.mark.timeout(30)
def test_metrics_connection_reset_prints_no_traceback(procs):
    p = procs([PYPAUSE, "--metrics-addr", "127.0.0.1:0"], stderr=subprocess.PIPE)
    port = port_from(p.stderr)
    _reset_mid_request(port)
    assert _healthy(port)
    wait_for(lambda: thread_count(p.pid) == 2, what="the connections' threads to end")
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(10) == 0
    assert b"Traceback" not in p.stderr.read()


@pytest.mark.timeout(30)
def test_idle_metrics_connection_timing_out_prints_no_traceback(procs):
    p = procs([PYPAUSE, "--metrics-addr", "127.0.0.1:0"], stderr=subprocess.PIPE)
    port = port_from(p.stderr)
    idle = socket.create_connection(("127.0.0.1", port))
    try:
        assert idle.recv(1) == b""  # pypause closes it at its 5 s deadline
    finally:
        idle.close()
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(10) == 0
    assert b"Traceback" not in p.stderr.read()


# -- no /proc -------------------------------------------------------------------


@needs_pidns
@pytest.mark.timeout(scaled(90, 300))
def test_without_proc_reaping_works_and_metrics_report_what_they_can(pidns):
    orphans = scaled(1000, 5000)
    # A private mount namespace whose /proc is an empty read-only tmpfs.
    ns = pidns(
        [*WITHOUT_PROC, PYPAUSE, "-v", "--metrics-addr", "127.0.0.1:0"],
        unshare_args=PRIVATE_MOUNTS,
        stderr=subprocess.PIPE,
    )
    port = port_from(ns.unshare.stderr)
    err = Lines(ns.unshare.stderr)
    wait_until_idle(ns.pid)
    assert (
        ns.enter(["sh", "-c", "ls -A /proc | wc -l"], stdout=subprocess.PIPE).communicate(
            timeout=10
        )[0]
        == b"0\n"
    )
    made, _, _ = storm(ns, orphans, 2)
    assert made == orphans
    wait_for(lambda: not children(ns.pid), timeout=60, what="every orphan to be reaped")
    assert ns.zombies() == []
    got = samples(port)
    # Counted under "unknown": the command name comes from /proc.
    assert value(got, "pypause_zombies_reaped_by_comm_total", comm="unknown") == orphans
    # Logging needs no /proc either: each line is written or counted as dropped.
    wait_for(
        lambda: (
            reaps_logged(err.lines) + value(samples(port), "pypause_log_lines_dropped_total")
            == orphans
        ),
        what="a log line per orphan, written or dropped",
    )
    for needs_proc in ("pypause_zombies", "pypause_processes", "process_resident_memory_bytes"):
        assert value(got, needs_proc) is None, needs_proc
    assert _healthy(port)
    os.kill(ns.pid, signal.SIGTERM)
    assert ns.unshare.wait(10) == 0
    err.wait(lambda lines: None in lines, what="stderr to close")
    assert not any("Traceback" in line for line in err.lines if line)


# -- read-only root, no writable /tmp -----------------------------------------

READ_ONLY = r"""
set -e
mount -o remount,ro,bind /
for d in /tmp /var/tmp /dev/shm /run; do
    if mountpoint -q "$d"; then mount -o remount,ro,bind "$d"; fi
done
for d in / /tmp /var/tmp /dev/shm; do
    if [ -d "$d" ] && touch "$d/.pypause-rw-probe" 2>/dev/null; then
        echo "$d is writable" >&2; exit 99
    fi
done
exec "$@"
"""


@needs_pidns
@pytest.mark.timeout(60)
def test_read_only_root_and_no_writable_tmp(pidns):
    ns = pidns(
        [
            "sh",
            "-c",
            READ_ONLY,
            "sh",
            *pypause_running_storm_maker(
                200, "--spawn", "--late", "--batch", 100, "--report", "--stay", "--code", 4
            ),
        ],
        unshare_args=(*PRIVATE_MOUNTS, "--mount-proc"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        port = port_from(ns.unshare.stderr)
        assert _healthy(port)
        assert json.loads(ns.unshare.stdout.readline())["orphans"] == 200
        err = Lines(ns.unshare.stderr)
        # The child stays until stdin closes: ended before the late orphans
        # exit, it would take PID 1 and them with it, unreaped.
        err.wait(lambda lines: reaps_logged(lines) == 200, what="200 orphans reaped")
        ns.unshare.stdin.close()
        assert ns.unshare.wait(20) == 4
        err.wait(lambda lines: None in lines, what="stderr to close")
        assert reaps_logged(err.lines) == 200
        assert not any("Traceback" in l for l in err.lines if l)
    finally:
        # Only the namespace's copy of / was made read-only; ours is as it was.
        assert not os.statvfs("/").f_flag & os.ST_RDONLY


# -- a log write racing another writer of the same stderr -----------------------

RACED_WRITE = r"""
import os, socket, sys, threading
from pypause import log

kind = sys.argv[1]
if kind == "pipe":
    r, w = os.pipe()
else:
    a, b = socket.socketpair()
    r, w = os.dup(a.fileno()), os.dup(b.fileno())
os.dup2(w, 2)
os.set_blocking(2, False)
try:
    while True:  # the child, sharing stderr, fills it...
        os.write(2, b"c" * 4096)
except BlockingIOError:
    pass
os.set_blocking(2, True)
# ...right after a zero-timeout poll() said a line would fit (pypause once
# polled, then wrote with a blocking write(); the attribute is harmless now).
log._writable = lambda fd: True
done = threading.Event()
threading.Thread(target=lambda: (log.error("a line"), done.set()), daemon=True).start()
os.write(1, b"returned, dropped %d" % log.dropped if done.wait(2) else b"blocked in write()")
os._exit(0)
"""


@pytest.mark.parametrize("kind, no_proc", [("socket", False), ("pipe", True)])
@pytest.mark.timeout(30)
def test_a_log_line_racing_the_child_for_stderr_never_blocks(kind, no_proc):
    argv = [sys.executable, "-c", RACED_WRITE, kind]
    if no_proc:
        if subprocess.run(["unshare", "--mount", "true"]).returncode != 0:
            pytest.skip("unshare --mount not permitted")
        # Without /proc: log.py once relied on /proc/self/fd/2 for a
        # non-blocking twin of a pipe, and fell back to poll-then-write.
        argv = ["unshare", *PRIVATE_MOUNTS, *WITHOUT_PROC, *argv]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run(
        argv, capture_output=True, timeout=20, cwd=root, env={**os.environ, "PYTHONPATH": root}
    )
    assert r.stdout == b"returned, dropped 1", (r.stdout, r.stderr[-2000:])


# write, writev, pwritev2 by machine: the calls a log line may be written with
_WRITE_SYSCALLS = {"x86_64": {"1", "20", "328"}, "aarch64": {"64", "66", "287"}}
CHATTY_CHILD = "import os\nwhile True:\n    os.write(2, b'c' * 65536)\n"
SLOW_READER = (
    "import os, time\nwhile os.read(0, 4096):\n"
    "    end = time.perf_counter() + 0.0002\n"
    "    while time.perf_counter() < end:\n        pass\n"
)


def _writing_to_stderr(pid, calls):
    fields = syscall(pid)
    return len(fields) > 1 and fields[0] in calls and int(fields[1], 16) == 2


@pytest.mark.skipif(os.uname().machine not in _WRITE_SYSCALLS, reason="syscall numbers unknown")
@pytest.mark.parametrize("kind", ["pipe, no /proc", "socket"])
@pytest.mark.timeout(scaled(60, 180))
def test_a_chatty_child_and_a_stalling_collector_never_block_pypause(pidns, procs, kind):
    """Black box: the child writes 64 KiB at a time to the stderr it shares with
    pypause, a slow reader drains it, pypause logs a line per signal (-vv). Each
    time pypause is seen in a write to fd 2, the reader is stopped: if pypause
    is still in that write half a second later, a stalled collector has hung PID 1."""
    calls = _WRITE_SYSCALLS[os.uname().machine]
    if kind == "socket":
        a, b = socket.socketpair()
        r, w = os.dup(a.fileno()), os.dup(b.fileno())
        a.close()
        b.close()
    else:
        r, w = os.pipe()
    try:
        reader = procs([sys.executable, "-c", SLOW_READER], stdin=r)
        argv = [PYPAUSE, "-vv", "--", sys.executable, "-c", CHATTY_CHILD]
        if kind == "socket":
            pypause = procs(argv, stderr=w).pid
        else:
            pypause = pidns([*WITHOUT_PROC, *argv], unshare_args=PRIVATE_MOUNTS, stderr=w).pid
    finally:
        os.close(r)
        os.close(w)
    stop = threading.Event()
    go = threading.Event()
    go.set()

    def blast():
        while not stop.is_set():
            go.wait()
            try:
                os.kill(pypause, signal.SIGWINCH)
            except ProcessLookupError:
                return

    blaster = threading.Thread(target=blast)
    blaster.start()
    seen_writing = 0
    try:
        deadline = time.monotonic() + scaled(5, 30)
        while time.monotonic() < deadline:
            if not _writing_to_stderr(pypause, calls):
                continue
            seen_writing += 1
            os.kill(reader.pid, signal.SIGSTOP)
            go.clear()  # no more signals: a pypause that is not stuck goes idle
            time.sleep(0.5)  # the reader stays stopped this long: a stalled collector
            assert not _writing_to_stderr(pypause, calls), "PID 1 hangs in a write to stderr"
            os.kill(reader.pid, signal.SIGCONT)
            go.set()
    finally:
        stop.set()
        go.set()
        blaster.join()
        os.kill(reader.pid, signal.SIGCONT)
    assert stat(pypause).state != "Z"
    measured(
        "chatty child, stalling collector: " + kind,
        "pypause seen writing to stderr %d times, never stuck" % seen_writing,
    )
