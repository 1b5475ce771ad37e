"""Shared by the stress tests: their scale, storms of orphans, a child's output as it comes.

Every stress test has a short version (the default run, a few seconds each)
and a long one, run when PYPAUSE_STRESS=1 is set in the environment:

    PYPAUSE_STRESS=1 python3 -m pytest tests/stress

Figures measured along the way go into MEASURED and are printed at the end of
the run (tests/stress/conftest.py), in a "stress figures" section.
"""

import json
import os
import subprocess
import threading
import time

from tests.support.running import PYPAUSE, helper, stop

STRESS = os.environ.get("PYPAUSE_STRESS", "").strip().lower() not in ("", "0", "no", "false", "off")

#: {figure: value} measured by the tests, printed after the run.
MEASURED = {}


def scaled(short, long):
    """`long` when PYPAUSE_STRESS is set, else `short`."""
    return long if STRESS else short


def measured(key, figure):
    MEASURED["%s (%s)" % (key, "long" if STRESS else "short")] = figure


def echo_child(code):
    """argv of a main child that prints the number of each signal it gets (each
    real-time one once per sending) and exits with `code` on SIGTERM or EOF on stdin."""
    return helper("signal_echo", code, "--numbers", "--exit-on-term")


# -- storms in a namespace ------------------------------------------------------


def pypause_running_storm_maker(*args):
    """argv: pypause -v (a line for each reap) serving metrics on a port of its
    own, whose main child makes orphans: tests/helpers/orphans.py with `args`."""
    return [PYPAUSE, "-v", "--metrics-addr", "127.0.0.1:0", "--", *helper("orphans", *args)]


def reaps_logged(lines):
    """How many of pypause's -v `lines` (None: EOF) say it reaped a zombie."""
    return sum("reaped zombie" in line for line in lines if line)


def storm(ns, total, makers, batch=100, late=True, timeout=600):
    """`makers` storm makers entered into `ns` at once, `total` orphans between them.

    Returns (orphans made, EAGAINs met, seconds until every maker was done).
    """
    share = [total // makers + (1 if i < total % makers else 0) for i in range(makers)]
    t0 = time.monotonic()
    started = [
        ns.enter(
            helper("orphans", n, "--spawn", "--report", "--batch", batch)
            + (["--late"] if late else []),
            stdout=subprocess.PIPE,
        )
        for n in share
    ]
    made = eagain = 0
    try:
        for p in started:
            out, _ = p.communicate(timeout=timeout)
            assert p.returncode == 0, "storm maker failed: %r" % out
            report = json.loads(out)
            made += report["orphans"]
            eagain += report["eagain"]
    finally:
        for p in started:
            stop(p)
    return made, eagain, time.monotonic() - t0


# -- reading a child's output as it comes -------------------------------------


class Lines:
    """Collects the lines of a stream in a thread; wait() for a condition on them."""

    def __init__(self, stream):
        self.lines = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream):
        for line in iter(stream.readline, b""):
            with self._cond:
                self.lines.append(line.decode(errors="replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.lines.append(None)  # EOF
            self._cond.notify_all()

    def wait(self, predicate, timeout=10, what="output"):
        """Wait until predicate(lines) is true; return its value."""
        with self._cond:
            result = self._cond.wait_for(lambda: predicate(self.lines), timeout)
        if not result:
            raise AssertionError(
                "timed out waiting for %s; last lines: %r" % (what, self.lines[-5:])
            )
        return result

    def count(self, text):
        with self._cond:
            return self.lines.count(text)
