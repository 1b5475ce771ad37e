"""A main child for the stress tests: says which signals it gets, obeys stdin.

usage: echo_child.py CODE

Every catchable signal but SIGCHLD and SIGTERM is handled: its number is
written to stdout, one line each ("10" for SIGUSR1). SIGTERM writes "15" and
exits with CODE. Prints "ready" once set up. Commands on stdin, one per line:

  write N   write N bytes to stderr (blocking, in pieces of at most 64 KiB) and
            answer "wrote N", or "error ERRNO" if a write fails (EAGAIN...)
  flags     answer "flags F": the open-file flags of fd 2, in octal
EOF stdin: exit with CODE.
"""
import fcntl
import os
import signal
import sys

code = int(sys.argv[1])


def echo(signum, frame):
    os.write(1, b"%d\n" % signum)
    if signum == signal.SIGTERM:
        os._exit(code)


for signum in signal.valid_signals():
    if signum in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
        continue
    try:
        signal.signal(signum, echo)
    except (OSError, ValueError):
        pass

os.write(1, b"ready\n")
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
sys.exit(code)
