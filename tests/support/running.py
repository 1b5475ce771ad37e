"""Running pypause and the test programs: the installed command, waits, PID
namespaces, and an Init that starts pypause either way it runs and ends all
it left."""

import os
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

from tests.support.proc import (
    children,
    descendants,
    environ_holds,
    pidns_members,
    processes,
    waiting_for_signals,
    zombies_of,
)

HELPERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "helpers")


def _installed_pypause():
    # The console script next to this interpreter, not a pyenv shim in front of it.
    script = os.path.join(os.path.dirname(sys.executable), "pypause")
    return script if os.access(script, os.X_OK) else shutil.which("pypause")


PYPAUSE = _installed_pypause()
#: The interpreter of PYPAUSE's #! line, to run the command with flags of one's own.
with open(PYPAUSE, "rb") as _script:
    PYPAUSE_PYTHON = _script.readline()[2:].split()[0].decode()


def helper(name, *args):
    """argv that runs tests/helpers/NAME.py with this interpreter."""
    return [sys.executable, os.path.join(HELPERS, name + ".py"), *map(str, args)]


def read_line(stream, deadline):
    """The next line of an unbuffered pipe, or what came of it by `deadline`."""
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([stream], [], [], left)[0]:
            break
        byte = stream.read(1)
        if not byte:
            break
        line += byte
    return line


def lines(stream, n):
    """The next `n` lines of `stream` (bytes), decoded and stripped."""
    return [stream.readline().decode().strip() for _ in range(n)]


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


def wait_until_idle(pid, timeout=10.0):
    """Wait until `pid` sleeps in sigwaitinfo(): pypause's start-up is over."""
    wait_for(lambda: waiting_for_signals(pid), timeout, what="pypause %d to wait for signals" % pid)


def python_with(directory, files):
    """A Python (venv) whose site-packages holds `files` ({name: text}), then
    what this interpreter has installed (pypause and its dependencies), which
    a .pth file names: so a package in `files` comes first. Return its python."""
    venv = os.path.join(str(directory), "venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = os.path.join(venv, "bin", "python3")
    site_dir = subprocess.run(
        [python, "-c", "import site; print(site.getsitepackages()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    import pypause

    installed = os.path.dirname(os.path.dirname(pypause.__file__))
    for name, text in {"installed.pth": installed + "\n", **files}.items():
        os.makedirs(os.path.dirname(os.path.join(site_dir, name)), exist_ok=True)
        with open(os.path.join(site_dir, name), "w") as f:
            f.write(text)
    return python


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
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-m", "pypause"]
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
        pids = children(unshare_proc.pid)
        return pids[0] if pids else None

    return wait_for(child, what="unshare to fork PID 1")


def _can_unshare():
    if shutil.which("unshare") is None:
        return "unshare(1) is not installed"
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True)
    return (
        None if r.returncode == 0 else "unshare --pid not permitted: %s" % r.stderr.decode().strip()
    )


UNSHARE_PROBLEM = _can_unshare()
needs_pidns = pytest.mark.skipif(UNSHARE_PROBLEM is not None, reason=UNSHARE_PROBLEM or "")

#: unshare(1) options for a mount namespace of its own, whose mounts stay in it.
PRIVATE_MOUNTS = ("--mount", "--propagation", "private")
#: Runs the argv after it with an empty read-only tmpfs over /proc: only ever
#: in a mount namespace of its own (PRIVATE_MOUNTS), or it would hide ours.
WITHOUT_PROC = ["sh", "-c", 'mount -t tmpfs -o ro none /proc && exec "$@"', "sh"]


class PidNamespace:
    """`argv` run as PID 1 of a fresh PID namespace by `unshare --fork`.

    `unshare_args` are extra unshare(1) options (default: a /proc of the
    namespace's own). `before` wraps the unshare command (a cgroup's entry
    prefix, say). `pid` is the namespace's PID 1 as seen from here.
    """

    def __init__(
        self, argv, unshare_args=("--mount-proc",), before=None, await_pid1=True, **kwargs
    ):
        command = ["unshare", "--pid", "--fork", "--kill-child", *unshare_args] + list(argv)
        self.unshare = subprocess.Popen(before(command) if before else command, **kwargs)
        # Otherwise on first use of .pid: a PID 1 may be gone by then.
        self._pid = pid1_of(self.unshare) if await_pid1 else None

    @property
    def pid(self):
        if self._pid is None:
            self._pid = pid1_of(self.unshare)
        return self._pid

    def nsenter(self, argv, **kwargs):
        """Run `argv` inside the namespace, as a second container of a pod would."""
        return subprocess.run(self._entering(argv), **kwargs)

    def enter(self, argv, **kwargs):
        """Like nsenter(), but started in the background: return the Popen."""
        return subprocess.Popen(self._entering(argv), **kwargs)

    def _entering(self, argv):
        return ["nsenter", "--target", str(self.pid), "--pid", "--mount"] + list(argv)

    def members(self):
        """{pid: Stat} of the processes in the namespace (host PIDs)."""
        return pidns_members(self.pid)

    def zombies(self):
        """Zombies left for PID 1 to reap: its children in state Z."""
        return zombies_of(self.pid)

    def close(self):
        stop(self.unshare)


#: The variable that marks every process an Init started (see Init.close).
MARK_VARIABLE = "TEST_INIT_MARK"  # not PYPAUSE_*: pypause reads those


class InitProcess:
    """One pypause an Init started. `pid` is pypause's PID as seen from here;
    `proc` the Popen whose wait()/returncode is pypause's exit status (unshare
    for a PID 1: it exits as its child did); `ns` the PidNamespace (pid1 mode)
    or None. wait(), poll(), stdin, stdout and stderr are proc's."""

    def __init__(self, mode, proc, ns=None):
        self.mode, self.proc, self.ns = mode, proc, ns
        self.stdin, self.stdout, self.stderr = proc.stdin, proc.stdout, proc.stderr

    @property
    def pid(self):
        return self.ns.pid if self.ns else self.proc.pid

    def wait(self, timeout=None):
        return self.proc.wait(timeout)

    def poll(self):
        return self.proc.poll()

    def members(self):
        """{pid: Stat} of pypause and of what is in its care: every process of
        the namespace (pid1), pypause's descendants (subreaper)."""
        return self.ns.members() if self.ns else descendants(self.proc.pid)

    def zombies(self):
        """Zombies left for pypause to reap: its children in state Z."""
        return zombies_of(self.pid)


class Init:
    """Starts pypause in one of the two ways it runs, `mode`:

    "pid1": as PID 1 of a PID namespace of its own, by `unshare --pid --fork
    --mount-proc --kill-child` (a container); "subreaper": as a child of this
    test, so not PID 1, and a child subreaper (`docker run --init`, a pod
    sharing its PID namespace, a shell).

    `argv` is the whole command that becomes pypause: [PYPAUSE, ...], or a
    wrapper that execs it. `starter(argv, **popen_kwargs)` starts it in
    each mode (the pidns and procs fixtures). Every process started gets
    MARK_VARIABLE=<a value of this Init's> in its environment, and close()
    SIGKILLs, by PID, each pypause still running, then each process that holds
    the mark: what outlived pypause too.
    """

    def __init__(self, mode, start_pid1, start_subreaper):
        self.mode = mode
        self.pid1 = mode == "pid1"
        self._start_pid1, self._start_subreaper = start_pid1, start_subreaper
        self._mark = "%s=%s" % (MARK_VARIABLE, uuid.uuid4().hex)
        self._started = []

    def start(self, argv, **kwargs):
        """Start pypause in the background (kwargs as for Popen): an InitProcess."""
        name, value = self._mark.split("=")
        kwargs["env"] = {
            **(os.environ if kwargs.get("env") is None else kwargs["env"]),
            name: value,
        }
        if self.pid1:
            ns = self._start_pid1(list(argv), await_pid1=False, **kwargs)
            started = InitProcess(self.mode, ns.unshare, ns)
        else:
            started = InitProcess(self.mode, self._start_subreaper(list(argv), **kwargs))
        self._started.append(started)
        return started

    def run(self, argv, input=None, capture_output=False, timeout=20, check=False, **kwargs):
        """Run pypause to its end, as subprocess.run() does: a CompletedProcess."""
        if capture_output:
            kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
        if input is not None:
            kwargs["stdin"] = subprocess.PIPE
        proc = self.start(argv, **kwargs).proc
        out, err = proc.communicate(input, timeout)
        done = subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
        if check:
            done.check_returncode()
        return done

    def close(self):
        """SIGKILL by PID every process started here that is left, and reap ours."""
        for started in self._started:  # pypause's title has overwritten its environment
            if started.proc.poll() is None:
                # A PID 1 first: the kernel ends the rest of its namespace with it.
                for pid in (children(started.proc.pid) if started.ns else []) + [started.proc.pid]:
                    _kill(pid)
        self._kill_marked()
        for started in self._started:
            started.proc.wait(10)
            for stream in (started.stdin, started.stdout, started.stderr):
                if stream:
                    try:
                        stream.close()
                    except OSError:
                        pass

    def _kill_marked(self):
        """SIGKILL every process that holds this Init's mark, until none is left."""
        mark = self._mark.encode()
        for _ in range(200):  # again until none is left: one may fork meanwhile
            marked = [pid for pid in processes() if pid != os.getpid() and environ_holds(pid, mark)]
            if not marked:
                break
            for pid in marked:
                _kill(pid)
            time.sleep(0.01)


def _kill(pid):
    """SIGKILL `pid` unless it is gone."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
