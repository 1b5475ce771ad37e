"""What users of tini and dumb-init reach for: -g, -r, -e, -p, -w, the grace
period, JSON logs, job control, each also from its PYPAUSE_* variable.

The tests that take the init fixture run with pypause as PID 1 of a PID
namespace and as a subreaper; where the two differ, the test says how."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from support import PYPAUSE, helper, needs_pidns, stat_fields, stop, wait_for, wait_until_idle

pytestmark = pytest.mark.timeout(30)
ENV = dict(os.environ)


def lines(stream, n):
    return [stream.readline().decode().strip() for _ in range(n)]


# -- -g / PYPAUSE_PGROUP ------------------------------------------------------

# sh lives on until both echoes have finished (it ignores SIGUSR1/2; on SIGTERM
# it waits for them, then exits 143 as if killed by it): the main child's end
# is PID 1's, which takes the rest of its namespace with it.
GROUP_OF_TWO = ['sh', '-c', 'trap "" USR1 USR2; "$@" & a=$!; "$@" & b=$!; '
                'trap "wait $a; wait $b; exit 143" TERM; wait', 'sh', *helper("signal_echo", 0)]


@pytest.mark.parametrize("flag, env", [(["-g"], {}), (["--pgroup"], {}),
                                       ([], {"PYPAUSE_PGROUP": "1"})])
def test_pgroup_forwards_to_the_whole_group(init, flag, env):
    p = init.start([PYPAUSE, *flag, "--", *GROUP_OF_TWO], stdout=subprocess.PIPE,
                   env={**ENV, "ECHO_WAIT": "sleep", **env})
    assert lines(p.stdout, 2) == ["ready", "ready"]
    wait_until_idle(p.pid)
    os.kill(p.pid, signal.SIGUSR1)
    assert lines(p.stdout, 2) == ["SIGUSR1", "SIGUSR1"]
    os.kill(p.pid, signal.SIGTERM)
    assert lines(p.stdout, 2) == ["SIGTERM", "SIGTERM"]
    assert p.wait(10) == 143  # sh, the main child, was in the group too


def test_without_pgroup_only_the_child_gets_the_signal(init):
    p = init.start([PYPAUSE, "--", *GROUP_OF_TWO], stdout=subprocess.PIPE,
                   env={**ENV, "ECHO_WAIT": "sleep"})
    assert lines(p.stdout, 2) == ["ready", "ready"]
    wait_until_idle(p.pid)
    group = os.getpgid(_child_of(p.pid))
    os.kill(p.pid, signal.SIGUSR1)  # to sh alone, which ignores it
    wait_until_idle(p.pid)
    os.killpg(group, signal.SIGUSR2)
    assert lines(p.stdout, 2) == ["SIGUSR2", "SIGUSR2"]  # no SIGUSR1 came first
    os.killpg(group, signal.SIGTERM)
    assert lines(p.stdout, 2) == ["SIGTERM", "SIGTERM"]


def _child_of(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return int(f.read().split()[0])


def test_child_leads_its_own_process_group(init):
    p = init.start([PYPAUSE, "--", *helper("report")], stdout=subprocess.PIPE)
    got = json.loads(p.stdout.readline())
    # The child sees PIDs of its namespace: pypause is 1 there as PID 1.
    pypause = 1 if init.pid1 else p.pid
    assert got["ppid"] == pypause
    assert got["pgid"] == got["pid"] != os.getpgid(p.pid)
    assert got["pgid"] != pypause
    assert p.wait(10) == 0


# -- -r / PYPAUSE_REWRITE -----------------------------------------------------

@pytest.mark.parametrize("args, env", [
    (["-r", "TERM:QUIT", "-r", "USR1:0"], {}),
    (["--rewrite=15:3", "-rSIGUSR1:0"], {}),
    ([], {"PYPAUSE_REWRITE": "term:quit, USR1:0"}),
])
def test_rewrite_maps_and_drops_signals(init, args, env):
    p = init.start([PYPAUSE, *args, "--", *helper("signal_echo", 0)], stdin=subprocess.PIPE,
                   stdout=subprocess.PIPE, env={**ENV, **env})
    assert lines(p.stdout, 1) == ["ready"]
    wait_until_idle(p.pid)
    os.kill(p.pid, signal.SIGUSR1)  # dropped
    os.kill(p.pid, signal.SIGTERM)  # arrives as SIGQUIT
    os.kill(p.pid, signal.SIGUSR2)  # untouched
    assert sorted(lines(p.stdout, 2)) == ["SIGQUIT", "SIGUSR2"]
    p.stdin.close()
    assert p.wait(10) == 0


# -- -e / PYPAUSE_EXPECT_EXIT -------------------------------------------------

@pytest.mark.parametrize("args, env, script, code", [
    (["-e", "143"], {}, "kill -TERM $$", 0),
    (["-e", "143", "-e", "4"], {}, "exit 4", 0),
    (["-e", "143"], {}, "exit 5", 5),
    ([], {"PYPAUSE_EXPECT_EXIT": "143,4"}, "exit 4", 0),
    (["-e", "5"], {"PYPAUSE_EXPECT_EXIT": "4"}, "exit 4", 4),  # the flag wins
])
def test_expect_exit_maps_codes_to_0(init, args, env, script, code):
    r = init.run([PYPAUSE, *args, "--", "sh", "-c", script], env={**ENV, **env})
    assert r.returncode == code


# -- -p / PYPAUSE_PDEATHSIG ---------------------------------------------------

@pytest.mark.parametrize("args, env", [(["-p", "USR1"], {}), ([], {"PYPAUSE_PDEATHSIG": "SIGUSR1"})])
def test_pdeathsig_arrives_when_the_parent_dies(args, env):
    # Subreaper only: the parent that dies is a shell that started pypause in
    # the background. A PID 1's parent is unshare (a runtime's shim there), and
    # -p replaces the SIGKILL unshare's --kill-child asked for: not the same test.
    # sh starts pypause in the background and exits when its stdin closes.
    parent = subprocess.Popen(
        ["sh", "-c", '"$@" & echo "pid $!"; read x; exit 0', "sh", PYPAUSE, *args, "--",
         *helper("signal_echo", 0)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**ENV, "ECHO_WAIT": "sleep", **env})
    first = lines(parent.stdout, 2)
    pypause = int(next(line for line in first if line.startswith("pid ")).split()[1])
    try:
        assert "ready" in first
        wait_until_idle(pypause)
        parent.stdin.close()
        assert parent.wait(10) == 0
        assert lines(parent.stdout, 1) == ["SIGUSR1"]
    finally:
        os.kill(pypause, signal.SIGTERM)  # the child echoes it and exits 0
    wait_for(lambda: stat_fields(pypause) is None, what="pypause to exit")


def _uid(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(next(line for line in f if line.startswith("Uid:")).split()[1])


@needs_pidns
def test_the_parent_death_signal_unshare_asked_for_survives_the_drop_of_root(pidns):
    # unshare --kill-child has the kernel SIGKILL its child (pypause, PID 1 in
    # pause mode) when unshare dies; leaving root clears that, unless asked again.
    ns = pidns([PYPAUSE])
    wait_until_idle(ns.pid)
    assert _uid(ns.pid) == 65535  # the drop happened
    os.kill(ns.unshare.pid, signal.SIGKILL)
    ns.unshare.wait(10)
    wait_for(lambda: stat_fields(ns.pid) is None, what="pypause to die with unshare")


def test_pdeathsig_survives_the_drop_of_root_in_pause_mode():
    parent = subprocess.Popen(["sh", "-c", '"$@" & echo $!; read x; exit 0', "sh",
                               PYPAUSE, "-p", "TERM"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    pypause = int(parent.stdout.readline())
    try:
        wait_until_idle(pypause)
        assert _uid(pypause) == 65535
        parent.stdin.close()
        assert parent.wait(10) == 0
        wait_for(lambda: stat_fields(pypause) is None, what="pypause to end on its SIGTERM")
    finally:
        if stat_fields(pypause) is not None:
            os.kill(pypause, signal.SIGKILL)


# -- -w / PYPAUSE_WARN_ON_REAP ------------------------------------------------

@pytest.mark.parametrize("args, env", [(["-w"], {}), ([], {"PYPAUSE_WARN_ON_REAP": "yes"})])
def test_warn_on_reap_names_each_orphan(init, args, env):
    p = init.start([PYPAUSE, *args, "--", *helper("orphans", 3, 0.1, "--stay")],
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                   env={**ENV, **env})
    assert lines(p.stdout, 1) == ["orphaned"]
    warnings = lines(p.stderr, 3)
    for line in warnings:
        assert "WARNING: reaped zombie" in line and "comm=sleep" in line and "pid=" in line
    p.stdin.close()
    assert p.wait(10) == 0


def test_warn_on_reap_escapes_a_hostile_command_name(init, tmp_path):
    # An orphan whose comm holds a newline must not write a line of its own.
    name = "x\n[pypause] ok"  # 14 bytes: all of it is the comm
    os.symlink("/bin/true", tmp_path / name)
    r = init.run([PYPAUSE, "-w", "--", "sh", "-c", '("$1" &); sleep 0.5', "sh",
                  str(tmp_path / name)], capture_output=True)
    assert r.returncode == 0
    [line] = r.stderr.decode().splitlines()
    head, _, container = line.rpartition(" container_id=")
    assert head == (r'[pypause] WARNING: reaped zombie pid=%s comm="x\n[pypause] ok" status=0'
                    % r.stderr.split(b"pid=")[1].split()[0].decode())
    assert re.fullmatch(r"none|([a-z-]+://)?[0-9a-f]{64}", container)  # where this test runs


# -- --grace-period / PYPAUSE_GRACE_PERIOD ------------------------------------

def test_without_grace_period_pypause_exits_at_once(init, tmp_path):
    flag, pidfile = tmp_path / "cleaned-up", tmp_path / "left"
    t0 = time.monotonic()
    r = init.run([PYPAUSE, "--", "sh", "-c",
                  '(trap "touch %s; exit 0" TERM; sleep 30 & wait) & echo $$ $! > %s; '
                  'sleep 0.3; exit 3' % (flag, pidfile)])
    assert r.returncode == 3
    assert time.monotonic() - t0 < 4
    assert not flag.exists()  # nobody asked the rest to clean up
    if init.pid1:
        return  # and the kernel SIGKILLed it with PID 1: nothing is left to check
    # Not PID 1, pypause leaves the rest running (init fixture ends it).
    child, left = map(int, pidfile.read_text().split())
    assert stat_fields(left) is not None and os.getpgid(left) == child


# The rest pypause signals in its grace period: every process of the
# namespace as PID 1 (kill(-1)), the main child's process group otherwise.
def _scope(init):
    return (b"every process in the namespace" if init.pid1 else b"process group")


@pytest.mark.parametrize("args, env", [(["--grace-period", "5"], {}),
                                       ([], {"PYPAUSE_GRACE_PERIOD": "5"}),
                                       (["--grace-period", "999999999"], {})])
def test_grace_period_lets_the_rest_clean_up(init, tmp_path, args, env):
    flag = tmp_path / "cleaned-up"
    t0 = time.monotonic()
    r = init.run([PYPAUSE, *args, "--", "sh", "-c",
                  '(trap "touch %s; exit 0" TERM; sleep 30 & wait) & sleep 0.3; exit 3' % flag],
                 stderr=subprocess.PIPE, env={**ENV, **env})
    assert r.returncode == 3
    assert time.monotonic() - t0 < 4  # did not wait out the period
    assert flag.exists()
    assert b"sent SIGTERM to " + _scope(init) in r.stderr


def test_grace_period_ends_with_sigkill(init):
    t0 = time.monotonic()
    r = init.run([PYPAUSE, "--grace-period", "0.5", "--", "sh", "-c",
                  '(trap "" TERM; sleep 30) & sleep 0.3; exit 3'], stderr=subprocess.PIPE)
    assert r.returncode == 3
    assert 0.5 <= time.monotonic() - t0 < 4
    assert b"sending SIGKILL" in r.stderr


def test_grace_period_covers_the_rest_then_sigkills_it(init, tmp_path):
    flag = tmp_path / "cleaned-up"
    script = ('(trap "touch %s; exit 0" TERM; sleep 30 & wait) & '
              '(trap "" TERM; exec sleep 31) & sleep 0.3; exit 3') % flag
    t0 = time.monotonic()
    r = init.run([PYPAUSE, "--grace-period", "1", "--", "sh", "-c", script],
                 capture_output=True)
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
    p = init.start([*argv, "--grace-period", "20", "--", "sh", "-c", "echo $$; read x; exit 3"],
                   env=env, cwd="/", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE)
    child = int(p.stdout.readline())
    wait_until_idle(p.pid)
    if init.pid1:
        p.ns.nsenter(["sh", "-c", "sleep 60 & exit 0"], check=True, timeout=10)
        wait_for(lambda: any(c == "sleep" and ppid == p.pid for c, _, ppid in p.members().values()),
                 what="the root orphan to be adopted")
    else:
        intruder = procs([sys.executable, "-c", "import os, sys, time; os.setpgid(0, %d); "
                          "print('joined', flush=True); time.sleep(60)" % child],
                         stdout=subprocess.PIPE)
        assert intruder.stdout.readline() == b"joined\n"
    t0 = time.monotonic()
    p.stdin.close()  # the child exits 3
    assert p.wait(10) == 3  # neither hangs on EPERM nor waits 20 s for it
    assert time.monotonic() - t0 < 5
    err = p.stderr.read().decode()
    assert "may not signal" in err and "unexpected error" not in err, err


# 999999999: the top of the accepted range (poll() once overflowed on it).
@pytest.mark.parametrize("period", ["10", "999999999"])
def test_grace_period_waits_for_a_process_pypause_is_not_the_parent_of(init, procs, tmp_path,
                                                                       period):
    # No SIGCHLD will come for it. As PID 1: it entered the namespace from
    # outside, as `kubectl exec` does (its parent, nsenter here, the runtime's
    # shim there, is not in it). Not PID 1: it joined the child's group.
    flag = tmp_path / "cleaned-up"
    p = init.start([PYPAUSE, "--grace-period", period, "--", "sh", "-c", "echo $$; read x; exit 3"],
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child = int(p.stdout.readline())
    if init.pid1:
        entered = p.ns.enter([sys.executable, "-c", SLOW_CLEANUP, str(flag)],
                             stdout=subprocess.PIPE)
    else:
        entered = procs([sys.executable, "-c", SLOW_CLEANUP, str(flag), str(child)],
                        stdout=subprocess.PIPE)
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
    script = ('for i in $(seq 100 499); do (trap "" TERM; exec sleep 1.$i) & done; '
              '(trap "sleep 1.5; touch %s; exit 0" TERM; sleep 30 & wait) & '
              'sleep 0.3; exit 3' % flag)
    for _ in range(3):  # the race is lost 4 times in 5 without the fix
        ns = pidns(["sh", "-c", 'mount -t tmpfs -o ro none /proc && exec "$@"', "sh",
                    PYPAUSE, "--grace-period", "10", "--", "sh", "-c", script],
                   unshare_args=("--mount", "--propagation", "private"), stderr=subprocess.PIPE)
        assert ns.unshare.wait(20) == 3
        assert flag.exists(), ns.unshare.stderr.read().decode()
        flag.unlink()


def test_grace_period_resumes_a_stopped_process_so_it_can_clean_up(init, tmp_path):
    # systemd sends SIGCONT after SIGTERM for the same reason: a stopped
    # process cannot run its SIGTERM handler.
    flag, fifo = tmp_path / "cleaned-up", tmp_path / "ready"
    os.mkfifo(fifo)
    script = ('%s -c "$1" "$2" > "$3" & read ready < "$3"; kill -STOP $!; exit 3'
              % sys.executable)
    t0 = time.monotonic()
    r = init.run([PYPAUSE, "--grace-period", "10", "--", "sh", "-c", script, "sh",
                  SLOW_CLEANUP, str(flag), str(fifo)], capture_output=True)
    assert r.returncode == 3, r.stderr
    assert flag.exists(), r.stderr
    assert time.monotonic() - t0 < 8, r.stderr  # not the whole period, then SIGKILL
    assert b"sending SIGKILL" not in r.stderr


# -- --log-format / PYPAUSE_LOG_FORMAT ----------------------------------------

@pytest.mark.parametrize("args, env", [(["--log-format", "json"], {}),
                                       ([], {"PYPAUSE_LOG_FORMAT": "json"})])
def test_json_logs(args, env):
    r = subprocess.run([PYPAUSE, "-v", *args, "--", "sh", "-c", "exit 3"], capture_output=True,
                       env={**ENV, **env}, timeout=20)
    assert r.returncode == 3
    records = [json.loads(line) for line in r.stderr.splitlines()]
    assert records
    for record in records:
        assert {"ts", "level", "msg"} <= set(record)
    assert {"msg": "main child exited", "status": 3}.items() <= records[-1].items()


# -- job control --------------------------------------------------------------

# Without a terminal (a container; a pod sharing its PID namespace and
# `docker run --init`, where pypause is not PID 1) nothing could resume
# pypause if it stopped with its child: in both modes the child is resumed.
# (With a job-control shell above, one that is not PID 1 stops too: test_tty.)

def test_a_child_stopped_by_job_control_is_resumed(init):
    r = init.run([PYPAUSE, "--", "sh", "-c", "kill -TSTP $$; kill -TTIN $$; exit 7"],
                 start_new_session=True, stderr=subprocess.PIPE)
    assert r.returncode == 7
    assert r.stderr.count(b"resuming it") == 2


def test_forwarding_sigtstp_does_not_strand_the_child(init):
    p = init.start([PYPAUSE, "--", *helper("signal_echo", 0, "--ignore", "SIGUSR1")],
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    # signal_echo handles SIGTSTP (prints it); nothing stops
    assert lines(p.stdout, 1) == ["ready"]
    wait_until_idle(p.pid)
    os.kill(p.pid, signal.SIGTSTP)
    assert lines(p.stdout, 1) == ["SIGTSTP"]
    p.stdin.close()
    assert p.wait(10) == 0


# -- bad input ----------------------------------------------------------------

@pytest.mark.parametrize("args, env, words", [
    (["-r", "TERM"], {}, ["-r", "TERM"]),
    (["-r", "TERM:NOPE"], {}, ["-r", "TERM:NOPE"]),
    # Rules that could never fire: pypause never forwards these.
    (["-r", "SYS:HUP"], {}, ["-r", "SYS:HUP", "SIGSYS", "fault"]),
    (["-r", "SEGV:TERM"], {}, ["-r", "SEGV:TERM", "SIGSEGV"]),
    (["-r", "KILL:TERM"], {}, ["-r", "KILL:TERM", "cannot be caught"]),
    (["-r", "CHLD:TERM"], {}, ["-r", "CHLD:TERM", "reaping"]),
    ([], {"PYPAUSE_REWRITE": "TERM:QUIT,STOP:0"}, ["PYPAUSE_REWRITE", "STOP:0", "SIGSTOP"]),
    (["--rewrite", "BOGUS:TERM"], {}, ["--rewrite", "BOGUS:TERM"]),
    (["-p", "SIGFOO"], {}, ["-p", "SIGFOO"]),
    (["-p", "0"], {}, ["-p"]),
    (["--grace-period", "-1"], {}, ["--grace-period", "-1"]),
    (["--grace-period", "soon"], {}, ["--grace-period", "soon"]),
    (["--grace-period", "nan"], {}, ["--grace-period", "nan"]),
    (["-e", "256"], {}, ["-e", "256"]),
    (["-e", "-1"], {}, ["-e", "-1"]),
    (["-e", "x"], {}, ["-e", "x"]),
    (["--log-format", "xml"], {}, ["--log-format", "xml"]),
    ([], {"PYPAUSE_PGROUP": "maybe"}, ["PYPAUSE_PGROUP", "maybe"]),
    ([], {"PYPAUSE_REWRITE": "TERM:QUIT,HUP"}, ["PYPAUSE_REWRITE", "HUP"]),
    ([], {"PYPAUSE_GRACE_PERIOD": "-3"}, ["PYPAUSE_GRACE_PERIOD", "-3"]),
    ([], {"PYPAUSE_EXPECT_EXIT": "1000"}, ["PYPAUSE_EXPECT_EXIT", "1000"]),
    ([], {"PYPAUSE_LOG_FORMAT": "yaml"}, ["PYPAUSE_LOG_FORMAT", "yaml"]),
])
def test_bad_input_names_the_option_and_value(args, env, words):
    r = subprocess.run([PYPAUSE, *args, "--", "true"], capture_output=True, text=True,
                       env={**ENV, **env}, timeout=20)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    for word in words:
        assert word in r.stderr


def test_help_lists_every_variable():
    out = subprocess.run([PYPAUSE, "--help"], capture_output=True, text=True, timeout=20).stdout
    for var in ("PYPAUSE_VERBOSITY", "PYPAUSE_SUBREAPER", "PYPAUSE_PGROUP", "PYPAUSE_REWRITE",
                "PYPAUSE_EXPECT_EXIT", "PYPAUSE_PDEATHSIG", "PYPAUSE_WARN_ON_REAP",
                "PYPAUSE_GRACE_PERIOD", "PYPAUSE_LOG_FORMAT", "PYPAUSE_METRICS_ADDR"):
        assert var in out


# -- the same options together ---------------------------------------------------

def test_options_together(init):
    """-g, -r, -e, -w and JSON logs together."""
    p = init.start([PYPAUSE, "-g", "-r", "TERM:USR2", "-r", "INT:TERM", "-e", "7", "-w",
                    "--log-format", "json", "--",
                    "sh", "-c", '(sleep 0.1 &); trap "" USR2 TERM; "$@" & wait $!; exit 7', "sh",
                    *helper("signal_echo", 0)],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**ENV, "ECHO_WAIT": "sleep"})
    assert lines(p.stdout, 1) == ["ready"]
    wait_until_idle(p.pid)
    os.kill(p.pid, signal.SIGTERM)  # rewritten to SIGUSR2, sent to the whole group
    assert lines(p.stdout, 1) == ["SIGUSR2"]
    wait_for(lambda: "sleep" not in [comm for comm, _, _ in p.members().values()],
             what="the orphaned sleep to be reaped")
    os.kill(p.pid, signal.SIGINT)  # rewritten to SIGTERM: the echo child exits,
    assert lines(p.stdout, 1) == ["SIGTERM"]
    assert p.wait(10) == 0  # and sh with 7, an expected code
    records = [json.loads(line) for line in p.stderr.read().splitlines()]
    assert any(r["msg"] == "reaped zombie" and r["comm"] == "sleep" for r in records)


def test_json_log_lines_stay_json_with_wide_characters():
    name = "\U0001f600" * 400  # 12 bytes each once escaped
    r = subprocess.run([PYPAUSE, "--log-format", "json", "--", name], capture_output=True,
                       timeout=20)
    assert r.returncode == 126  # ENAMETOOLONG
    assert len(r.stderr) <= 4096
    record = json.loads(r.stderr)
    assert record["truncated"] is True and record["msg"].startswith("cannot run '\U0001f600")


def test_json_log_lines_stay_json_when_too_long():
    name = "x" * 5000  # the exec failure names the command: a line over PIPE_BUF
    r = subprocess.run([PYPAUSE, "--log-format", "json", "--", name], capture_output=True,
                       timeout=20)
    assert r.returncode == 126  # ENAMETOOLONG: found nothing runnable, as a shell says
    record = json.loads(r.stderr)
    assert record["truncated"] is True and record["msg"].startswith("cannot run 'xxx")
