"""A main child for the stress tests: says which signals it gets, obeys stdin.

usage: echo_child.py CODE

Every catchable signal except SIGCHLD and the fault signals is blocked and
collected with sigwaitinfo(), so each queued real-time signal is seen once
per sending (a Python handler would merge repeats). Each is written to stdout
as its number, one line each ("10" for SIGUSR1). SIGTERM writes "15" and
exits with CODE. Prints "ready" once set up.

Commands on stdin, one per line (read by a thread):
  write N   write N bytes to stderr (blocking writes of at most 64 KiB) and
            answer "wrote N", or "error ERRNO" if a write fails (EAGAIN...)
  flags     answer "flags F": the open-file flags of fd 2, in octal
EOF on stdin: exit with CODE.
"""

import fcntl
import os
import signal
import sys
import threading

code = int(sys.argv[1])
WAITED = set(signal.valid_signals()) - {
    signal.SIGKILL,
    signal.SIGSTOP,
    signal.SIGCHLD,
    signal.SIGSEGV,
    signal.SIGBUS,
    signal.SIGFPE,
    signal.SIGILL,
    signal.SIGABRT,
    signal.SIGTRAP,
    signal.SIGSYS,
}
signal.pthread_sigmask(signal.SIG_BLOCK, WAITED)  # before the thread: it inherits it


def commands():
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["write"]:
            total = int(words[1])
            try:
                left = total
                while left:
                    left -= os.write(2, b"e" * min(left, 65536))
                answer = "wrote %d" % total
            except OSError as e:
                answer = "error %d" % e.errno
            os.write(1, answer.encode() + b"\n")
        elif words[:1] == ["flags"]:
            os.write(1, b"flags %o\n" % fcntl.fcntl(2, fcntl.F_GETFL))
    os._exit(code)


threading.Thread(target=commands, daemon=True).start()
os.write(1, b"ready\n")
while True:
    signum = signal.sigwaitinfo(WAITED).si_signo
    os.write(1, b"%d\n" % signum)
    if signum == signal.SIGTERM:
        os._exit(code)
