"""The example's app: says what its PID 1 is, then exits with status 3."""

import os
import sys

with open("/proc/1/cmdline", "rb") as f:
    pid1 = " ".join(arg.decode() for arg in f.read().split(b"\0") if arg)
print("app: pid %d, parent %d, PID 1: %s" % (os.getpid(), os.getppid(), pid1), flush=True)
sys.exit(3)
