"""The child of the signal-latency test, the same behind every init.

Blocks SIGUSR1 and sleeps in sigwaitinfo(); on each SIGUSR1 it writes the
CLOCK_MONOTONIC time (ns) at which it woke up. The harness reads the same
clock just before kill(init, SIGUSR1): the difference is the time the signal
took through the init, plus the kernel's wake-up of the child, which the
no-init baseline measures alone. Stamping in the child rather than timing a
round trip keeps the harness's own wake-up out of the figure.
"""

import os
import signal
import time

USR1 = {signal.SIGUSR1}
signal.pthread_sigmask(signal.SIG_BLOCK, USR1)
os.write(1, b"ready\n")
while True:
    signal.sigwaitinfo(USR1)
    os.write(1, b"%d\n" % time.monotonic_ns())
