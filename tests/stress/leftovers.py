"""A main child that leaves N processes behind when it exits.

usage: leftovers.py N CODE FD

Forks a middle that forks N children and exits, so that the N are orphans of
the init. Even-numbered ones handle SIGTERM by writing "T" to FD and exiting;
odd ones ignore SIGTERM. Each holds FD open, so EOF on its read end means all
N are gone. Prints "ready" once all N are set up, then exits with CODE.
"""

import os
import signal
import sys

n, code, fd = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])


def on_term(signum, frame):
    os.write(fd, b"T")
    os._exit(0)


ready_r, ready_w = os.pipe()
middle = os.fork()
if middle == 0:
    os.close(ready_r)
    for i in range(n):
        if os.fork() == 0:
            signal.signal(signal.SIGTERM, on_term if i % 2 == 0 else signal.SIG_IGN)
            os.write(ready_w, b"R")
            os.close(ready_w)
            while True:
                signal.pause()
    os._exit(0)
os.close(ready_w)
os.waitpid(middle, 0)  # the middle is ours to reap; its N children go to the init
got = 0
while got < n:
    chunk = os.read(ready_r, n)
    assert chunk, "a leftover died before it was ready"
    got += len(chunk)
os.write(1, b"ready\n")
sys.exit(code)
