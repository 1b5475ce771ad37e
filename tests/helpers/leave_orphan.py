"""Leave one orphan that exits once it has been re-parented, then exec a command.

usage: leave_orphan.py COMMAND [ARG...]
A middle process forks the orphan and exits; the orphan waits until its
parent is no longer the middle one (it was adopted by the nearest subreaper
or PID 1), then exits: a zombie for its new parent to reap. Prints
"orphan PID" once the middle process is gone, then execs COMMAND.
"""

import os
import sys
import time

read_end, write_end = os.pipe()
middle = os.fork()
if middle == 0:
    orphan = os.fork()
    if orphan == 0:
        os.close(read_end)
        os.close(write_end)
        while os.getppid() == middle:
            time.sleep(0.001)
        os._exit(0)
    os.write(write_end, b"%d" % orphan)
    os._exit(0)
os.close(write_end)
orphan = int(os.read(read_end, 64))
os.close(read_end)
os.waitpid(middle, 0)
os.write(1, b"orphan %d\n" % orphan)
os.execvp(sys.argv[1], sys.argv[1:])
