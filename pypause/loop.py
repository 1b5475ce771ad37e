"""The loop of PID 1: wait for a signal, then reap or forward, nothing else.

Every signal pypause handles is blocked in all threads and collected with
sigwaitinfo(), which sleeps in the kernel until one is pending: no handler
runs asynchronously, nothing races with the loop, and an idle pypause never
wakes up (tini wakes once a second to reap; pypause needs no timeout because
SIGCHLD is among the signals it waits for).
"""

import _signal
import os

from pypause import log, signals, terminal
from pypause.reaper import Reaper

#: typing-only imports without importing typing at run time (mypy: always_true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from pypause.cli import Config
    from pypause.events import Observer

# si_code values (asm-generic/siginfo.h) of signals sent by kill() and tgkill()
_SI_USER = 0
_SI_TKILL = -6


def run(
    config: "Config",
    main_pid: "int | None",
    events: "Observer",
    received: "Iterable[int]" = (),
) -> int:
    """Serve as init until it is time to exit; return pypause's exit status.

    `main_pid` is the main child in init mode, None in pause mode; `events`
    hears of what happens; `received` are signals that came before the loop
    could wait for them (a SIGINT caught during start-up), handled first.
    Every signal in signals.WAITED must already be blocked.
    """
    own_pid = os.getpid()
    reaper = Reaper(main_pid, events, config.warn_on_reap)
    child = _Child(main_pid, config.pgroup) if main_pid else None
    early = list(received)
    while True:
        try:
            signum, from_self = _next_signal(early, own_pid)
            if not from_self:
                events.signal_received(signum)
            # Always reap on SIGCHLD, even one pypause sent itself: a child's
            # SIGCHLD may have been merged into it.
            if signum == _signal.SIGCHLD:
                code, stop = reaper.reap_all()
                if code is not None:
                    # A code is only ever the main child's: main_pid is set.
                    return _finish(config, main_pid, reaper, code, events)  # type: ignore[arg-type]
                if stop in terminal.JOB_CONTROL_STOPS:
                    # A stop is only ever the main child's: child is set.
                    terminal.child_stopped(stop, child.pid, child.send, own_pid)  # type: ignore[union-attr]
            elif from_self:
                pass  # a SIGPIPE from a log write: not news
            elif child is None:
                if signum in signals.SHUTDOWN:
                    log.info("Shutting down, got signal: %s" % signals.describe(signum))
                    return 0
                log.debug("ignored signal", signal=signals.name(signum))
            else:
                _forward(child, signum, config.rewrite.get(signum, signum), events)
            events.heartbeat()
        except Exception as e:  # PID 1 must outlive its own bugs
            log.error("unexpected error in main loop: %r" % e)


def _next_signal(early: "list[int]", own_pid: int) -> "tuple[int, bool]":
    """(the next signal, True if pypause sent it itself): first what came
    before the loop (`early`, emptied as it goes), then sigwaitinfo()."""
    if early:
        return early.pop(0), False
    info = _signal.sigwaitinfo(signals.WAITED)
    return info.si_signo, info.si_pid == own_pid and info.si_code in (_SI_USER, _SI_TKILL)


class _Child:
    """The main child as the loop signals it: the child alone, or its whole
    process group with --pgroup (decided once, here)."""

    def __init__(self, pid: int, pgroup: bool) -> None:
        self.pid = pid
        self._kill = os.killpg if pgroup else os.kill
        self._told_eperm = False

    def send(self, signum: int) -> bool:
        """Send `signum`; False if the child is already gone (not an error) or
        may not be signalled (a setuid child of a non-root pypause: said once)."""
        try:
            self._kill(self.pid, signum)
        except ProcessLookupError:
            return False
        except PermissionError:
            if not self._told_eperm:
                self._told_eperm = True
                log.warning(
                    "not permitted to signal the main child; signals are not forwarded",
                    pid=self.pid,
                )
            return False
        return True


def _forward(child: _Child, received: int, signum: int, events: "Observer") -> None:
    """Forward `signum`, what -r makes of `received`, to the main child (or its
    group); 0 means dropped. A SIGCONT received (`fg`) first hands the
    terminal back to the child's group."""
    if received == _signal.SIGCONT:
        terminal.give_to(child.pid)
    if signum == 0:
        return
    if child.send(signum):
        events.signal_forwarded(signum)
        if log.threshold >= log.DEBUG:  # the hot path: no name lookup unless shown
            log.debug("forwarded signal", signal=signals.name(signum), pid=child.pid)


def _finish(config: "Config", main_pid: int, reaper: Reaper, code: int, events: "Observer") -> int:
    """The main child exited with `code`: deal with the rest, then say how to exit."""
    if config.grace_period is not None:
        from pypause import shutdown  # only now: most runs never have a grace period

        events.grace_period()
        shutdown.grace(main_pid, reaper, config.grace_period)  # never raises
    if code in config.expect_exit:
        log.debug("expected exit code, reporting 0", status=code)
        return 0
    return code
