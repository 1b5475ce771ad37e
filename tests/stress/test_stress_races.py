"""The child exits at the very moment a signal is forwarded to it, over and over:
pypause never loses the exit code, never reports a wrong one, never crashes."""

import collections
import os
import random
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.stress.stress_support import measured, scaled
from tests.support.running import PYPAUSE, UNSHARE_PROBLEM, PidNamespace, stop

ITERATIONS = scaled(200, 1000)
SEED = 1234
# Default action: terminate, without a core dump (a core file would litter).
KILLING = [
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGALRM,
]
# Default action: ignore; SIGCHLD is not forwarded at all (pypause reaps on it).
HARMLESS = [signal.SIGURG, signal.SIGWINCH, signal.SIGCONT, signal.SIGCHLD]
CODES = [0, 3, 42, 77]  # none of them 128+N for a signal above


def _busy_wait(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _case(i):
    """Draw iteration i: (pypause options, child code, signal, order, delay, as PID 1)."""
    rng = random.Random(SEED * 100003 + i)
    code = rng.choice(CODES)
    signum = rng.choice(KILLING + HARMLESS)
    options = rng.choice(
        [[], ["-g"], ["-e", str(code)], ["-r", "TERM:HUP"], ["--grace-period", "0.5"], ["-v"]]
    )
    order = rng.choice(["signal first", "exit first"])
    delay = rng.uniform(0, 0.002)
    as_pid1 = UNSHARE_PROBLEM is None and i % 4 == 0
    return options, code, signum, order, delay, as_pid1


def _expected(options, code, signum):
    """The exact set of statuses pypause may end with."""
    reported = 0 if "-e" in options else code
    if signum not in KILLING:
        return {reported}
    if "-r" in options and signum == signal.SIGTERM:
        signum = signal.SIGHUP
    return {reported, 128 + signum}


def _run(i):
    options, code, signum, order, delay, as_pid1 = _case(i)
    argv = [PYPAUSE, *options, "--", "sh", "-c", "echo r; read x; exit %d" % code]
    pipes = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if as_pid1:
        ns = PidNamespace(argv, **pipes)
        proc, target = ns.unshare, ns.pid
    else:
        proc = subprocess.Popen(argv, **pipes)
        target = proc.pid
    try:
        # The child runs: pypause blocked its signals long before it forked it.
        assert proc.stdout.readline() == b"r\n"
        if order == "signal first":
            os.kill(target, signum)
            _busy_wait(delay)
            proc.stdin.close()  # `read` sees EOF: the child exits
        else:
            proc.stdin.close()
            _busy_wait(delay)
            try:
                os.kill(target, signum)
            except ProcessLookupError:  # as PID 1, already exited and reaped by unshare
                signum = None
        status = proc.wait(10)
        err = proc.stderr.read().decode()
    finally:
        stop(proc)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if not stream.closed:
                stream.close()
    return i, status, err, signum


@pytest.mark.timeout(scaled(120, 600))
def test_child_exit_racing_a_forwarded_signal_never_gives_a_wrong_code():
    outcomes = collections.Counter()
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        for i, status, err, sent in pool.map(_run, range(ITERATIONS)):
            options, code, signum, order, delay, as_pid1 = _case(i)
            expected = _expected(options, code, sent)
            assert status in expected, (
                "iteration %d: %s%s, child exits %d, %s, %s by %.2f ms: status %d not in %s"
                % (
                    i,
                    "as PID 1, " if as_pid1 else "",
                    options,
                    code,
                    signal.Signals(signum).name,
                    order,
                    delay * 1000,
                    status,
                    expected,
                )
            )
            assert "Traceback" not in err and "unexpected error" not in err, err
            if sent is None:
                outcomes["signal too late"] += 1
            elif signum in KILLING:
                outcomes["killed" if status >= 128 else "exited"] += 1
            else:
                outcomes["harmless signal"] += 1
    took = time.monotonic() - t0
    # Both sides of the race were hit: some signals came in time, some too late.
    assert outcomes["killed"] and outcomes["exited"], outcomes
    measured(
        "exit races",
        "%d races in %.1f s (a quarter as PID 1): killing signal won %d, "
        "exit won %d, harmless signal %d, PID 1 gone before the signal %d; "
        "no wrong code, no traceback"
        % (
            ITERATIONS,
            took,
            outcomes["killed"],
            outcomes["exited"],
            outcomes["harmless signal"],
            outcomes["signal too late"],
        ),
    )
