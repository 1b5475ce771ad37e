"""Signals in the first milliseconds, and the ones no Python process can block.

Until pypause blocks them, a SIGTERM sent to PID 1 of a namespace is discarded
by the kernel and a SIGINT raises KeyboardInterrupt in the interpreter. The
command script blocks them as its very first statements; these tests pin
that, and measure the window that is left (the interpreter's own start-up).
"""

import os
import signal
import statistics
import subprocess
import sys
import time

import pytest

from pypause import signals
from tests.support.proc import blocked_signals, children, exe, waiting_for_signals
from tests.support.running import PYPAUSE, needs_pidns, wait_until_idle

pytestmark = pytest.mark.timeout(60)

# Runs the installed command script as Python would, and reports, at the first
# import of anything from the pypause package, what is blocked and whether
# SIGINT still has Python's KeyboardInterrupt handler.
HARNESS = """
import _signal, sys
seen = []
class Watch:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] == "pypause" and not seen:
            seen.append(name)
            blocked = sorted(_signal.pthread_sigmask(_signal.SIG_BLOCK, []))
            raising = _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler
            sys.stderr.write("%r %r\\n" % (blocked, raising))
        return None
sys.meta_path.insert(0, Watch)
script = sys.argv[1]
sys.argv = [script, "--version"]
exec(compile(open(script).read(), script, "exec"), {"__name__": "__main__"})
"""


def test_signals_are_blocked_before_the_package_is_imported():
    r = subprocess.run(
        [sys.executable, "-c", HARNESS, PYPAUSE], capture_output=True, text=True, timeout=20
    )
    assert r.returncode == 0 and r.stdout.startswith("pypause ")
    blocked, raising = r.stderr.splitlines()[0].rsplit(" ", 1)
    assert set(signals.WAITED) <= set(eval(blocked))
    assert raising == "False"  # a SIGINT now is noted for the loop, not raised


# Runs the installed command script and sends the process a SIGINT at the first
# call of getsignal(): the script's first statement, where Python's own
# handler still raises KeyboardInterrupt (as for a SIGINT that came while the
# interpreter started up).
EARLY_SIGINT = """
import os, sys, _signal
def profile(frame, event, arg):
    if event == "c_call" and getattr(arg, "__name__", "") == "getsignal":
        sys.setprofile(None)
        os.kill(os.getpid(), _signal.SIGINT)
script = sys.argv[1]
sys.argv = sys.argv[1:]
code = compile(open(script).read(), script, "exec")
sys.setprofile(profile)
exec(code, {"__name__": "__main__"})
"""


def test_a_sigint_python_caught_before_the_mask_ends_pause_mode_with_0():
    r = subprocess.run(
        [sys.executable, "-c", EARLY_SIGINT, PYPAUSE], capture_output=True, text=True, timeout=20
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr == "[pypause] Shutting down, got signal: Interrupt\n"


def test_a_sigint_python_caught_before_the_mask_is_forwarded_to_the_child():
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-c", EARLY_SIGINT, PYPAUSE, "--", "sleep", "10"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert r.returncode == 130, r.stderr  # sleep killed by the forwarded SIGINT
    assert time.monotonic() - t0 < 8
    assert "Traceback" not in r.stderr


def _start_pid1(argv):
    """Start argv as PID 1 of a new namespace; return (unshare, its PID 1, time of exec).

    Polls /proc as fast as Python can, so that the exec is seen within
    microseconds: the moment the PID 1 runs the interpreter.
    """
    unshare = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *argv],
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    pid = None
    while pid is None and time.monotonic() < deadline:
        pid = (children(unshare.pid) or [None])[0]
    interpreter = os.path.realpath(sys.executable)
    while time.monotonic() < deadline:
        if exe(pid) == interpreter:
            return unshare, pid, time.monotonic()
    unshare.kill()
    raise AssertionError("pypause did not start as PID 1")


def _masked(pid):
    """Wait, polling as fast as Python can, until `pid` blocks SIGTERM; return when.

    Once in sigwaitinfo(), /proc shows the waited signals unblocked: a poll
    that came too late to see the mask sees that instead.
    """
    deadline = time.monotonic() + 10
    while signal.SIGTERM not in (blocked_signals(pid) or ()) and not waiting_for_signals(pid):
        assert time.monotonic() < deadline, "pypause never blocked SIGTERM"
    return time.monotonic()


@needs_pidns
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_as_soon_as_the_mask_is_set_is_kept_for_the_loop(signum):
    for _ in range(5):
        unshare, pid, _ = _start_pid1([PYPAUSE])
        try:
            _masked(pid)
            os.kill(pid, signum)
            assert unshare.wait(10) == 0
            err = unshare.stderr.read()
            assert b"Shutting down" in err and b"Traceback" not in err
        finally:
            if unshare.poll() is None:
                unshare.kill()
                unshare.wait()


@needs_pidns
def test_start_up_window(capsys):
    """Time from exec to the mask being set, as PID 1: in this window a SIGTERM
    is lost and a SIGINT ends the interpreter. Printed for the README."""
    windows = []
    for _ in range(20):
        unshare, pid, execed = _start_pid1([PYPAUSE])
        try:
            windows.append(_masked(pid) - execed)
            os.kill(pid, signal.SIGTERM)
            assert unshare.wait(10) == 0
        finally:
            if unshare.poll() is None:
                unshare.kill()
                unshare.wait()
    median = statistics.median(windows) * 1000
    with capsys.disabled():
        print(
            "\nstart-up window (exec -> signals blocked), %s: median %.1f ms, max %.1f ms"
            % (os.path.realpath(sys.executable), median, max(windows) * 1000)
        )
    assert median < 500


@needs_pidns
@pytest.mark.parametrize("signum", [32, 33])
def test_pid1_survives_glibc_internal_signals(pidns, signum):
    # glibc keeps SIGCANCEL and SIGSETXID for itself: they cannot be blocked or
    # waited for. PID 1 of a namespace is safe (the kernel drops a signal whose
    # action is the default); see the README for pypause when it is not PID 1.
    ns = pidns([PYPAUSE], stderr=subprocess.PIPE)
    wait_until_idle(ns.pid)
    os.kill(ns.pid, signum)
    os.kill(ns.pid, signal.SIGTERM)  # handled after it, if it was survived
    assert ns.unshare.wait(10) == 0
    assert b"Shutting down" in ns.unshare.stderr.read()
