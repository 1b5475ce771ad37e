"""Forwarding in init mode, and the pause-mode rules for SIGTERM/SIGINT/others;
each with pypause as PID 1 of a PID namespace and as a subreaper (fixture init)."""

import os
import shutil
import signal
import subprocess
import time

import pytest

from tests.support.proc import children
from tests.support.running import PYPAUSE, helper, wait_until_idle

pytestmark = pytest.mark.timeout(30)

FORWARDED = [
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
    signal.SIGQUIT,
    signal.SIGALRM,
    signal.SIGCONT,
    signal.SIGPIPE,
    signal.SIGXFSZ,
    signal.SIGTSTP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGRTMIN,
    signal.SIGRTMIN + 3,
    signal.SIGRTMAX,
]


def name(signum):
    try:
        return signal.Signals(signum).name
    except ValueError:
        return "SIG%d" % signum


@pytest.fixture
def echo_child(init):
    """pypause (in each mode) running signal_echo.py; returns (pypause, readline)."""

    def start(*pypause_args, child_args=(0,)):
        p = init.start(
            [PYPAUSE, *pypause_args, "--", *helper("signal_echo", *child_args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert p.stdout.readline() == b"ready\n"
        wait_until_idle(p.pid)
        return p, lambda: p.stdout.readline().decode().strip()

    return start


def test_each_signal_is_forwarded_to_the_child(echo_child):
    p, readline = echo_child()
    for signum in FORWARDED:
        os.kill(p.pid, signum)
        assert readline() == name(signum)
    p.stdin.close()
    assert p.wait(10) == 0


def test_child_killed_by_forwarded_sigterm_gives_143(init):
    p = init.start([PYPAUSE, "--", "sleep", "30"])
    wait_until_idle(p.pid)
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(5) == 143


def test_child_that_ignores_sigterm_keeps_pypause_waiting(echo_child):
    p, readline = echo_child(child_args=(7, "--ignore", "SIGTERM"))
    os.kill(p.pid, signal.SIGTERM)
    os.kill(p.pid, signal.SIGUSR1)  # proves the SIGTERM before it was handled
    assert readline() == "SIGUSR1"
    assert p.poll() is None
    p.stdin.close()
    assert p.wait(10) == 7


def test_sigint_is_forwarded_not_raised_in_pypause(echo_child):
    p, readline = echo_child()
    for _ in range(3):
        os.kill(p.pid, signal.SIGINT)
        assert readline() == "SIGINT"
    assert p.poll() is None


def test_a_child_pypause_may_not_signal_is_said_once(unprivileged, init):
    # pypause as uid 65534; its child a setuid-root program that drops the
    # 65534 it was started with: kill() now says EPERM.
    argv, env = unprivileged
    setuid_python = os.path.join(env["PYTHONPATH"], "python-setuid")
    shutil.copy("/usr/bin/python3", setuid_python)
    os.chmod(setuid_python, 0o4755)
    p = init.start(
        [
            *argv,
            "--",
            setuid_python,
            "-c",
            "import os, time; os.setresuid(0, 0, 0); "
            "print(os.getpid(), flush=True); time.sleep(60)",
        ],
        env=env,
        cwd="/",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    int(p.stdout.readline())  # the child runs, as root (its PID is the namespace's for a PID 1)
    (child,) = children(p.pid)
    wait_until_idle(p.pid)
    for signum in (signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP):
        os.kill(p.pid, signum)
    os.kill(child, signal.SIGKILL)  # as root
    assert p.wait(10) == 137  # pypause lived on, and exits with its child
    err = p.stderr.read().decode()
    assert err.count("not permitted to signal the main child") == 1, err
    assert "unexpected error" not in err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_pause_mode_exits_0_on_shutdown_signal(init, signum):
    p = init.start([PYPAUSE], stderr=subprocess.PIPE)
    wait_until_idle(p.pid)
    t0 = time.monotonic()
    os.kill(p.pid, signum)
    assert p.wait(1) == 0
    assert time.monotonic() - t0 < 1
    assert b"Shutting down, got signal: " + signal.strsignal(signum).encode() in p.stderr.read()


def test_pause_mode_ignores_other_signals(init):
    p = init.start([PYPAUSE, "-v"], stderr=subprocess.PIPE)
    wait_until_idle(p.pid)
    ignored = [
        signal.SIGHUP,
        signal.SIGUSR1,
        signal.SIGUSR2,
        signal.SIGQUIT,
        signal.SIGWINCH,
        signal.SIGPIPE,
        signal.SIGALRM,
        signal.SIGRTMIN,
    ]
    for signum in ignored:
        os.kill(p.pid, signum)
        while b"ignored signal" not in p.stderr.readline():
            pass
    assert p.poll() is None
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(5) == 0
