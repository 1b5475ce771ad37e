"""Make N orphans for the init of this PID namespace (or a subreaper) to reap.

usage: storm_maker.py N [--batch B] [--late] [--code CODE] [--go]

Orphans come in batches of B: a middle process starts B children and exits,
so the B children are handed to the reaper together. Without --late they exit
at once (`true`): a batch of zombies arrives at once. With --late every other
batch is of `cat` reading a pipe whose only writer is the middle: they arrive
alive, and exit one by one (EOF) as soon as the middle is gone, after being
adopted; each exit is then a SIGCHLD of its own for the reaper.

Children are started with posix_spawn (vfork + exec), 3-4 times faster than
os.fork() of a Python process. A start that fails with EAGAIN (a pids cgroup
limit, RLIMIT_NPROC) is counted; a middle that meets one ends its batch early
(its zombies count against the limit until the reaper takes them, so waiting
for them to go could wait forever) and the next middle goes on. Prints one
JSON line when done, {"orphans": N, "eagain": K}, and exits with CODE (0).
With --go it waits for a line on stdin before it starts.
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
    """Fork a middle that starts up to `size` children and exits; wait for it.

    Return how many children the middle left behind.
    """
    report_r, report_w = os.pipe()
    middle = retrying(os.fork, counter)
    if middle != 0:
        os.close(report_w)
        with os.fdopen(report_r) as report:
            made, eagain = map(int, (report.read() or "0 0").split())
        os.waitpid(middle, 0)
        counter[0] += eagain
        return made
    os.close(report_r)
    made = eagain = 0
    try:
        null = os.open(os.devnull, os.O_RDWR)
        if late:
            r, w = os.pipe()  # w is close-on-exec: the middle is its only holder
            actions = [(os.POSIX_SPAWN_DUP2, r, 0), (os.POSIX_SPAWN_DUP2, null, 1)]
            argv = (CAT, ["cat"])
        else:
            actions = [(os.POSIX_SPAWN_DUP2, null, 1)]
            argv = (TRUE, ["true"])
        while made < size:
            try:
                os.posix_spawn(*argv, os.environ, file_actions=actions)
            except BlockingIOError:
                eagain += 1
                if made:
                    break  # hand over what we made; the next middle goes on
                continue
            made += 1
    finally:
        os.write(report_w, b"%d %d" % (made, eagain))
        os._exit(0)  # orphans them all


def main():
    n = int(sys.argv[1])
    size = int(sys.argv[sys.argv.index("--batch") + 1]) if "--batch" in sys.argv else 100
    code = int(sys.argv[sys.argv.index("--code") + 1]) if "--code" in sys.argv else 0
    late = "--late" in sys.argv
    if "--go" in sys.argv:
        sys.stdin.readline()
    counter = [0]
    done = i = 0
    while done < n:
        done += batch(min(size, n - done), late and i % 2 == 1, counter)
        i += 1
    try:
        sys.stdout.write(json.dumps({"orphans": done, "eagain": counter[0]}) + "\n")
        sys.stdout.flush()
    except (AttributeError, OSError):  # stdout closed: nobody to tell
        pass
    sys.exit(code)


if __name__ == "__main__":
    main()
