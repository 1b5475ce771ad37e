"""--grace-period (PYPAUSE_GRACE_PERIOD): what is left when the main child
exits gets SIGTERM, time, then SIGKILL (docs/shutdown.md)."""

import os
import subprocess
import sys
import time

import pytest

from tests.support.proc import stat
from tests.support.running import (
    PRIVATE_MOUNTS,
    PYPAUSE,
    WITHOUT_PROC,
    needs_pidns,
    stop,
    wait_for,
    wait_until_idle,
)

pytestmark = pytest.mark.timeout(30)


# -- --grace-period / PYPAUSE_GRACE_PERIOD ------------------------------------


def cleans_up(flag):
    """For a main child's script: a process in the background that, on SIGTERM,
    touches `flag` and exits 0. It touches FLAG.set once its trap is in place."""
    return '(trap "touch %s; exit 0" TERM; touch %s.set; sleep 30 & wait) & ' % (flag, flag)


def ignores_term(marker, command="sleep 30"):
    """For a main child's script: `command` in the background, ignoring SIGTERM;
    `marker` is touched once the trap is in place."""
    return '(trap "" TERM; touch %s; %s) & ' % (marker, command)


def exit_once_set(code, *markers):
    """The end of a main child's script: exit `code` once every one of `markers`
    exists, i.e. the traps of the processes left behind are in place (a SIGTERM
    before that would end them at once)."""
    return "".join("until [ -e %s ]; do sleep 0.01; done; " % m for m in markers) + (
        "exit %d" % code
    )


def test_without_grace_period_pypause_exits_at_once(init, tmp_path):
    flag, pidfile = tmp_path / "cleaned-up", tmp_path / "left"
    script = cleans_up(flag) + "echo $$ $! > %s; " % pidfile + exit_once_set(3, "%s.set" % flag)
    t0 = time.monotonic()
    r = init.run([PYPAUSE, "--", "sh", "-c", script])
    assert r.returncode == 3
    assert time.monotonic() - t0 < 4
    assert not flag.exists()  # nobody asked the rest to clean up
    if init.pid1:
        return  # and the kernel SIGKILLed it with PID 1: nothing is left to check
    # Not PID 1, pypause leaves the rest running (init fixture ends it).
    child, left = map(int, pidfile.read_text().split())
    assert stat(left) is not None and os.getpgid(left) == child


# The rest pypause signals in its grace period: every process of the
# namespace as PID 1 (kill(-1)), the main child's process group otherwise.
def _scope(init):
    return b"every process in the namespace" if init.pid1 else b"process group"


@pytest.mark.parametrize(
    "args, env",
    [
        (["--grace-period", "5"], {}),
        ([], {"PYPAUSE_GRACE_PERIOD": "5"}),
        (["--grace-period", "999999999"], {}),
    ],
)
def test_grace_period_lets_the_rest_clean_up(init, tmp_path, args, env):
    flag = tmp_path / "cleaned-up"
    script = cleans_up(flag) + exit_once_set(3, "%s.set" % flag)
    t0 = time.monotonic()
    r = init.run(
        [PYPAUSE, *args, "--", "sh", "-c", script],
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
    )
    assert r.returncode == 3
    assert time.monotonic() - t0 < 4  # did not wait out the period
    assert flag.exists()
    assert b"sent SIGTERM to " + _scope(init) in r.stderr


def test_grace_period_ends_with_sigkill(init, tmp_path):
    ignoring = tmp_path / "ignoring"
    t0 = time.monotonic()
    r = init.run(
        [
            PYPAUSE,
            "--grace-period",
            "0.5",
            "--",
            "sh",
            "-c",
            ignores_term(ignoring) + exit_once_set(3, ignoring),
        ],
        stderr=subprocess.PIPE,
    )
    assert r.returncode == 3
    assert 0.5 <= time.monotonic() - t0 < 4
    assert b"sending SIGKILL" in r.stderr


def test_grace_period_covers_the_rest_then_sigkills_it(init, tmp_path):
    flag = tmp_path / "cleaned-up"
    ignoring = tmp_path / "ignoring"
    script = (
        cleans_up(flag)
        + ignores_term(ignoring, "exec sleep 31")
        + exit_once_set(3, "%s.set" % flag, ignoring)
    )
    t0 = time.monotonic()
    r = init.run([PYPAUSE, "--grace-period", "1", "--", "sh", "-c", script], capture_output=True)
    assert r.returncode == 3
    assert flag.exists()
    assert 1 <= time.monotonic() - t0 < 5
    assert b"sent SIGTERM to " + _scope(init) in r.stderr and b"sending SIGKILL" in r.stderr


def test_grace_period_with_nothing_left_exits_at_once(init):
    t0 = time.monotonic()
    r = init.run([PYPAUSE, "--grace-period", "30", "--", "sh", "-c", "exit 4"])
    assert r.returncode == 4
    assert time.monotonic() - t0 < 5


# A process that cleans up for a second on SIGTERM, then writes `flag` and
# exits; it says "ready" on stdout once its handler is in place (and it has
# joined process group argv[2], if given).
SLOW_CLEANUP = """
import os, signal, sys, time
if len(sys.argv) > 2:
    os.setpgid(0, int(sys.argv[2]))
def term(signum, frame):
    time.sleep(1)
    open(sys.argv[1], "w").close()
    os._exit(0)
signal.signal(signal.SIGTERM, term)
print("ready", flush=True)
while True:
    time.sleep(60)
"""


def test_grace_period_skips_a_process_it_may_not_signal(unprivileged, init, procs):
    # pypause runs as uid 65534; a root process comes into its scope: as PID
    # 1, root enters the namespace and leaves an orphan there, which PID 1
    # adopts; not PID 1, root joins the child's process group.
    argv, env = unprivileged
    p = init.start(
        [*argv, "--grace-period", "20", "--", "sh", "-c", "echo $$; read x; exit 3"],
        env=env,
        cwd="/",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    child = int(p.stdout.readline())
    wait_until_idle(p.pid)
    if init.pid1:
        p.ns.nsenter(["sh", "-c", "sleep 60 & exit 0"], check=True, timeout=10)
        wait_for(
            lambda: any(s.comm == "sleep" and s.ppid == p.pid for s in p.members().values()),
            what="the root orphan to be adopted",
        )
    else:
        intruder = procs(
            [
                sys.executable,
                "-c",
                "import os, sys, time; os.setpgid(0, %d); "
                "print('joined', flush=True); time.sleep(60)" % child,
            ],
            stdout=subprocess.PIPE,
        )
        assert intruder.stdout.readline() == b"joined\n"
    t0 = time.monotonic()
    p.stdin.close()  # the child exits 3
    assert p.wait(10) == 3  # neither hangs on EPERM nor waits 20 s for it
    assert time.monotonic() - t0 < 5
    err = p.stderr.read().decode()
    assert "may not signal" in err and "unexpected error" not in err, err


# 999999999: the top of the accepted range (poll() once overflowed on it).
@pytest.mark.parametrize("period", ["10", "999999999"])
def test_grace_period_waits_for_a_process_pypause_is_not_the_parent_of(
    init, procs, tmp_path, period
):
    # No SIGCHLD will come for it. As PID 1: it entered the namespace from
    # outside, as `kubectl exec` does (its parent, nsenter here, the runtime's
    # shim there, is not in it). Not PID 1: it joined the child's group.
    flag = tmp_path / "cleaned-up"
    p = init.start(
        [PYPAUSE, "--grace-period", period, "--", "sh", "-c", "echo $$; read x; exit 3"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    child = int(p.stdout.readline())
    if init.pid1:
        entered = p.ns.enter(
            [sys.executable, "-c", SLOW_CLEANUP, str(flag)], stdout=subprocess.PIPE
        )
    else:
        entered = procs(
            [sys.executable, "-c", SLOW_CLEANUP, str(flag), str(child)], stdout=subprocess.PIPE
        )
    try:
        assert entered.stdout.readline() == b"ready\n"
        t0 = time.monotonic()
        p.stdin.close()
        assert p.wait(15) == 3
        assert 1 <= time.monotonic() - t0 < 8
        assert flag.exists()  # it finished cleaning up before pypause exited
        assert b"sent SIGTERM to " + _scope(init) in p.stderr.read()
    finally:
        stop(entered)


@needs_pidns
def test_grace_period_without_proc_waits_while_any_child_is_left(pidns, tmp_path):
    # Without /proc, PID 1 knows only its children. Hundreds of them exit one
    # after another during the grace period (they ignore the SIGTERM); one
    # cleans up for 1.5 s. A child that became a zombie between a reap pass
    # and the look at what is left once ended the wait ("everything left
    # exited"), and the kernel SIGKILLed the one still cleaning up.
    flag = tmp_path / "cleaned-up"
    script = (
        'for i in $(seq 100 499); do (trap "" TERM; exec sleep 1.$i) & done; '
        '(trap "sleep 1.5; touch %s; exit 0" TERM; sleep 30 & wait) & '
        "sleep 0.3; exit 3" % flag
    )
    for _ in range(3):  # the race is lost 4 times in 5 without the fix
        ns = pidns(
            [*WITHOUT_PROC, PYPAUSE, "--grace-period", "10", "--", "sh", "-c", script],
            unshare_args=PRIVATE_MOUNTS,
            stderr=subprocess.PIPE,
        )
        assert ns.unshare.wait(20) == 3
        assert flag.exists(), ns.unshare.stderr.read().decode()
        flag.unlink()


def test_grace_period_resumes_a_stopped_process_so_it_can_clean_up(init, tmp_path):
    # systemd sends SIGCONT after SIGTERM for the same reason: a stopped
    # process cannot run its SIGTERM handler.
    flag, fifo = tmp_path / "cleaned-up", tmp_path / "ready"
    os.mkfifo(fifo)
    script = '%s -c "$1" "$2" > "$3" & read ready < "$3"; kill -STOP $!; exit 3' % sys.executable
    t0 = time.monotonic()
    r = init.run(
        [
            PYPAUSE,
            "--grace-period",
            "10",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            SLOW_CLEANUP,
            str(flag),
            str(fifo),
        ],
        capture_output=True,
    )
    assert r.returncode == 3, r.stderr
    assert flag.exists(), r.stderr
    assert time.monotonic() - t0 < 8, r.stderr  # not the whole period, then SIGKILL
    assert b"sending SIGKILL" not in r.stderr
