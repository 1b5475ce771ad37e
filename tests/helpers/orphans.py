"""Leave orphans to the nearest reaper, or hold zombies: the one orphan maker of
the tests and the benchmarks.

usage: orphans.py N [OPTION...] [-- COMMAND [ARG...]]

A middle process starts N children and exits, so that they are orphans, which
the nearest reaper (PID 1 of the PID namespace, or a subreaper) adopts. This
program reaps the middle and prints "orphaned", followed by the PIDs of the
orphans that live on, once they all are set up.

What each orphan is (default: a fork of this interpreter that exits at once):
  --sleep S         `sleep S`, exec'd with stdio on /dev/null (so that nobody
                    waiting for our stdout's EOF waits for the orphans)
  --spawn           `true`, started with posix_spawn (vfork + exec), 3-4 times
                    faster than os.fork() of a Python process
  --late            with --spawn: every other batch is of `cat` reading a pipe
                    whose only writer is the middle. They arrive alive, and exit
                    one by one (EOF) as soon as the middle is gone, after being
                    adopted: each exit is then a SIGCHLD of its own
  --held            exits at once, but the middle keeps its children as zombies
                    and exits only when let go: a batch of zombies arrives at once
  --until-released  lives on until let go: it reads a pipe whose only write end
                    this program holds (so it goes too when this program ends)
  --until-killed    lives on until a signal ends it
  --comm NAME       with one of the last two: names itself NAME
  --term-fd FD      with --until-killed: the 1st, 3rd, 5th... catch SIGTERM,
                    write "T" to FD and exit; the others ignore SIGTERM

How they come:
  --batch B   in batches of B, a middle each (default: all in one). A start that
              fails with EAGAIN (a pids cgroup limit, RLIMIT_NPROC) is counted
              and retried, but a middle that has started some ends its batch
              there (its zombies count against the limit until the reaper takes
              them, so waiting for them to go could wait forever): the next
              middle goes on.
  --every S   a batch every S seconds instead, until EOF on stdin, which
              answers "done M" (M: orphans made so far). Commands on stdin, one
              a line: "pause" stops, answering "paused M"; "resume" goes on.

Instead of orphans:
  --zombies   this program's own N children exit at once and it keeps them as
              zombies (seen with waitid WNOWAIT), which go to the reaper when it
              exits; --comm NAME names it (and them). Prints "holding".
  --crowd     with --storm: the PID namespace holds N processes in all (its PID 1
              and this program included), this program's children: 10 parents
              that never wait, holding 9 zombies each, and the others; all live
              on until let go.

With --go it first waits for a line on stdin. Once they are made and it has
said so, it (one of; default: ends at once)
  --report    prints {"orphans": N, "eagain": K} (JSON; K: the EAGAINs met)
              instead of "orphaned"
  --stay      waits for EOF on stdin
  --forever   waits until a signal ends it
  --storm     speaks the benchmark's protocol, a line each way:
                <- "ready"   (instead of "orphaned") they exist and wait
                -> "go"      it lets them go and waits until all have exited
                <- "exited"
                -> "exit"
  --reaped    lets them go and waits, 30 s at most, until each orphan that lived
              on is gone: reaped, not just exited (kill(PID, 0) fails). Prints
              "reaped N".
  -- COMMAND  execs COMMAND.
It lets go what it holds (and reaps the middles of --held ones) before it ends
or execs. Exit status: CODE (--code CODE; default 0), 1 if --reaped gave up.

The container tests run this file with the pause image's python3 -c, whose
standard library is only what pypause imports (`_signal`, not `signal`): an
option that needs more imports it.
"""

import _signal
import os
import sys

VALUED = ("--sleep", "--comm", "--term-fd", "--batch", "--every", "--code")
FLAGS = (
    "--spawn",
    "--late",
    "--held",
    "--until-released",
    "--until-killed",
    "--zombies",
    "--crowd",
    "--go",
    "--report",
    "--stay",
    "--forever",
    "--storm",
    "--reaped",
)
HOLDERS, ZOMBIES_EACH = 10, 9  # of --crowd


def options(argv):
    """(N, {option: value or None, flag: given}, COMMAND) from argv."""
    given = {**dict.fromkeys(FLAGS, False), **dict.fromkeys(VALUED)}
    args = iter(argv[1:])
    for arg in args:
        if arg == "--":
            break
        if arg not in given:
            sys.exit("orphans.py: no option %s" % arg)
        given[arg] = next(args) if arg in VALUED else True
    return int(argv[0]), given, list(args)


N, GIVEN, COMMAND = options(sys.argv[1:])
LIVE = GIVEN["--until-released"] or GIVEN["--until-killed"]
# EOF on the release pipe, whose write end this program alone holds, lets go.
# Each process that lives on closes its end of the set-up pipe once set up,
# and holds its end of the alive pipe until it exits: EOF on the one means that
# all are set up, on the other that all are gone. (Closing, not writing: the
# kernel adds an orphan's writes to its reaper's I/O counters, which a test reads.)
RELEASE_R, RELEASE_W = os.pipe()
SET_UP_R, SET_UP_W = os.pipe()
ALIVE_R, ALIVE_W = os.pipe()
if GIVEN["--spawn"]:
    import shutil

    TRUE, CAT = shutil.which("true"), shutil.which("cat")
pending = []  # children of this program that exit once let go, to reap then
eagain = 0  # EAGAINs met


def fork_from_top():
    """os.fork() by this program; the child closes the ends only this program holds."""
    pid = os.fork()
    if pid == 0:
        for fd in (RELEASE_W, SET_UP_R, ALIVE_R):
            os.close(fd)
    return pid


def retrying(start):
    global eagain
    while True:
        try:
            return start()
        except BlockingIOError:  # EAGAIN: the pids limit; retry until it lifts
            eagain += 1


def name_self(comm):
    with open("/proc/self/comm", "w") as f:
        f.write(comm)


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


def live_on(index):
    """The rest of the life of an orphan (or crowd member) that lives on."""
    if GIVEN["--comm"]:
        name_self(GIVEN["--comm"])
    if GIVEN["--term-fd"]:
        fd = int(GIVEN["--term-fd"])

        def on_term(signum, frame):
            os.write(fd, b"T")
            os._exit(0)

        _signal.signal(_signal.SIGTERM, _signal.SIG_IGN if index % 2 else on_term)
    os.close(SET_UP_W)
    if GIVEN["--until-killed"]:
        while True:
            _signal.pause()
    os.read(RELEASE_R, 1)  # EOF once let go
    os._exit(0)


def forked_orphan(index, report_w):
    """Fork orphan-to-be number `index` of a middle; return its PID."""
    pid = os.fork()
    if pid:
        return pid
    os.close(report_w)
    if GIVEN["--sleep"]:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.execvp("sleep", ["sleep", GIVEN["--sleep"]])
    if LIVE:
        live_on(index)
    os._exit(0)


def spawner(late):
    """A function that starts one `true` (`late`: `cat` on a pipe) with posix_spawn."""
    null = os.open(os.devnull, os.O_RDWR)
    if late:
        r, w = os.pipe()  # w is close-on-exec: the middle is its only holder
        actions = [(os.POSIX_SPAWN_DUP2, r, 0), (os.POSIX_SPAWN_DUP2, null, 1)]
        argv = (CAT, ["cat"])
    else:
        actions = [(os.POSIX_SPAWN_DUP2, null, 1)]
        argv = (TRUE, ["true"])

    def spawn(index, report_w):  # called as forked_orphan is
        return os.posix_spawn(*argv, os.environ, file_actions=actions)

    return spawn


def batch(first, size, late):
    """Fork a middle that starts up to `size` orphans (numbered from `first`) and
    exits, or with --held exits once let go; wait for it, or keep it pending.

    Return the PIDs of the orphans the middle left behind.
    """
    global eagain
    report_r, report_w = os.pipe()
    middle = retrying(fork_from_top)
    if middle != 0:
        os.close(report_w)
        with open(report_r, "rb") as report:
            met, *kids = map(int, report.read().split() or [0])
        eagain += met
        if GIVEN["--held"]:
            pending.append(middle)
        else:
            os.waitpid(middle, 0)
        return kids
    os.close(report_r)
    met = 0
    kids = []
    try:
        start = spawner(late) if GIVEN["--spawn"] else forked_orphan
        while len(kids) < size:
            try:
                kids.append(start(first + len(kids), report_w))
            except BlockingIOError:
                met += 1
                if kids:
                    break  # hand over what we made; the next middle goes on
        os.close(SET_UP_W)
        os.close(ALIVE_W)
        if GIVEN["--held"]:
            for pid in kids:  # each one has exited; WNOWAIT leaves it a zombie
                os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    finally:
        os.write(report_w, b" ".join(b"%d" % n for n in [met, *kids]))
        os.close(report_w)
        if GIVEN["--held"]:
            os.read(RELEASE_R, 1)  # EOF once let go
        os._exit(0)  # orphans them all


def crowd():
    """HOLDERS parents of ZOMBIES_EACH zombies, and others, N processes in all
    with this program and its PID 1: children of this program that live on."""
    others = N - 2 - HOLDERS * (1 + ZOMBIES_EACH)
    for i in range(HOLDERS + others):
        pid = fork_from_top()
        if pid == 0:
            if i < HOLDERS:
                hold_zombies(ZOMBIES_EACH)
            live_on(i)  # a holder's zombies go to the reaper once it is let go
        pending.append(pid)


def make():
    """Make the orphans (or zombies, or the crowd); return the line that says so
    and the PIDs of the orphans that live on."""
    if GIVEN["--zombies"]:
        if GIVEN["--comm"]:
            name_self(GIVEN["--comm"])
        hold_zombies(N)
        return b"holding", []
    orphans = []
    if GIVEN["--crowd"]:
        crowd()
    else:
        size = int(GIVEN["--batch"] or N)
        i = 0
        while len(orphans) < N:
            late = GIVEN["--late"] and i % 2 == 1
            orphans += batch(len(orphans), min(size, N - len(orphans)), late)
            i += 1
    os.close(SET_UP_W)
    os.close(ALIVE_W)
    if LIVE or GIVEN["--crowd"]:
        while os.read(SET_UP_R, 1):  # EOF: all are set up (or gone)
            pass
    if GIVEN["--storm"]:
        line = b"ready"
    elif GIVEN["--report"]:
        line = b'{"orphans": %d, "eagain": %d}' % (len(orphans), eagain)
    else:
        line = b" ".join([b"orphaned"] + [b"%d" % pid for pid in orphans if LIVE])
    return line, orphans if LIVE else []


def trickle(interval):
    """--every: a batch every `interval` seconds, paused and resumed from stdin."""
    import select

    made = 0
    running = True
    while True:
        ready, _, _ = select.select([0], [], [], interval if running else None)
        if ready:
            line = os.read(0, 1024).decode()
            if not line:
                say(b"done %d" % made)
                return
            for word in line.split():
                if word == "pause":
                    running = False
                    say(b"paused %d" % made)
                elif word == "resume":
                    running = True
        elif running:
            made += len(batch(made, N, False))


def say(line):
    if sys.stdout is not None:  # None: started with stdout closed, nobody to tell
        os.write(1, line + b"\n")


def expect(word):
    line = sys.stdin.readline().strip()
    if line != word:
        sys.exit("orphans.py: expected %r, got %r" % (word, line))


def let_go():
    """Let go what this program holds; reap its children, which then exit."""
    os.close(RELEASE_W)
    for pid in pending:
        os.waitpid(pid, 0)


def wait_until_reaped(orphans):
    """Wait until none of `orphans` (PIDs) is left, for 30 s at most; return how many."""
    import time

    deadline = time.monotonic() + 30
    pids = set(orphans)
    while pids:
        for pid in list(pids):
            try:
                os.kill(pid, 0)  # a zombie is still there
            except ProcessLookupError:
                pids.remove(pid)
        if pids and time.monotonic() > deadline:
            sys.exit("orphans.py: not reaped after 30 s: %s" % " ".join(map(str, sorted(pids))))
        time.sleep(0.05)
    return len(orphans)


def main():
    if GIVEN["--go"]:
        sys.stdin.readline()
    if GIVEN["--every"]:
        trickle(float(GIVEN["--every"]))
        return
    line, alive = make()
    say(line)
    then(alive)


def then(alive):
    """What it does once the orphans are made and it has said so (the "one of" above)."""
    if GIVEN["--stay"]:
        while os.read(0, 1024):
            pass
    elif GIVEN["--forever"]:
        while True:
            _signal.pause()
    elif GIVEN["--storm"]:
        expect("go")
        let_go()
        while os.read(ALIVE_R, 65536):  # EOF: every one has exited
            pass
        say(b"exited")
        expect("exit")
        return
    elif GIVEN["--reaped"]:
        let_go()
        say(b"reaped %d" % wait_until_reaped(alive))
        return
    let_go()
    if COMMAND:
        os.execvp(COMMAND[0], COMMAND)


main()
sys.exit(int(GIVEN["--code"] or 0))
