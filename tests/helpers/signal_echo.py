"""Say each signal received: the one signal echo of the tests and benchmarks.

usage: signal_echo.py [CODE] [--ignore SIG]... [--wait SIG]... [--numbers | --stamps]
                      [--exit-on-term] [--no-stdin]

The signals it waits for are blocked and taken with sigwaitinfo(), so each
queued real-time signal is seen once per sending (a Python handler would merge
repeats). By default that is every catchable signal but SIGCHLD and the fault
signals (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS). Prints
"ready" once set up, then one line per signal taken: its name ("SIGUSR1",
"SIG37" for one without a name of its own).

  CODE            the exit status (default 0)
  --ignore SIG    ignore SIG (SIG_IGN) instead of waiting for it
  --wait SIG      wait for SIG alone (repeatable); every other signal keeps its
                  default action
  --numbers       print each signal's number instead ("10" for SIGUSR1)
  --stamps        print instead the CLOCK_MONOTONIC time (ns) at which it woke
                  up with the signal: the signal-latency benchmark's child,
                  whose per-signal work is only that
  --exit-on-term  exit with CODE once SIGTERM is printed
  --no-stdin      do not read stdin (a background job's is /dev/null): only a
                  signal ends it

Unless --no-stdin, a thread reads commands on stdin, one per line:
  write N   write N bytes to stderr (blocking writes of at most 64 KiB) and
            answer "wrote N", or "error ERRNO" if a write fails (EAGAIN...)
  flags     answer "flags F": the open-file flags of fd 2, in octal
and EOF on stdin exits with CODE. With --no-stdin it imports only `os`,
`signal` and `time` (the benchmark's child: no thread, nothing more to start).
"""

import os
import signal
import sys
import time

FAULTS = {
    signal.SIGSEGV,
    signal.SIGBUS,
    signal.SIGFPE,
    signal.SIGILL,
    signal.SIGABRT,
    signal.SIGTRAP,
    signal.SIGSYS,
}
FLAGS = ("--numbers", "--stamps", "--exit-on-term", "--no-stdin")


def options(argv):
    """(CODE, {flag: given}, ignored signals, waited signals or None) from argv."""
    code, given, ignored, waited = 0, dict.fromkeys(FLAGS, False), set(), None
    args = iter(argv)
    for arg in args:
        if arg in given:
            given[arg] = True
        elif arg == "--ignore":
            ignored.add(getattr(signal, next(args)))
        elif arg == "--wait":
            waited = (waited or set()) | {getattr(signal, next(args))}
        elif arg.startswith("--"):
            sys.exit("signal_echo.py: no option %s" % arg)
        else:
            code = int(arg)
    return code, given, ignored, waited


def name(signum):
    if signum in signal.Signals._value2member_map_:
        return b"%s\n" % signal.Signals(signum).name.encode()
    return b"SIG%d\n" % signum


def number(signum):
    return b"%d\n" % signum


def stamp(signum):
    return b"%d\n" % time.monotonic_ns()


def commands(code):
    """Answer the commands on stdin; exit with `code` at its EOF."""
    import fcntl

    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["write"]:
            total = int(words[1])
            try:
                left = total
                while left:
                    left -= os.write(2, b"e" * min(left, 65536))
                answer = b"wrote %d\n" % total
            except OSError as e:
                answer = b"error %d\n" % e.errno
            os.write(1, answer)
        elif words[:1] == ["flags"]:
            os.write(1, b"flags %o\n" % fcntl.fcntl(2, fcntl.F_GETFL))
    os._exit(code)


def main():
    code, given, ignored, waited = options(sys.argv[1:])
    if waited is None:
        waited = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD}
        waited -= FAULTS | ignored
    for signum in ignored:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, waited)  # before the thread: it inherits it
    said = stamp if given["--stamps"] else number if given["--numbers"] else name
    if not given["--no-stdin"]:
        import threading

        threading.Thread(target=commands, args=(code,), daemon=True).start()
    os.write(1, b"ready\n")
    while True:
        signum = signal.sigwaitinfo(waited).si_signo
        os.write(1, said(signum))
        if signum == signal.SIGTERM and given["--exit-on-term"]:
            os._exit(code)


main()
