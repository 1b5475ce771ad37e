"""Shared by the stress tests: scale, /proc readings, namespaces, cgroups, scrapes.

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

from tests.support.running import helper, stop, wait_for

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


# -- a pids cgroup ------------------------------------------------------------

PIDS_V1 = "/sys/fs/cgroup/pids"
CGROUP_V2_ROOTS = ("/sys/fs/cgroup/unified", "/sys/fs/cgroup")


def _writable_dir(path):
    probe = os.path.join(path, "pypause-probe-%d" % os.getpid())
    try:
        os.mkdir(probe)
    except OSError:
        return False
    os.rmdir(probe)
    return True


def pids_cgroup_parent():
    """(parent directory, version) where a pids cgroup can be made, or (None, why)."""
    if os.path.exists(os.path.join(PIDS_V1, "cgroup.procs")) and _writable_dir(PIDS_V1):
        return PIDS_V1, 1
    for root in CGROUP_V2_ROOTS:
        try:
            with open(os.path.join(root, "cgroup.subtree_control")) as f:
                enabled = f.read().split()
        except OSError:
            continue
        # Only where pids is already delegated: enabling it would change the host.
        if "pids" in enabled and _writable_dir(root):
            return root, 2
    return None, (
        "no writable pids cgroup: neither cgroup v1 %s nor a cgroup v2 root "
        "with pids in cgroup.subtree_control" % PIDS_V1
    )


class PidsCgroup:
    """A pids cgroup of our own, removed by close() (its processes moved out first)."""

    def __init__(self, parent, name):
        self.parent = parent
        self.path = os.path.join(parent, name)
        os.mkdir(self.path)

    def _file(self, name):
        return os.path.join(self.path, name)

    def set_max(self, limit):
        with open(self._file("pids.max"), "w") as f:
            f.write(str(limit))

    def procs(self):
        try:
            with open(self._file("cgroup.procs")) as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []

    def current(self):
        with open(self._file("pids.current")) as f:
            return int(f.read())

    def max_events(self):
        """How many times a fork failed here because of pids.max."""
        with open(self._file("pids.events")) as f:
            return int(dict(line.split() for line in f)["max"])

    def enter_argv(self, argv):
        """`argv` prefixed so that it runs inside this cgroup from its first instruction."""
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', self._file("cgroup.procs")] + list(argv)

    def close(self):
        if not os.path.isdir(self.path):
            return
        try:
            self.set_max("max")
        except OSError:
            pass
        # Move anything still inside out to the parent, or rmdir fails with EBUSY.
        for pid in self.procs():
            try:
                with open(os.path.join(self.parent, "cgroup.procs"), "w") as f:
                    f.write(str(pid))
            except OSError:
                pass  # gone meanwhile

        def removed():
            try:
                os.rmdir(self.path)
            except FileNotFoundError:
                return True
            except OSError:
                return False
            return True

        wait_for(removed, timeout=10, what="cgroup %s to be removed" % self.path)


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
