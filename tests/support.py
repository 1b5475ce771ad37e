"""Black-box helpers: find the installed pypause, observe processes through /proc."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

HELPERS = os.path.join(os.path.dirname(__file__), "helpers")


def _installed_pypause():
    # The console script next to this interpreter, not a pyenv shim in front of it.
    script = os.path.join(os.path.dirname(sys.executable), "pypause")
    return script if os.access(script, os.X_OK) else shutil.which("pypause")


PYPAUSE = _installed_pypause()


def helper(name, *args):
    """argv that runs tests/helpers/NAME.py with this interpreter."""
    return [sys.executable, os.path.join(HELPERS, name + ".py"), *map(str, args)]


def wait_for(condition, timeout=10.0, what="condition", interval=0.01):
    """Poll `condition` until it returns a true value, and return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(interval)


def blocked_signals(pid):
    """The set of signals `pid` blocks (SigBlk of its main thread), or None if gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("SigBlk:"):
                    mask = int(line.split()[1], 16)
                    return {n + 1 for n in range(64) if mask >> n & 1}
    except OSError:
        return None
    return None


def port_from(stderr):
    """Read pypause's stderr up to the line that says where metrics are served."""
    while True:
        line = stderr.readline().decode()
        assert line, "pypause ended before serving metrics"
        m = re.search(r"serving metrics on http://\S+:(\d+)/metrics", line)
        if m:
            return int(m.group(1))


def stat_fields(pid):
    """(comm, state, ppid) of `pid` from /proc, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    state, ppid = text[text.rindex(")") + 2:].split()[:2]
    return comm, state, int(ppid)


def children(pid):
    """PIDs of the children of `pid`, zombies included (from every thread's list)."""
    kids = []
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return kids
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                kids.extend(int(k) for k in f.read().split())
        except OSError:
            pass
    return kids


def processes():
    """{pid: (comm, state, ppid)} of every process visible in our /proc."""
    result = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = stat_fields(int(name))
            if fields:
                result[int(name)] = fields
    return result


def children_of(pid, comm=None):
    return [p for p, (c, _, ppid) in processes().items()
            if ppid == pid and (comm is None or c == comm)]


def zombies_of(pid):
    return [p for p, (_, state, ppid) in processes().items() if ppid == pid and state == "Z"]


def context_switches(pid):
    """Voluntary + involuntary context switches of every thread of `pid`."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
            for line in f:
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
    return total


# rt_sigtimedwait, which sigwaitinfo() uses, by machine
_SIGWAIT_SYSCALL = {"x86_64": "128", "aarch64": "137"}


def in_sigwait(pid):
    """True if `pid` sleeps in sigwaitinfo() (where /proc shows its waited
    signals as unblocked: the kernel lets them through to the wait)."""
    number = _SIGWAIT_SYSCALL.get(os.uname().machine)
    try:
        with open("/proc/%d/syscall" % pid) as f:
            fields = f.read().split()
    except OSError:
        return False
    return bool(fields) and (fields[0] == number if number else fields[0] != "running")


def wait_until_idle(pid, timeout=10.0):
    """Wait until `pid` sleeps in sigwaitinfo(), i.e. its start-up is over."""
    wait_for(lambda: in_sigwait(pid), timeout, what="pypause %d to wait for signals" % pid)



def unprivileged_pypause(directory):
    """argv that runs pypause as uid/gid 65534, and the environment it needs.

    This interpreter may live where uid 65534 cannot read (/root/.pyenv), so
    the package is copied into `directory` (made world-readable; its parents
    must be too: pytest's tmp_path is not) and run by a world-readable interpreter: Debian's /usr/bin/python3. Skips the test
    when that cannot be done.
    """
    python = "/usr/bin/python3"
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to uid 65534")
    if not shutil.which("setpriv") or not os.access(python, os.X_OK):
        pytest.skip("needs setpriv(1) and a system %s" % python)
    import pypause
    os.chmod(directory, 0o755)
    shutil.copytree(os.path.dirname(pypause.__file__), os.path.join(directory, "pypause"))
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            python, "-m", "pypause"]
    return argv, {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(directory)}


def stop(proc):
    """End a Popen we started, by PID, if it still runs, and reap it.

    SIGTERM first, so that a pypause in init mode takes its child with it.
    """
    for signum in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        try:
            os.kill(proc.pid, signum)
            proc.wait(5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    proc.wait(10)


def pid1_of(unshare_proc):
    """Host PID of the PID 1 that `unshare --fork` started."""
    def child():
        try:
            with open("/proc/%d/task/%d/children" % (unshare_proc.pid, unshare_proc.pid)) as f:
                pids = f.read().split()
        except OSError:
            return None
        return int(pids[0]) if pids else None
    return wait_for(child, what="unshare to fork PID 1")


def _can_unshare():
    if shutil.which("unshare") is None:
        return "unshare(1) is not installed"
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                       capture_output=True)
    return None if r.returncode == 0 else "unshare --pid not permitted: %s" % r.stderr.decode().strip()


UNSHARE_PROBLEM = _can_unshare()
needs_pidns = pytest.mark.skipif(UNSHARE_PROBLEM is not None, reason=UNSHARE_PROBLEM or "")


class PidNamespace:
    """`argv` run as PID 1 of a fresh PID namespace by `unshare --fork`.

    `unshare_args` are extra unshare(1) options (default: a /proc of the
    namespace's own). `before` wraps the unshare command (a cgroup's entry
    prefix, say). `pid` is the namespace's PID 1 as seen from here.
    """

    def __init__(self, argv, unshare_args=("--mount-proc",), before=None, **kwargs):
        command = ["unshare", "--pid", "--fork", "--kill-child", *unshare_args] + list(argv)
        self.unshare = subprocess.Popen(before(command) if before else command, **kwargs)
        self.pid = pid1_of(self.unshare)

    def nsenter(self, argv, **kwargs):
        """Run `argv` inside the namespace, as a second container of a pod would."""
        return subprocess.run(self._entering(argv), **kwargs)

    def enter(self, argv, **kwargs):
        """Like nsenter(), but started in the background: return the Popen."""
        return subprocess.Popen(self._entering(argv), **kwargs)

    def _entering(self, argv):
        return ["nsenter", "--target", str(self.pid), "--pid", "--mount"] + list(argv)

    def members(self):
        """{pid: (comm, state, ppid)} of the processes in the namespace (host PIDs)."""
        try:
            ns = os.readlink("/proc/%d/ns/pid" % self.pid)
        except OSError:
            return {}
        result = {}
        for pid, fields in processes().items():
            try:
                if os.readlink("/proc/%d/ns/pid" % pid) == ns:
                    result[pid] = fields
            except OSError:
                pass
        return result

    def zombies(self):
        """Zombies left for PID 1 to reap: its children in state Z."""
        return [pid for pid in children(self.pid)
                if (stat_fields(pid) or ("", ""))[1] == "Z"]

    def close(self):
        stop(self.unshare)
