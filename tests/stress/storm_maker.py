"""Make N orphans for the init of this PID namespace (or a subreaper) to reap.

usage: storm_maker.py N [--batch B] [--late]

Orphans come in batches of B: a middle process starts B children and exits,
so the B children are handed to the reaper together. Without --late they exit
at once (`true`): a batch of zombies arrives at once. With --late every other
batch is of `cat` reading a pipe whose only writer is the middle: they arrive
alive, and exit one by one (EOF) as soon as the middle is gone, after being
adopted; each exit is then a SIGCHLD of its own for the reaper.

Children are started with posix_spawn (vfork + exec), 3-4 times faster than
os.fork() of a Python process. A start that fails with EAGAIN (a pids cgroup
limit, RLIMIT_NPROC) is retried and counted. Prints one JSON line when done:
{"orphans": N, "eagain": K}.
"""
import json
import os
import shutil
import sys

TRUE = shutil.which("true")
CAT = shutil.which("cat")


def retrying(start, counter):
    while True:
        try:
            return start()
        except BlockingIOError:  # EAGAIN: the pids limit; retry until it lifts
            counter[0] += 1


def batch(size, late, counter):
    """Fork a middle that starts `size` children and exits; wait for the middle."""
    middle = retrying(os.fork, counter)
    if middle != 0:
        _, status = os.waitpid(middle, 0)
        counter[0] += os.waitstatus_to_exitcode(status)  # the middle's EAGAIN count
        return
    mine = [0]
    try:
        null = os.open(os.devnull, os.O_RDWR)
        if late:
            r, w = os.pipe()  # w is close-on-exec: the middle is its only holder
            actions = [(os.POSIX_SPAWN_DUP2, r, 0), (os.POSIX_SPAWN_DUP2, null, 1)]
            argv = (CAT, ["cat"])
        else:
            actions = [(os.POSIX_SPAWN_DUP2, null, 1)]
            argv = (TRUE, ["true"])
        for _ in range(size):
            retrying(lambda: os.posix_spawn(*argv, os.environ, file_actions=actions), mine)
    finally:
        os._exit(min(mine[0], 255))  # orphans them all


def main():
    n = int(sys.argv[1])
    size = int(sys.argv[sys.argv.index("--batch") + 1]) if "--batch" in sys.argv else 100
    late = "--late" in sys.argv
    counter = [0]
    done = i = 0
    while done < n:
        b = min(size, n - done)
        batch(b, late and i % 2 == 1, counter)
        done += b
        i += 1
    sys.stdout.write(json.dumps({"orphans": done, "eagain": counter[0]}) + "\n")


if __name__ == "__main__":
    main()
