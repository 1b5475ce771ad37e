"""Reaping: collect every exited child in one pass, and pick out the main one.

SIGCHLD coalesces: many children exiting together may raise it once. Each
pass therefore drains every exited child until waitpid() says there is none
left, and the main child's status is picked out of that same drain, so it
cannot be lost to it.
"""

import os

from pypause import log, procfs

#: typing-only imports without importing typing at run time (mypy: always_true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pypause.events import Observer


def exit_code(status: int) -> int:
    """Map a wait status to a shell-style exit code: the code, or 128+N for signal N."""
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


class Reaper:
    """Reaps the children of pypause; tells the main child apart from orphans.

    `main_pid` is None in pause mode. With `inspects_zombies`, each orphan is
    first looked at without being reaped (waitid WNOWAIT) so that its /proc
    entry still exists to give its command name and its container.

    `events` hears of each reap only after the main child's status is kept;
    an observer that may raise comes wrapped in events.Guarded.
    """

    def __init__(
        self, main_pid: "int | None", events: "Observer", warn_on_reap: bool = False
    ) -> None:
        self.main_pid = main_pid
        self.events = events
        self.warn_on_reap = warn_on_reap
        self.inspects_zombies = events.inspects_zombies or warn_on_reap
        if self.inspects_zombies:
            from pypause import containers  # only here: nothing else needs it

            self._container_of = containers.of
        # Stops are only of interest for the main child (job control).
        self._stopped = os.WUNTRACED if main_pid else 0

    def reap_all(self) -> "tuple[int | None, int | None]":
        """Reap every child that has exited; never blocks.

        Return (exit code, stop signal) of the main child: the code if it
        exited, else None; the signal that stopped it if it stopped, else None.
        """
        code = stop = None
        while True:
            reaped = self._next()
            if reaped is None:
                break
            pid, status, comm, container = reaped
            if os.WIFSTOPPED(status):
                if pid == self.main_pid:
                    stop = os.WSTOPSIG(status)
            elif pid == self.main_pid:
                code = exit_code(status)
                log.debug("main child exited", pid=pid, status=code)
            else:
                self.events.zombie_reaped(comm, container)
                if self.warn_on_reap:
                    log.warning(
                        "reaped zombie",
                        pid=pid,
                        comm=comm,
                        status=exit_code(status),
                        container_id=container,
                    )
                elif log.threshold >= log.DEBUG:  # the hot path of a storm
                    log.debug("reaped zombie", pid=pid, status=exit_code(status))
        if code is not None:
            self.events.child_exited(code)
        return code, stop

    def _next(self) -> "tuple[int, int, str | None, str | None] | None":
        """(pid, wait status, comm, container) of one child that changed state,
        or None. comm and container are None for the main child and unless
        orphans are inspected."""
        try:
            if not self.inspects_zombies:
                pid, status = os.waitpid(-1, os.WNOHANG | self._stopped)
                return (pid, status, None, None) if pid else None
            info = os.waitid(
                os.P_ALL,
                0,
                os.WEXITED | os.WNOHANG | os.WNOWAIT | (os.WSTOPPED if self._stopped else 0),
            )
            if info is None:
                return None
            pid = info.si_pid
            comm = container = None
            if pid != self.main_pid:
                comm = procfs.comm(pid)
                container = self._container_of(pid, False)
            pid, status = os.waitpid(pid, os.WNOHANG | self._stopped)
            return (pid, status, comm, container) if pid else None
        except ChildProcessError:
            return None
