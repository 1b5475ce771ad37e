"""Starting the main child exactly as pypause itself was started.

An init must be transparent: the child gets the signal mask and the ignored
signals that pypause inherited, not the ones pypause uses for its own work.
`subprocess` cannot do this (it never resets the signal mask) and glibc's
posix_spawn leaves its internal signals ignored, so the child is started with
a plain fork(), a reset of the signal mask, and exec().

Everything that can be prepared is prepared before the fork: the signal
dispositions (in pypause itself, where these signals are blocked anyway) and
the list of paths to try for the command (os.execvp would import `warnings`
in the child to read PATH). Between fork and exec the child runs as little
Python as possible: every page it touches is copied, which made the child's
start ~1 ms later.
"""

import _signal
import os

from pypause import log, terminal

#: typing-only imports without importing typing at run time (mypy: always_true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

# Python sets these to SIG_IGN (SIGPIPE, SIGXFSZ) or to a handler (SIGINT)
# before any of our code runs. What pypause's own parent gave is lost for the
# first two; a handler shows that SIGINT was not ignored (CPython keeps an
# inherited SIG_IGN for SIGINT).
_PYTHON_TOUCHED = (_signal.SIGPIPE, _signal.SIGXFSZ, _signal.SIGINT)
#: What runs a file without a #! line (glibc's _PATH_BSHELL).
_SHELL = "/bin/sh"
#: "Exec format error", the same number on every Linux architecture
#: (asm-generic/errno-base.h). Named here, not taken from `errno`: that module
#: builds a table of every code, ~0.1 ms of every start before the fork.
_ENOEXEC = 8
#: The errors after which execvp() goes on to the next directory of PATH.
_NOT_FOUND = (FileNotFoundError, NotADirectoryError)


class InheritedSignals:
    """The signal state pypause was started with, to be handed to the child."""

    def __init__(self, mask: "Iterable[int]") -> None:
        self.mask = mask
        self.ignored_sigint = _signal.getsignal(_signal.SIGINT) == _signal.SIG_IGN
        # An ignored SIGCHLD makes the kernel reap pypause's children itself and
        # send no SIGCHLD: the loop would never learn that the child exited.
        # pypause takes the default; the child gets the SIG_IGN back (as tini does).
        self.ignored_sigchld = _signal.getsignal(_signal.SIGCHLD) == _signal.SIG_IGN

    def restore_dispositions(self) -> None:
        """Give the signals Python touched the dispositions the child must start
        with, in pypause itself: pypause blocks them and collects them with
        sigwaitinfo(), so their disposition matters only to the child, which
        inherits it. SIGCHLD alone must be the default in pypause: the child
        gets it back in restore_in_child()."""
        for signum in _PYTHON_TOUCHED:
            keep_ignored = signum == _signal.SIGINT and self.ignored_sigint
            _signal.signal(signum, _signal.SIG_IGN if keep_ignored else _signal.SIG_DFL)
        _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)

    def restore_in_child(self) -> None:
        """In the child, before exec: what pypause had to change for itself."""
        if self.ignored_sigchld:
            _signal.signal(_signal.SIGCHLD, _signal.SIG_IGN)
        _signal.pthread_sigmask(_signal.SIG_SETMASK, self.mask)


def _candidates(name: str) -> list[str]:
    """The paths execvp() would try for `name`, in order."""
    if "/" in name:
        return [name]
    return [
        os.path.join(folder, name)
        for folder in os.environ.get("PATH", os.defpath).split(os.pathsep)
    ]


def _exec_first(candidates: "Iterable[str]", argv: list[str]) -> OSError:
    """exec() the first of `candidates` that can be run; return the error if
    none can: the first that is not "no such file", as execvp() does.

    A file the kernel cannot run (ENOEXEC: a script without a #! line) is run
    by /bin/sh, as glibc's execvp() does; if there is no /bin/sh, ENOEXEC.
    """
    saved = last = None
    for path in candidates:
        try:
            os.execv(path, argv)
        except OSError as e:
            if e.errno == _ENOEXEC:
                try:
                    os.execv(_SHELL, [_SHELL, path] + argv[1:])
                except OSError:
                    pass
            last = e
            if saved is None and not isinstance(e, _NOT_FOUND):
                saved = e
    return saved or last  # type: ignore[return-value]  # candidates: never empty


def close_inherited_fds() -> "int | None":
    """Close every descriptor from 3 up, once the child has its copies.

    pypause has opened none of them itself yet; holding them would keep a
    pipe handed to the container from reaching EOF when the app closes it,
    and listening sockets open after the app is gone (catatonit closes them
    too). Return how many were closed (None without /proc to count them).
    """
    try:
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc: every possible descriptor, unseen
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        return None
    closed = 0
    for fd in fds:
        if fd >= 3:
            try:
                os.close(fd)
                closed += 1
            except OSError:  # the listing's own descriptor, already closed
                pass
    return closed


def exec_status(error: OSError) -> int:
    """Exit status for a failed exec, as a shell reports it: 127 not found, else 126."""
    return 127 if isinstance(error, _NOT_FOUND) else 126


def _own_group(pid: int) -> None:
    """Put `pid` (0: ourselves) in a process group of its own.

    Signals for the child (a terminal's ^C, a -g forward) then reach its group
    and not pypause; EACCES once the child has exec'd: it did it itself.
    """
    try:
        os.setpgid(pid, 0)
    except OSError:
        pass


def _leave_working_directory() -> "int | None":
    """Move pypause to `/`; return a descriptor of where it was, for the child.

    Before the fork, not after: after it, the parent copies pages on every
    write (Python writes reference counts everywhere), and a child that looks
    at once could see pypause still in the old directory. None (pypause stays
    where it is, for main() to leave after the fork) if it cannot be opened.
    """
    try:
        cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        os.chdir("/")
    except OSError:
        os.close(cwd)
        return None
    return cwd


def spawn(argv: list[str], inherited: InheritedSignals) -> int:
    """Fork and exec `argv` (PATH is searched) with the inherited signal state.

    The child leads a new process group and, if pypause owns the terminal's
    foreground, becomes the foreground group; if LISTEN_PID names pypause
    (socket activation), the child's names the child. pypause itself is in
    `/` when this returns; the child runs in the directory pypause was started
    in. Return the child's PID.
    If the exec fails, the child reports why on stderr and exits with 127 (not
    found) or 126 (found but not runnable); the caller learns of it as of any
    other exit status. Must be called while every
    signal pypause waits for is blocked, so that no SIGCHLD can be missed.
    """
    # Asked before fork: the parent's setpgid() below may run first.
    foreground = terminal.in_foreground()
    candidates = _candidates(argv[0])
    # Socket activation (systemd's protocol, which podman speaks): fds meant
    # for "LISTEN_PID" are the child's to use, so it must name the child.
    activated = os.environ.get("LISTEN_PID") == str(os.getpid())
    cwd = _leave_working_directory()
    pid = os.fork()
    if pid:
        # Let the child run first, on this CPU if need be: its exec is what the
        # container waits for. Otherwise it often waited ~1 ms for this process,
        # whose writes to shared pages also slow it down until it has exec'd.
        os.sched_yield()
        _own_group(pid)  # also here: a -g forward may come before the child runs
        if cwd is not None:
            os.close(cwd)
        return pid
    status = 126
    try:
        if cwd is not None:
            os.fchdir(cwd)  # close-on-exec: the child does not inherit the descriptor
        _own_group(0)
        if foreground:
            terminal.take()
        inherited.restore_in_child()
        if activated:  # putenv(): what execv() hands on
            os.environ["LISTEN_PID"] = str(os.getpid())
        error = _exec_first(candidates, argv)
        status = exec_status(error)
        # The inherited mask may leave SIGPIPE deliverable, and its action is
        # the default: a stderr without a reader would turn 127 into 141.
        _signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGPIPE})
        log.error("cannot run %r: %s" % (argv[0], error.strerror))
    finally:
        os._exit(status)
