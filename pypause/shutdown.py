"""The grace period: what pypause does with the processes left when the main
child has exited, before it exits itself.

Without a grace period PID 1 exits at once and the kernel SIGKILLs every
process left in the namespace, with no chance to clean up. With one, the rest
get SIGTERM and SIGCONT (a stopped process could not act on the SIGTERM; systemd
sends both too), then up to SECONDS to exit, then SIGKILL.

Which processes are "the rest": as PID 1, every other process of the PID
namespace (kill(-1) reaches exactly those, including processes that entered
it from outside, as `kubectl exec` does); otherwise the main child's process
group, which is all pypause started and can name. A process pypause may not
signal (another user's) is left out: it would not get the SIGTERM, so waiting
for it to act on one would only waste the grace period.

Waiting never polls. While any of the rest is a child of pypause, a SIGCHLD
wakes the wait; once none is (only processes that entered from outside, or
whose parent is still alive), a pidfd of each is polled for its exit.
"""

import _signal
import os
import select
import time

from pypause import log, procfs, signals

#: typing-only imports without importing typing at run time (mypy: always_true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pypause.reaper import Reaper

#: After SIGKILL, how long to wait for the kernel to finish the processes off.
_KILL_WAIT = 1.0
#: At most this many pidfds are watched at once. Watching some of the rest is
#: enough: the wait is over only when all have exited, so it is enough to wake
#: when one of the watched does and to look again.
MAX_PIDFDS = 64
_MAX_POLL_MS = 2**31 - 1


class Leftovers:
    """The processes still around after the main child exited."""

    def __init__(self, main_pid: int) -> None:
        self.own_pid = os.getpid()
        self.as_pid1 = self.own_pid == 1
        self.pgid = main_pid  # the child made its own group, named after it
        self.told_refused = False  # "not waiting for ..." is logged once

    def describe(self) -> str:
        return "every process in the namespace" if self.as_pid1 else "process group %d" % self.pgid

    def signal(self, signum: int) -> bool:
        """Send `signum` to all of them that pypause may signal; False if none is left.

        kill(-1) skips what it may not signal; killpg() says EPERM only when it
        could signal none of the group.
        """
        try:
            if self.as_pid1:
                os.kill(-1, signum)
            else:
                os.killpg(self.pgid, signum)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def alive(self) -> "dict[int, bool] | None":
        """{pid: is our child} of the rest that pypause may signal and has not
        seen the end of: still running, or a zombie of ours not yet reaped.

        None when /proc cannot tell (not mounted, or another namespace's).
        """
        found = procfs.processes()
        if found is None:
            return None
        alive = {}
        refused = []
        for pid, (_, state, ppid, pgrp) in found.items():
            if pid == self.own_pid or not (self.as_pid1 or pgrp == self.pgid):
                continue
            if state == "Z" and ppid != self.own_pid:
                continue  # exited; its parent reaps it (a zombie of ours waits for reap_all)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            except PermissionError:
                refused.append(pid)
                continue
            alive[pid] = ppid == self.own_pid
        if refused and not self.told_refused:
            self.told_refused = True
            log.warning(
                "not waiting for %d process(es) pypause may not signal" % len(refused),
                pid=refused[0],
            )
        return alive

    def any_child(self) -> bool:
        """Without /proc: True if any child of ours (as PID 1) or any process
        of the group that we may signal (otherwise) is left."""
        if self.as_pid1:
            try:  # as PID 1 every process left is our descendant, hence one is our child
                os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return False
            return True  # running, or a zombie that exited since the last reap: not gone
        return self.signal(0)


def grace(main_pid: int, reaper: "Reaper", seconds: float) -> None:
    """SIGTERM what is left, wait up to `seconds` for it to exit, then SIGKILL it.

    Returns when all of it has exited or been killed. Never raises: pypause
    must exit with the main child's status whatever happens here.
    """
    try:
        rest = Leftovers(main_pid)
        if _all_gone(rest, reaper) or not rest.signal(_signal.SIGTERM):
            return
        rest.signal(_signal.SIGCONT)
        log.info(
            "main child exited; sent SIGTERM to %s, waiting up to %gs" % (rest.describe(), seconds)
        )
        if _wait(rest, reaper, seconds):
            log.info("everything left exited within the grace period")
            return
        log.warning("grace period over; sending SIGKILL to %s" % rest.describe())
        rest.signal(_signal.SIGKILL)
        _wait(rest, reaper, _KILL_WAIT)
    except Exception as e:  # a bug here must not cost the child's exit status
        log.error("grace period cut short: %r" % e)


def _all_gone(rest: Leftovers, reaper: "Reaper") -> bool:
    reaper.reap_all()
    return _waiting_for(rest) is None


def _waiting_for(rest: Leftovers) -> "list[int] | None":
    """What the wait is for: the PIDs whose exit to watch (by pidfd); [] when
    a child of pypause is left, whose SIGCHLD will come; None when nothing is."""
    alive = rest.alive()
    if alive is None:
        return [] if rest.any_child() else None
    if any(alive.values()):
        return []
    return list(alive)[:MAX_PIDFDS] or None


def _wait(rest: Leftovers, reaper: "Reaper", seconds: float) -> bool:
    """Wait until nothing is left (True) or `seconds` have passed (False)."""
    deadline = time.monotonic() + seconds
    while True:
        reaper.reap_all()
        what = _waiting_for(rest)
        if what is None:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if what:
            _wait_for_exit(what, remaining)
        else:  # a child's SIGCHLD
            info = _signal.sigtimedwait(signals.WAITED, remaining)
            if info is not None and info.si_signo != _signal.SIGCHLD:
                log.debug("dropped signal during grace period", signal=signals.name(info.si_signo))


def _wait_for_exit(pids: list[int], seconds: float) -> None:
    """Sleep until one of `pids` exits or `seconds` pass; signals stay pending.

    Without pidfds (Linux < 5.3, a seccomp filter, no fd left) there is
    nothing to wake on: the wait lasts until a signal or the deadline.
    """
    fds = []
    try:
        for pid in pids:
            try:
                fds.append(os.pidfd_open(pid))
            except ProcessLookupError:
                return  # already gone: look again
            except OSError:
                break
        if not fds:
            _signal.sigtimedwait(signals.WAITED, seconds)
            return
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        # poll() takes at most INT_MAX ms (24.8 days); the caller looks again.
        poller.poll(min(_MAX_POLL_MS, max(1, int(seconds * 1000 + 0.999))))
    finally:
        for fd in fds:
            os.close(fd)
