"""Starting the main child exactly as pypause itself was started.

An init must be transparent: the child gets the signal mask and the ignored
signals that pypause inherited, not the ones pypause uses for its own work.
`subprocess` cannot do this (it never resets the signal mask) and glibc's
posix_spawn leaves its internal signals ignored, so the child is started with
a plain fork(), a reset of the signal state, and exec().
"""

import errno
import os
import _signal

from pypause import log

# Python sets these to SIG_IGN (SIGPIPE, SIGXFSZ) or to a handler (SIGINT)
# before any of our code runs. What pypause's own parent gave is lost for the
# first two; a handler shows that SIGINT was not ignored (CPython keeps an
# inherited SIG_IGN for SIGINT).
_PYTHON_TOUCHED = (_signal.SIGPIPE, _signal.SIGXFSZ, _signal.SIGINT)


class InheritedSignals:
    """The signal state pypause was started with, to be handed to the child."""

    def __init__(self, mask):
        self.mask = mask
        self.ignored_sigint = _signal.getsignal(_signal.SIGINT) == _signal.SIG_IGN

    def restore_in_child(self):
        """Reset the calling (freshly forked) process to the inherited state."""
        for signum in _PYTHON_TOUCHED:
            keep_ignored = signum == _signal.SIGINT and self.ignored_sigint
            _signal.signal(signum, _signal.SIG_IGN if keep_ignored else _signal.SIG_DFL)
        _signal.pthread_sigmask(_signal.SIG_SETMASK, self.mask)


def exec_status(err):
    """Exit status for a failed exec, as a shell reports it: 127 not found, else 126."""
    return 127 if err in (errno.ENOENT, errno.ENOTDIR) else 126


def _own_group(pid):
    """Put `pid` (0: ourselves) in a process group of its own.

    Signals for the child (a terminal's ^C, a -g forward) then reach its group
    and not pypause; EACCES once the child has exec'd: it did it itself.
    """
    try:
        os.setpgid(pid, 0)
    except OSError:
        pass


def _take_terminal():
    """Make our group the terminal's foreground, so that shells and editors work
    (docker run -it). SIGTTOU is still blocked here, which lets a background
    group do it. A failure only costs the child its terminal, not its start."""
    try:
        os.tcsetpgrp(0, os.getpid())
    except OSError:
        pass


def _in_foreground():
    """True if stdin is a terminal whose foreground group is ours: ours to hand on."""
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def spawn(argv, inherited):
    """Fork and exec `argv` (PATH is searched) with the inherited signal state.

    The child leads a new process group and, if pypause owns the terminal's
    foreground, becomes the foreground group. Return the child's PID. If the exec fails, the child reports why on stderr
    and exits with 127 (not found) or 126 (found but not runnable); the caller
    learns of it as of any other exit status. Must be called while every
    signal pypause waits for is blocked, so that no SIGCHLD can be missed.
    """
    # Asked before fork: the parent's setpgid() below may run first.
    foreground = _in_foreground()
    pid = os.fork()
    if pid:
        _own_group(pid)  # also here: a -g forward may come before the child runs
        return pid
    status = 126
    try:
        _own_group(0)
        if foreground:
            _take_terminal()
        inherited.restore_in_child()
        try:
            os.execvp(argv[0], argv)
        except OSError as e:
            status = exec_status(e.errno)
            log.error("cannot run %r: %s" % (argv[0], e.strerror))
    finally:
        os._exit(status)
