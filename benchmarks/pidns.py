"""Run each init as PID 1 of its own PID namespace, and always end it.

Every init is measured as PID 1, as it runs in a container: PID 1 is where
orphans go, and an init may behave differently elsewhere (pypause, for
instance, loads ctypes to become a subreaper when it is not PID 1).

A process is started through a helper: the harness forks the helper, the
helper unshares CLONE_NEWPID and CLONE_NEWNS and forks again, and that child
mounts a /proc of its own (as `unshare --mount-proc` does: pypause reads
/proc with metrics on) and execs the init as PID 1 of the new namespace.
The helper only waits, so its own costs stay out of every measurement, and
the harness learns the init's PID directly.
(`unshare --pid --fork --mount-proc` would do the same with its own time
inside the measured window.)

Cleaning up never depends on the harness's goodwill: the helper and the init
both carry PR_SET_PDEATHSIG=SIGKILL, so if the harness dies the helper dies,
then the init dies, and the kernel kills everything left in the namespace.
Processes are ended by their PID, never by name.

Needs CAP_SYS_ADMIN (root) for the new namespaces.
"""

import ctypes
import os
import select
import signal
import time

from tests.support.proc import children

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
PR_SET_PDEATHSIG = 1
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 16384, 1 << 18

# Every init gets the same environment, the one a container runtime gives
# by default: PATH alone. Variables of the harness's own shell (a
# PYTHONDONTWRITEBYTECODE, say) would change what a Python init costs. The
# one exception is chosen on purpose: "pypause, PYTHON* set" (inits.py) gets
# PYTHONUNBUFFERED=1 on top of this, to measure what the variable costs it.
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

_libc = ctypes.CDLL(None, use_errno=True)
# Python turns these from the default into SIG_IGN or a handler, and an
# ignored disposition survives exec: reset them so every init starts as it
# would from a container runtime.
_RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT)


def _check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, "%s: %s" % (what, os.strerror(err)))


def _die_with_parent():
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")


def _enter_new_pid_namespace():
    """Make the next child of this process PID 1 of a new PID namespace."""
    _check(_libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")


def _enter_new_mount_namespace():
    """A mount namespace of our own whose mounts never propagate back to the host."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")


def _mount_own_proc():
    """Mount a /proc that shows the caller's PID namespace, as a container has."""
    _check(
        _libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None),
        "mount proc",
    )


def check_supported():
    """Raise OSError with the reason if this machine cannot run the benchmark."""
    pid = os.fork()
    if pid == 0:
        try:
            _enter_new_pid_namespace()
            _enter_new_mount_namespace()
            os._exit(0)
        except OSError as e:
            os._exit(e.errno or 1)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise OSError(
            code, "cannot create PID and mount namespaces (%s); run as root" % os.strerror(code)
        )


class LineReader:
    """Read newline-terminated lines from a pipe, with a deadline on each."""

    def __init__(self, fd):
        self.fd = fd
        self._buf = b""

    def readline(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise TimeoutError("no line from the process within %.1f s" % timeout)
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise EOFError("the process closed its output")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()


class Pid1:
    """An init running as PID 1 of its own PID namespace.

    `pid` is its PID as the harness sees it. With pipes=True, `send()` writes
    to its stdin and `readline()` reads its stdout: both are inherited by its child,
    which is how the harness talks to the test programs behind each init.
    `env` is its whole environment (default: ENV).
    """

    def __init__(self, argv, log_fd, pipes=False, env=None):
        self.argv = argv
        self.exit_code = None
        stdin_r, self._stdin_w = os.pipe() if pipes else (os.open(os.devnull, os.O_RDONLY), None)
        stdout_r, stdout_w = os.pipe() if pipes else (None, os.dup(log_fd))
        report_r, report_w = os.pipe()
        harness = os.getpid()
        self.helper = os.fork()
        if self.helper == 0:
            _helper(argv, ENV if env is None else env, harness, stdin_r, stdout_w, log_fd, report_w)
        for fd in (stdin_r, stdout_w, report_w):
            os.close(fd)
        self.out = LineReader(stdout_r) if pipes else None
        self._stdout_r = stdout_r
        try:
            self.pid = int(LineReader(report_r).readline(timeout=10))
        except (EOFError, TimeoutError, ValueError):
            self.pid = None
            self.stop()
            raise RuntimeError("could not start %s" % " ".join(argv)) from None
        finally:
            os.close(report_r)

    def readline(self, timeout):
        """The next line of the init's stdout; a clear error if it exits or stalls."""
        try:
            return self.out.readline(timeout)
        except (EOFError, TimeoutError) as e:
            state = "exited %s" % self.exit_code if not self.alive() else "still running"
            raise RuntimeError("%s (%s): %s" % (" ".join(self.argv[:2]), state, e)) from None

    def send(self, line):
        os.write(self._stdin_w, line.encode() + b"\n")

    def alive(self):
        """True while the init runs; once it has exited, exit_code says how."""
        if self.exit_code is None:
            pid, status = os.waitpid(self.helper, os.WNOHANG)
            if pid:
                self.exit_code = os.waitstatus_to_exitcode(status)
        return self.exit_code is None

    def wait(self, timeout):
        """Wait for the init to exit by itself; return its exit code."""
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                raise TimeoutError("%s did not exit within %.1f s" % (self.argv[0], timeout))
            time.sleep(0.005)
        return self.exit_code

    def stop(self):
        """Kill the init (and with it its whole namespace) and reap the helper."""
        if self.exit_code is None:
            if self.pid is not None:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            else:
                os.kill(self.helper, signal.SIGKILL)
            _, status = os.waitpid(self.helper, 0)
            self.exit_code = os.waitstatus_to_exitcode(status)
        for fd in (self._stdin_w, self._stdout_r):
            if fd is not None:
                os.close(fd)
        self._stdin_w = self._stdout_r = None


def _helper(argv, env, harness, stdin_fd, stdout_fd, log_fd, report_fd):
    """Body of the helper process: never returns."""
    code = 127
    try:
        _die_with_parent()
        if os.getppid() != harness:
            os._exit(code)  # the harness died before prctl took effect
        os.setsid()  # a ^C on the harness's terminal is for the harness alone
        _enter_new_pid_namespace()
        _enter_new_mount_namespace()
        pid = os.fork()
        if pid == 0:
            _exec_init(argv, env, stdin_fd, stdout_fd, log_fd)
        os.write(report_fd, b"%d\n" % pid)
        os.close(report_fd)
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        code = os.waitstatus_to_exitcode(status)
        code = code if code >= 0 else 128 - code
    finally:
        os._exit(code)


def _exec_init(argv, env, stdin_fd, stdout_fd, log_fd):
    try:
        _die_with_parent()
        _mount_own_proc()
        os.dup2(stdin_fd, 0)
        os.dup2(stdout_fd, 1)
        os.dup2(log_fd, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        for signum in _RESET_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        os.execve(argv[0], argv, env)
    except OSError as e:
        os.write(2, b"cannot exec %s: %s\n" % (argv[0].encode(), e.strerror.encode()))
    os._exit(127)


def time_as_pid1(argv, log_fd, env=None):
    """Run `argv` to its end as PID 1 of a new namespace; return (seconds, exit code, PID).

    The clock covers exactly spawn, run, exit and reap of the init: fork,
    unshare and reporting are outside it. No /proc of its own is mounted
    here, as that would have to happen inside the clock; no init reads /proc
    to start. The PID is the init's as the harness sees it, gone by the time
    this returns: it finds the init among process events (procevents.py).
    `env` is the init's whole environment (default: ENV).
    """
    report_r, report_w = os.pipe()
    harness = os.getpid()
    helper = os.fork()
    if helper == 0:
        code = 127
        try:
            os.close(report_r)
            _die_with_parent()
            if os.getppid() == harness:
                _enter_new_pid_namespace()
                devnull = os.open(os.devnull, os.O_RDWR)
                started = time.perf_counter_ns()
                pid = os.posix_spawn(
                    argv[0],
                    argv,
                    ENV if env is None else env,
                    file_actions=[
                        (os.POSIX_SPAWN_DUP2, devnull, 0),
                        (os.POSIX_SPAWN_DUP2, log_fd, 1),
                        (os.POSIX_SPAWN_DUP2, log_fd, 2),
                    ],
                    setsigdef=_RESET_SIGNALS,
                    setsigmask=(),
                )
                _, status = os.waitpid(pid, 0)
                elapsed = time.perf_counter_ns() - started
                os.write(
                    report_w, b"%d %d %d\n" % (elapsed, os.waitstatus_to_exitcode(status), pid)
                )
                code = 0
        finally:
            os._exit(code)
    os.close(report_w)
    try:
        line = LineReader(report_r).readline(timeout=30)
    except (EOFError, TimeoutError):
        line = None
        # posix_spawn cannot give the init a parent-death signal: end it
        # first (which ends its namespace), then the helper.
        for pid in children(helper) + [helper]:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.close(report_r)
        os.waitpid(helper, 0)
    if line is None:
        raise RuntimeError("timing run of %s failed" % " ".join(argv))
    elapsed, code, pid = line.split()
    return int(elapsed) / 1e9, int(code), int(pid)
