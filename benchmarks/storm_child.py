"""The main child of the reap-storm tests: leaves N orphans to the init at once.

Run behind the init under test, whose orphans it becomes as PID 1 of the
namespace. Two kinds of storm (argv: KIND N):

- "zombies": a parent forks N children that exit at once, without reaping
  them, then dies itself: N zombies are reparented to the init in one go.
  Each wait() finds a zombie first in the init's child list, so the CPU per
  orphan is the init's own cost of reaping one.
- "exits": N live orphans, already reparented to the init, are released at
  the same moment and exit while the init reaps. Closer to a crashing worker
  pool, but noisy: the kernel's wait() walks the init's list of children,
  alive ones included, so its cost depends on how the exits and the init's
  wake-ups interleave.

A third kind is no storm: "crowd" makes the init's namespace hold N
processes in all, for the scrape benchmark: HOLDERS parents that never wait,
holding ZOMBIES_EACH zombies each, and sleepers for the rest. It answers
"ready" once all exist, and ends them all on "exit".

Talks to the harness on stdin/stdout, one line each way:

  <- "ready"    the orphans-to-be exist and wait
  -> "go"       the storm starts
  <- "exited"   every orphan has exited (reaped by the init or not)
  -> "exit"     this program exits 0, and so should the init
"""

import os
import sys


def hold_zombies(count):
    """Fork `count` children that exit at once; return when all have, unreaped."""
    kids = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        kids.append(pid)
    for pid in kids:  # each one has exited; WNOWAIT leaves it a zombie
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


def zombies(count):
    go_r, go_w = os.pipe()
    parent = os.fork()
    if parent == 0:
        os.close(go_w)
        hold_zombies(count)
        answer("ready")
        os.read(go_r, 1)
        os._exit(0)  # the zombies go to the init
    os.close(go_r)
    expect("go")
    os.close(go_w)
    os.waitpid(parent, 0)
    answer("exited")


def exits(count):
    # Orphans wait on "release", whose only write end this program holds,
    # and each holds a write end of "done": EOF on "done" means all exited.
    release_r, release_w = os.pipe()
    done_r, done_w = os.pipe()
    parent = os.fork()
    if parent == 0:
        os.close(release_w)
        os.close(done_r)
        for _ in range(count):
            if os.fork() == 0:
                os.read(release_r, 1)  # EOF when the release pipe closes
                os._exit(0)
        os._exit(0)  # the live children go to the init
    os.close(release_r)
    os.close(done_w)
    os.waitpid(parent, 0)
    answer("ready")
    expect("go")
    os.close(release_w)
    while os.read(done_r, 4096):
        pass
    answer("exited")


HOLDERS, ZOMBIES_EACH = 10, 9


def crowd(count):
    # Everyone waits on "release", whose only write end this program holds.
    release_r, release_w = os.pipe()
    ready_r, ready_w = os.pipe()
    sleepers = count - 2 - HOLDERS * (1 + ZOMBIES_EACH)  # the init and this program
    for i in range(HOLDERS + sleepers):
        if os.fork() == 0:
            os.close(release_w)
            if i < HOLDERS:
                hold_zombies(ZOMBIES_EACH)
            os.write(ready_w, b".")
            os.read(release_r, 1)  # EOF when the release pipe closes
            os._exit(0)  # a holder's zombies go to the init
    os.close(release_r)
    os.close(ready_w)
    seen = 0
    while seen < HOLDERS + sleepers:
        seen += len(os.read(ready_r, 4096))
    answer("ready")
    expect("exit")
    os.close(release_w)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break


def answer(line):
    os.write(1, line.encode() + b"\n")


def expect(word):
    line = sys.stdin.readline().strip()
    if line != word:
        raise SystemExit("storm_child: expected %r, got %r" % (word, line))


if __name__ == "__main__":
    kind, count = sys.argv[1], int(sys.argv[2])
    if kind == "crowd":
        crowd(count)
    else:
        {"zombies": zombies, "exits": exits}[kind](count)
        expect("exit")
