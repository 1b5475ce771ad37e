"""The terminal and job control: the child's foreground on a terminal, and
what a stop of the main child means (docs/signals.md).

Before the fork, spawn asks whether pypause owns the terminal's foreground,
which the child then takes; in the loop, `fg` hands it back, and a stopped
main child either stops pypause (under a job-control shell) or is resumed.
"""

import _signal
import os

from pypause import log, signals

#: typing-only imports without importing typing at run time (mypy: always_true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

#: The stops of the main child that job control deals with (not SIGSTOP).
JOB_CONTROL_STOPS = frozenset({_signal.SIGTSTP, _signal.SIGTTIN, _signal.SIGTTOU})


def in_foreground() -> bool:
    """True if stdin is a terminal whose foreground group is ours: ours to hand on."""
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def take() -> None:
    """Make our group the terminal's foreground, so that shells and editors work
    (docker run -it). SIGTTOU is still blocked here, which lets a background
    group do it. A failure only costs the child its terminal, not its start."""
    try:
        os.tcsetpgrp(0, os.getpid())
    except OSError:
        pass


def give_to(main_pid: int) -> None:
    """After `fg` gave the terminal back to pypause's group, pass it on to the child's."""
    try:
        if os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp():
            os.tcsetpgrp(0, main_pid)
    except OSError:
        pass  # not our controlling terminal, or the child left its group


def child_stopped(stop: int, pid: int, send: "Callable[[int], bool]", own_pid: int) -> None:
    """The main child `pid` was stopped by `stop`: SIGTSTP, SIGTTIN or SIGTTOU.
    `send` signals it (and its group, with -g).

    Under a job-control shell, pypause stops too, so that the shell sees its
    job stopped and can resume it with `fg` (the SIGCONT is then forwarded).
    Anywhere else nothing could ever resume pypause, and a stopped process
    keeps even a runtime's SIGTERM pending: the container would hang. So the
    child is resumed at once.
    """
    if shell_above():
        log.debug("main child stopped; stopping pypause too", signal=signals.name(stop))
        os.kill(own_pid, _signal.SIGSTOP)
    else:
        log.warning(
            "main child stopped by %s; resuming it: no job-control shell "
            "could resume pypause" % signals.name(stop),
            pid=pid,
        )
        send(_signal.SIGCONT)


def shell_above() -> bool:
    """True if a shell runs pypause as a job and can resume it.

    Not being PID 1 does not say so (a pod sharing its PID namespace, `docker
    run --init`). A shell that does job control runs each job in a process
    group of its own, in its session, on its controlling terminal: pypause has
    a controlling terminal, and its parent is in the same session but another
    process group (POSIX: pypause's group is not orphaned; for an orphaned
    group the kernel itself discards SIGTSTP). A parent that is PID 1 is an
    init (`docker run -it --init`), not a shell.
    """
    parent = os.getppid()
    if os.getpid() == 1 or parent <= 1:
        return False
    try:
        os.close(os.open("/dev/tty", os.O_RDONLY | os.O_CLOEXEC))  # ENXIO: no terminal
        return os.getsid(parent) == os.getsid(0) and os.getpgid(parent) != os.getpgrp()
    except OSError:
        return False
