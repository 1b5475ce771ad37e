"""A parent that never waits: name itself COMM, have N children that exit at
once, and keep them as zombies.

usage: hold_zombies.py COMM N
Prints "holding" once all N have exited (seen with WNOWAIT, so none is
reaped); exits when stdin closes, which hands its zombies to the init.
"""

import os
import sys

comm, n = sys.argv[1], int(sys.argv[2])
with open("/proc/self/comm", "w") as f:
    f.write(comm)
children = []
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
os.write(1, b"holding\n")
while os.read(0, 1024):
    pass
