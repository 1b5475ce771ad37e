"""Entry point: set up PID 1 in the one order that is safe, then run the loop."""

import os
import signal
import sys

from pypause import cli, log, loop, signals, spawn, title


def main(argv=None):
    # Capture what the child must inherit, then block every handled signal
    # before anything else: a signal that arrives during start-up waits for
    # the loop instead of killing PID 1, and any thread started later
    # inherits the mask.
    inherited = spawn.InheritedSignals()
    signal.pthread_sigmask(signal.SIG_BLOCK, signals.WAITED)
    # Python ignores these; ignored signals are discarded even when blocked,
    # and a user may send them to be forwarded.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    _reserve_closed_stdio()

    argv = sys.argv[1:] if argv is None else argv
    try:
        config = cli.parse(argv, os.environ)
    except cli.UsageError as e:
        log.usage_error(str(e))
        return 2
    if config in ("help", "version"):
        _print(cli.help_text() if config == "help" else cli.version_text())
        return 0
    log.configure(config.verbosity, config.log_format)

    if os.getpid() != 1:
        _become_subreaper()
    if config.pdeathsig:
        _set_pdeathsig(config.pdeathsig)
    main_pid = None
    if config.command:
        try:
            main_pid = spawn.spawn(config.command, inherited)
        except OSError as e:  # fork() itself failed: EAGAIN at a pids limit, ENOMEM
            log.error("cannot start %r: fork failed: %s" % (config.command[0], e.strerror))
            return 1
    # An init must not keep a mount busy through its working directory.
    os.chdir("/")
    title.set_title(["pypause"] + argv)
    events = loop.Events()
    if config.metrics_addr:
        events = _start_metrics(config.metrics_addr, "init" if main_pid else "pause") or events
    code = loop.run(config, main_pid, events)
    # Nothing is left to tear down (no atexit work; the metrics threads are
    # daemons), and interpreter finalization would add ~3 ms to every run.
    os._exit(code)


def _start_metrics(addr, mode):
    """Metrics, or None if they cannot be served (pypause goes on without)."""
    from pypause import metrics  # only now: prometheus_client is heavy
    collected = metrics.Metrics(mode)
    return collected if metrics.serve(collected, *addr) else None


def _become_subreaper():
    from pypause import kernel  # ctypes: only needed when not PID 1
    try:
        kernel.set_child_subreaper()
    except OSError as e:
        log.warning("not PID 1 and cannot become a child subreaper: %s; "
                    "orphans will go to the real init" % e.strerror)
    else:
        log.debug("not PID 1: registered as a child subreaper", pid=os.getpid())


def _set_pdeathsig(signum):
    from pypause import kernel
    try:
        kernel.set_pdeathsig(signum)
    except OSError as e:
        log.warning("cannot set the parent-death signal: %s" % e.strerror)
    else:
        log.debug("parent-death signal set", signal=signals.name(signum))


def _reserve_closed_stdio():
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


def _print(text):
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except (OSError, ValueError, AttributeError):
        pass
