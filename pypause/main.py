"""Entry point: set up PID 1 in the one order that is safe, then run the loop.

What is loaded when: until the child runs, only what starting it needs, all
of it on C modules (`_signal`, not `signal`, which imports enum): the command
line (cli), log lines (log), the signal sets (signals), fork/exec (spawn) and
the terminal's foreground (terminal), after the command script's
pypause.isolation. The loop, the process title
and the metrics are imported in serve(), once the child runs.
tests/test_transparency.py pins this.
"""

import _signal
import os
import sys

from pypause import cli, log, signals, spawn

#: typing-only imports without importing typing at run time (mypy: always_true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from pypause.events import Observer


def main(
    argv: "list[str] | None" = None, started: "tuple[Iterable[int], bool] | None" = None
) -> int:
    """Run pypause; return an exit status only for help, version and usage errors.

    `started` is what the command script (bin/pypause) did before importing
    the package: (the signal mask pypause inherited, True if a SIGINT came
    before it could be blocked), with every signal already blocked. Without
    it (`python -m pypause`, tests) the signals are blocked here.
    """
    if started is None:
        started = (_signal.pthread_sigmask(_signal.SIG_BLOCK, signals.WAITED), False)
    inherited_mask, early_sigint = started
    # Keep blocked every signal pypause waits for, from now on in every
    # thread too (threads inherit the mask), plus what was blocked already.
    _signal.pthread_sigmask(_signal.SIG_SETMASK, signals.WAITED | set(inherited_mask))
    inherited = spawn.InheritedSignals(inherited_mask)
    # Python ignores SIGPIPE and SIGXFSZ (ignored signals are discarded even
    # when blocked, and a user may send them to be forwarded) and has its own
    # SIGINT handler: the child's dispositions, set here before any fork.
    inherited.restore_dispositions()
    _reserve_closed_stdio()

    argv = sys.argv[1:] if argv is None else argv
    try:
        config = cli.parse(argv, os.environ)
    except cli.UsageError as e:
        log.usage_error(str(e))
        return 2
    if config.show:
        _print(cli.help_text() if config.show == "help" else cli.version_text())
        return 0
    log.configure(config.verbosity, config.log_format)

    _set_process_attributes(config.pdeathsig)
    main_pid = None
    if config.command:
        if not config.command[0]:  # execvp("") would raise ValueError, not ENOENT
            log.error("cannot run '': empty command name")
            return 127
        try:
            main_pid = spawn.spawn(config.command, inherited)
        except OSError as e:  # fork() itself failed: EAGAIN at a pids limit, ENOMEM
            log.error("cannot start %r: fork failed: %s" % (config.command[0], e.strerror))
            return 1
    # An init must not keep a mount busy through its working directory (in init
    # mode spawn() left it already, before the fork, where it could).
    os.chdir("/")
    if main_pid:
        closed = spawn.close_inherited_fds()
        if closed:
            log.debug("closed the descriptors the child inherited", count=closed)
    os._exit(serve(config, main_pid, argv, early_sigint))


def serve(config: cli.Config, main_pid: "int | None", argv: list[str], early_sigint: bool) -> int:
    """Everything after the child runs: title, metrics, the loop; its exit status.

    The caller exits with os._exit(): nothing is left to tear down (no atexit
    work; the metrics thread is a daemon), and interpreter finalization would
    add ~3 ms to every run.
    """
    from pypause import loop, title  # only now: the child is already running
    from pypause.events import Observer

    title.set_title(["pypause"] + argv)
    if config.warn_on_reap:
        # Before pause mode gives root up: its venv may be unreadable to 65535.
        from pypause import containers  # noqa: F401
    events = Observer()
    # Pause mode gives up root once its port is bound; in init mode the app's
    # image decides the user.
    bound = (lambda: _drop_privileges(config.user)) if main_pid is None else None
    if config.metrics_addr:
        events = (
            _start_metrics(config.metrics_addr, "init" if main_pid else "pause", bound) or events
        )
    elif bound:
        bound()
    return loop.run(config, main_pid, events, (_signal.SIGINT,) if early_sigint else ())


def _start_metrics(
    addr: "tuple[str | None, int]", mode: str, bound: "Callable[[], None] | None"
) -> "Observer | None":
    """Metrics, or None if they cannot be served (pypause goes on without).
    `bound()` is called once the port is bound or metrics gave up (see metrics.serve).

    Never raises: the child is already running, and PID 1 must go on.
    """
    called: list[bool] = []

    def bound_once() -> None:  # serve() may have called it before it failed
        if bound and not called:
            called.append(True)
            bound()

    try:
        from pypause import metrics  # only when asked for: prometheus_client is heavy
        from pypause.events import Guarded

        collected = metrics.Metrics(mode)
        served = metrics.serve(collected, *addr, bound_once)
    except Exception as e:  # a missing or broken prometheus_client, a bug
        log.error("metrics disabled: %r" % e)
        bound_once()
        return None
    return Guarded(collected) if served else None


def _drop_privileges(user: "tuple[int, int] | None") -> None:
    """Become `user` (uid, gid), or the pause user if started as root and none was asked for.

    Pause mode needs no privilege once its port is bound: reaping, /proc and
    the metrics work as any user. CRI-O and podman start the sandbox as root.
    """
    if user is None:
        if os.geteuid() != 0:
            return
        user = cli.PAUSE_USER
    if user[0] == 0:  # --user root
        return
    from pypause import privileges

    try:
        privileges.become(*user)
    except OSError as e:
        log.warning(
            "cannot become user %d:%d: %s; going on as uid %d" % (*user, e.strerror, os.geteuid())
        )
    else:
        log.debug("privileges dropped", uid=user[0], gid=user[1])


def _set_process_attributes(pdeathsig: "int | None") -> None:
    """Adopt orphans when not PID 1 (a subreaper); ask for `pdeathsig`, if any,
    when pypause's own parent dies."""
    if os.getpid() != 1:
        _become_subreaper()
    if pdeathsig:
        _set_pdeathsig(pdeathsig)


def _become_subreaper() -> None:
    from pypause import kernel  # ctypes: only needed when not PID 1

    try:
        kernel.set_child_subreaper()
    except OSError as e:
        log.warning(
            "not PID 1 and cannot become a child subreaper: %s; "
            "orphans will go to the real init" % e.strerror
        )
    else:
        log.debug("not PID 1: registered as a child subreaper", pid=os.getpid())


def _set_pdeathsig(signum: int) -> None:
    from pypause import kernel

    try:
        kernel.set_pdeathsig(signum)
    except OSError as e:
        log.warning("cannot set the parent-death signal: %s" % e.strerror)
    else:
        log.debug("parent-death signal set", signal=signals.name(signum))


def _reserve_closed_stdio() -> None:
    """Hold any closed fd 0-2 on /dev/null, close-on-exec.

    Otherwise the next file pypause opens would become "stderr" and receive log
    lines. Close-on-exec keeps them closed for the child, as it was given them.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            except OSError:
                pass


def _print(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except (OSError, ValueError, AttributeError):
        pass
