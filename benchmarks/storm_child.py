"""The main child of the reap-storm test: makes N orphans, then lets them die at once.

Run behind the init under test (so its orphans go to the init, PID 1 of the
namespace). Talks to the harness on stdin/stdout, one line each way:

  <- "ready"    N orphans exist, all blocked, all reparented to the init
  -> "go"       every orphan exits at the same moment (a storm of SIGCHLDs)
  <- "exited"   every orphan has exited (whether the init reaped it or not)
  -> "exit"     this program exits 0, and so should the init

Orphans are made by an intermediate process that forks them and exits. They
wait on a "release" pipe whose only write end this program holds, and each
holds a write end of a "done" pipe that closes when it exits: EOF on "done"
means all have exited, without polling.
"""

import os
import sys


def main(count):
    release_r, release_w = os.pipe()
    done_r, done_w = os.pipe()
    intermediate = os.fork()
    if intermediate == 0:
        os.close(release_w)
        os.close(done_r)
        for _ in range(count):
            if os.fork() == 0:
                os.read(release_r, 1)  # EOF when the release pipe closes
                os._exit(0)
        os._exit(0)
    os.close(release_r)
    os.close(done_w)
    os.waitpid(intermediate, 0)
    answer("ready")
    expect("go")
    os.close(release_w)
    while os.read(done_r, 4096):
        pass
    answer("exited")
    expect("exit")
    return 0


def answer(line):
    os.write(1, line.encode() + b"\n")


def expect(word):
    line = sys.stdin.readline().strip()
    if line != word:
        raise SystemExit("storm_child: expected %r, got %r" % (word, line))


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
