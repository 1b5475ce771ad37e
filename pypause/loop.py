"""The loop of PID 1: wait for a signal, then reap or forward, nothing else.

Every signal pypause handles is blocked in all threads and collected with
sigwaitinfo(), which sleeps in the kernel until one is pending: no handler
runs asynchronously, nothing races with the loop, and an idle pypause never
wakes up (tini wakes once a second to reap; pypause needs no timeout because
SIGCHLD is among the signals it waits for).

SIGCHLD coalesces: many children exiting together may raise it once. Each
SIGCHLD therefore drains every exited child with waitpid(-1, WNOHANG), and
the main child's status is picked out of that same drain, so it cannot be
lost to it.
"""

import os
import signal

from pypause import log, procfs, signals

SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Until job control is settled: as tini, forward SIGTSTP, drop SIGTTIN/SIGTTOU.
NOT_FORWARDED = frozenset({signal.SIGCHLD, signal.SIGTTIN, signal.SIGTTOU})
# si_code values (asm-generic/siginfo.h) of signals sent by kill() and tgkill()
_SI_USER = 0
_SI_TKILL = -6


def exit_code(status):
    """Map a wait status to a shell-style exit code: the code, or 128+N for signal N."""
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


class Events:
    """What the loop reports as it goes; this default reports nothing.

    metrics.Metrics overrides every method. `needs_comm` asks the loop to
    read each orphan's command name before reaping it.
    """

    needs_comm = False

    def signal_received(self, signum):
        pass

    def signal_forwarded(self, signum):
        pass

    def orphan_reaped(self, comm):
        pass

    def child_exited(self, code):
        pass

    def heartbeat(self):
        pass


def _next_exited(needs_comm, main_pid):
    """Reap one exited child: (pid, wait status, comm), or None if none is left.

    With `needs_comm`, the child is first looked at without being reaped
    (waitid WNOWAIT) so that its /proc entry still exists to give its name.
    """
    try:
        if not needs_comm:
            pid, status = os.waitpid(-1, os.WNOHANG)
            return (pid, status, None) if pid else None
        info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is None:
            return None
        comm = procfs.comm(info.si_pid) if info.si_pid != main_pid else None
        pid, status = os.waitpid(info.si_pid, os.WNOHANG)
        return pid, status, comm
    except ChildProcessError:
        return None


def reap_all(main_pid, events):
    """Reap every child that has exited. Return the main child's exit code, or None.

    Never blocks. `main_pid` is None in pause mode.
    """
    main_code = None
    while True:
        exited = _next_exited(events.needs_comm, main_pid)
        if exited is None:
            return main_code
        pid, status, comm = exited
        if pid == main_pid:
            main_code = exit_code(status)
            events.child_exited(main_code)
            log.debug("main child exited", pid=pid, status=main_code)
        else:
            events.orphan_reaped(comm)
            log.debug("reaped orphan", pid=pid, status=exit_code(status))


def forward(pid, signum, events):
    """Send `signum` to the main child; a child that is already gone is no error."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return
    events.signal_forwarded(signum)
    log.debug("forwarded signal", signal=signals.name(signum), pid=pid)


def run(main_pid, events):
    """Serve as init until it is time to exit; return pypause's exit status.

    `main_pid` is the main child in init mode, None in pause mode; `events`
    hears of what happens. Every signal in signals.WAITED must already be blocked.
    """
    own_pid = os.getpid()
    while True:
        try:
            info = signal.sigwaitinfo(signals.WAITED)
            signum = info.si_signo
            from_self = info.si_pid == own_pid and info.si_code in (_SI_USER, _SI_TKILL)
            if not from_self:
                events.signal_received(signum)
            # Always reap on SIGCHLD, even one pypause sent itself: a child's
            # SIGCHLD may have been merged into it.
            if signum == signal.SIGCHLD:
                code = reap_all(main_pid, events)
                if code is not None:
                    return code
            elif from_self:
                pass  # a SIGPIPE from a log write, or /healthz waking us: not news
            elif main_pid is None:
                if signum in SHUTDOWN_SIGNALS:
                    log.info("Shutting down, got signal: %s" % signals.describe(signum))
                    return 0
                log.debug("ignored signal", signal=signals.name(signum))
            elif signum not in NOT_FORWARDED:
                forward(main_pid, signum, events)
            events.heartbeat()
        except Exception as e:  # PID 1 must outlive its own bugs
            log.error("unexpected error in main loop: %r" % e)

