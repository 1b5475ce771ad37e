"""The grace period: what pypause does with the processes left when the main
child has exited, before it exits itself.

Without a grace period PID 1 exits at once and the kernel SIGKILLs every
process left in the namespace, with no chance to clean up. With one, the rest
get SIGTERM, then up to SECONDS to exit, then SIGKILL.

Which processes are "the rest": as PID 1, every other process of the PID
namespace (kill(-1) reaches exactly those); otherwise the main child's process
group, which is all pypause started and can name.
"""

import os
import signal
import time

from pypause import log, signals

#: After SIGKILL, how long to wait for the kernel to finish the processes off.
_KILL_WAIT = 1.0


class Leftovers:
    """The processes still around after the main child exited."""

    def __init__(self, main_pid):
        self.as_pid1 = os.getpid() == 1
        self.pgid = main_pid  # the child made its own group, named after it

    def signal(self, signum):
        """Send `signum` to all of them; return False if there are none."""
        try:
            if self.as_pid1:
                os.kill(-1, signum)
            else:
                os.killpg(self.pgid, signum)
        except ProcessLookupError:
            return False
        return True

    def gone(self, reaper):
        """Reap what has exited; True once none of them is left."""
        reaper.reap_all()
        if self.as_pid1:
            try:  # as PID 1 every process left is our descendant, hence one is our child
                os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return True
            return False
        return not self.signal(0)


def grace(main_pid, reaper, seconds):
    """SIGTERM what is left, wait up to `seconds` for it to exit, then SIGKILL it.

    Waits on SIGCHLD only (no polling); other signals that arrive meanwhile are
    dropped: the main child they were meant for is gone.
    """
    rest = Leftovers(main_pid)
    if rest.gone(reaper) or not rest.signal(signal.SIGTERM):
        return
    what = "every process in the namespace" if rest.as_pid1 else "process group %d" % rest.pgid
    log.info("main child exited; sent SIGTERM to %s, waiting up to %gs" % (what, seconds))
    if _wait(rest, reaper, seconds):
        log.info("everything left exited within the grace period")
        return
    log.warning("grace period over; sending SIGKILL to %s" % what)
    rest.signal(signal.SIGKILL)
    _wait(rest, reaper, _KILL_WAIT)


def _wait(rest, reaper, seconds):
    deadline = time.monotonic() + seconds
    while not rest.gone(reaper):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        info = signal.sigtimedwait(signals.WAITED, remaining)
        if info is not None and info.si_signo != signal.SIGCHLD:
            log.debug("dropped signal during grace period", signal=signals.name(info.si_signo))
    return True
