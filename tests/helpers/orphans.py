"""Leave N orphans: a middle process forks them and exits at once.

usage: orphans.py N HOLD [--stay]
Each orphan runs `sleep HOLD` (HOLD 0: exits at once, a storm of zombies).
Prints "orphaned" when the middle process is gone; with --stay, then waits
for stdin to close and exits 0.
"""

import os
import sys

n, hold = int(sys.argv[1]), sys.argv[2]
middle = os.fork()
if middle == 0:
    for _ in range(n):
        while True:
            try:
                pid = os.fork()
                break
            except BlockingIOError:  # fork limit: retry
                continue
        if pid == 0:
            if hold == "0":
                os._exit(0)
            # so that nobody waiting for our stdout's EOF waits for the orphans
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.execvp("sleep", ["sleep", hold])
    os._exit(0)
os.waitpid(middle, 0)
os.write(1, b"orphaned\n")
if "--stay" in sys.argv:
    while os.read(0, 1024):
        pass
