"""--metrics-addr NAME:PORT: the name is resolved off the loop's path.

Each test makes a network and mount namespace of its own (unshare --net
--mount: lo up, /etc/resolv.conf and /etc/hosts bind-mounted over with files
of the test's), whose only name server is tests/helpers/nameserver.py on
127.0.0.1:53, answering as the test says; pypause enters both namespaces
with nsenter (a subreaper, not PID 1). The namespaces go with their last
process: the name server, ended after the test by the procs fixture, and
pypause. glibc's resolver, as shipped, waits 5 s for an answer and asks
twice: 10 s during which a pypause that resolved on its main loop's path
forwarded no signal and reaped no orphan.
"""

import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from tests.support.http import get_inside, port_from
from tests.support.proc import stat, status_field
from tests.support.running import PYPAUSE, helper, read_line, wait_for

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network and mount namespaces"),
    pytest.mark.skipif(
        not shutil.which("ip") or not shutil.which("nsenter"), reason="needs ip(8) and nsenter(1)"
    ),
]

NAME = "metrics.invalid"  # in no hosts file; .invalid is never a real domain (RFC 2606)
HOSTS = "127.0.0.1 localhost\n::1 localhost\n"
SETUP = (
    'ip link set lo up && mount --bind "$1" /etc/resolv.conf && '
    'mount --bind "$2" /etc/hosts && shift 2 && exec "$@"'
)


class NameServer:
    """A name server (helpers/nameserver.py) in network and mount namespaces of its own."""

    def __init__(self, procs, directory, mode, resolv_options="", delay=0.0):
        resolv = directory / "resolv.conf"
        resolv.write_text("nameserver 127.0.0.1\n" + resolv_options)
        hosts = directory / "hosts"
        hosts.write_text(HOSTS)
        self.log = directory / "queries"
        self.log.write_text("")
        self.proc = procs(
            [
                "unshare",
                "--net",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                SETUP,
                "sh",
                str(resolv),
                str(hosts),
                *helper("nameserver", mode, self.log, delay),
            ],
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout.readline() == b"ready\n"

    def enter(self, argv):
        """`argv` run in the name server's network and mount namespaces (nsenter execs it)."""
        return ["nsenter", "--target", str(self.proc.pid), "--net", "--mount", "--", *argv]

    def queries(self):
        return [tuple(line.split()) for line in self.log.read_text().splitlines()]

    def asked(self, name):
        return [q for q in self.queries() if q[0] == name]


@pytest.fixture
def nameserver(procs, tmp_path):
    def start(mode, resolv_options="", delay=0.0):
        return NameServer(procs, tmp_path, mode, resolv_options, delay)

    return start


def line_with(stream, text, seconds):
    """Read lines until one holds `text`; return them all (AssertionError if none by then)."""
    deadline = time.monotonic() + seconds
    lines = []
    while True:
        line = read_line(stream, deadline)
        if not line:
            raise AssertionError("no line with %r within %gs; got %r" % (text, seconds, lines))
        lines.append(line.decode())
        if text in lines[-1]:
            return lines


def start_init(procs, ns, addr):
    """pypause --metrics-addr ADDR in `ns`, whose child leaves an orphan and echoes
    signals (helpers/signal_echo.py: exits 3 once its stdin closes). Returns
    (pypause, orphan pid), once the child is ready."""
    p = procs(
        ns.enter(
            [
                PYPAUSE,
                "--metrics-addr",
                addr,
                "--",
                *helper("orphans", 1, "--until-released", "--", *helper("signal_echo", 3)),
            ]
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    deadline = time.monotonic() + 10
    first = read_line(p.stdout, deadline)
    assert first.startswith(b"orphaned "), first
    assert read_line(p.stdout, deadline) == b"ready\n"
    return p, int(first.split()[1])


def test_a_silent_name_server_holds_up_neither_signals_nor_reaping(procs, nameserver):
    ns = nameserver("silent")  # glibc's defaults: 2 x 5 s before it gives up
    p, orphan = start_init(procs, ns, NAME + ":0")
    wait_for(lambda: ns.asked(NAME), what="pypause to ask the name server")
    t0 = time.monotonic()
    os.kill(p.pid, signal.SIGTERM)
    got = read_line(p.stdout, t0 + 15)  # long enough to say how late it would be
    took = time.monotonic() - t0
    assert got == b"SIGTERM\n", "SIGTERM not forwarded within 15 s"
    assert took < 1, "SIGTERM reached the child %.1fs late" % took
    # The orphan exited as soon as pypause adopted it: reaped meanwhile.
    wait_for(
        lambda: stat(orphan) is None,
        timeout=1,
        what="the orphan to be reaped while the name is being resolved",
    )
    p.stdin.close()
    assert p.wait(5) == 3
    err = p.stderr.read().decode()
    # Still resolving when pypause exited: neither served nor given up.
    assert "serving metrics" not in err and "metrics disabled" not in err
    assert "Traceback" not in err


def test_a_name_server_that_gives_up_late_costs_one_error_line(procs, nameserver):
    ns = nameserver("silent", "options timeout:1 attempts:1\n")
    p, _ = start_init(procs, ns, NAME + ":9100")
    t0 = time.monotonic()
    os.kill(p.pid, signal.SIGUSR1)  # while the name server keeps pypause waiting
    assert read_line(p.stdout, t0 + 5) == b"SIGUSR1\n"
    assert time.monotonic() - t0 < 0.5
    lines = line_with(p.stderr, "metrics disabled", 10)
    assert NAME in lines[-1] and "9100" in lines[-1]
    os.kill(p.pid, signal.SIGUSR2)  # the init goes on
    assert read_line(p.stdout, time.monotonic() + 5) == b"SIGUSR2\n"
    p.stdin.close()
    assert p.wait(5) == 3
    err = "".join(lines) + p.stderr.read().decode()
    assert err.count("metrics disabled") == 1 and err.count("ERROR") == 1
    assert "Traceback" not in err and "serving metrics" not in err


@pytest.mark.parametrize("mode", ["nxdomain", "refused"])
def test_a_name_that_fails_fast_costs_one_error_line(procs, nameserver, mode):
    ns = nameserver(mode)
    p = procs(
        ns.enter([PYPAUSE, "--metrics-addr", NAME + ":9100", "--", "sh", "-c", "read x; exit 7"]),
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    lines = line_with(p.stderr, "metrics disabled", 10)
    assert ns.asked(NAME)
    assert p.poll() is None  # the init goes on without metrics
    p.stdin.close()
    assert p.wait(5) == 7
    err = "".join(lines) + p.stderr.read().decode()
    assert err.count("\n") == 1, err  # that line and no other
    assert NAME in err and "Traceback" not in err


def test_metrics_appear_once_a_slow_name_resolves(procs, nameserver):
    ns = nameserver("slow", delay=1.5)
    p, orphan = start_init(procs, ns, NAME + ":0")
    t0 = time.monotonic()
    os.kill(p.pid, signal.SIGUSR1)
    assert read_line(p.stdout, t0 + 5) == b"SIGUSR1\n"
    assert time.monotonic() - t0 < 0.5
    wait_for(lambda: stat(orphan) is None, timeout=1, what="the orphan reaped")
    lines = line_with(p.stderr, "serving metrics", 10)
    assert lines[-1].startswith("[pypause] serving metrics on http://127.0.0.1:")
    port = int(re.search(r":(\d+)/metrics", lines[-1]).group(1))
    status, _, body = get_inside(ns.enter([]), port)
    assert status == 200 and 'pypause_info{mode="init"' in body
    p.stdin.close()
    assert p.wait(5) == 3


def test_a_name_in_the_hosts_file_serves_metrics(procs, nameserver):
    ns = nameserver("silent")  # never asked: localhost is in the hosts file
    p = procs(
        ns.enter([PYPAUSE, "--metrics-addr", "localhost:0", "--", "sleep", "30"]),
        stderr=subprocess.PIPE,
    )
    port = port_from(p.stderr)
    status, _, body = get_inside(ns.enter([]), port, host="localhost")
    assert status == 200 and "process_open_fds" in body
    assert ns.queries() == []


def test_pause_mode_binds_a_named_privileged_port_before_it_drops_root(procs, nameserver):
    ns = nameserver("slow", delay=0.5)  # a fresh network namespace: ports < 1024 need root
    p = procs(
        ns.enter([PYPAUSE, "--metrics-addr", NAME + ":80"]), stderr=subprocess.PIPE, bufsize=0
    )
    lines = line_with(p.stderr, "metrics", 10)
    assert "serving metrics on http://127.0.0.1:80/" in lines[-1], lines
    status, _, body = get_inside(ns.enter([]), 80, "/healthz")
    assert (status, body) == (200, "ok\n")
    assert status_field(p.pid, "Uid") == ["65535"] * 4
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(5) == 0
