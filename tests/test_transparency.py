"""The child gets exactly what pypause was given; pypause stays out of the way.

Each as PID 1 of a PID namespace and as a subreaper (fixture init)."""

import json
import os
import select
import signal
import socket
import subprocess
import sys

import pytest

import pypause
from tests.support.proc import cwd, title
from tests.support.running import PYPAUSE, helper, wait_until_idle

pytestmark = pytest.mark.timeout(30)


def report(init, *pypause_args, **kwargs):
    r = init.run(
        [PYPAUSE, *pypause_args, "--", *helper("report", *kwargs.pop("args", ()))],
        capture_output=True,
        **kwargs,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def bit(signum):
    return 1 << (signum - 1)


def _as_this_process_has_them():
    """A preexec_fn that changes nothing, to make subprocess fork and exec:
    without one, Python 3.13 starts pypause with posix_spawn, and glibc's
    posix_spawn hands on its own signals 32 and 33 ignored."""


def child_signal_state(init, **kwargs):
    """(SigBlk, SigIgn) of a child exec'd by pypause directly: cat, since a
    Python child would ignore SIGPIPE and SIGXFSZ by itself."""
    kwargs.setdefault("preexec_fn", _as_this_process_has_them)
    r = init.run(
        [PYPAUSE, "--", "cat", "/proc/self/status"], capture_output=True, text=True, **kwargs
    )
    assert r.returncode == 0, r.stderr
    fields = dict(line.split(":\t") for line in r.stdout.splitlines())
    return int(fields["SigBlk"], 16), int(fields["SigIgn"], 16)


def test_child_starts_with_no_blocked_or_ignored_signal(init):
    assert child_signal_state(init) == (0, 0)


def test_inherited_mask_and_ignores_reach_the_child(init):
    def nohup_like():
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, {signal.SIGUSR2})

    blocked, ignored = child_signal_state(init, preexec_fn=nohup_like)
    assert ignored == bit(signal.SIGHUP) | bit(signal.SIGINT)
    assert blocked == bit(signal.SIGUSR2)


def test_an_inherited_ignored_sigchld_neither_blinds_pypause_nor_is_lost(init):
    # Daemons ignore SIGCHLD and exec their payload. Ignored, the kernel would
    # reap pypause's child itself and send no SIGCHLD: its status lost.
    ignoring = [
        sys.executable,
        "-c",
        "import os, signal, sys; "
        "signal.signal(signal.SIGCHLD, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])",
    ]
    r = init.run([*ignoring, PYPAUSE, "--", "sh", "-c", "sleep 0.2; exit 3"])
    assert r.returncode == 3
    r = init.run(
        [*ignoring, PYPAUSE, "--", "grep", "SigIgn", "/proc/self/status"],
        capture_output=True,
        text=True,
        preexec_fn=_as_this_process_has_them,
    )
    assert int(r.stdout.split()[1], 16) == bit(signal.SIGCHLD)  # the child still gets it ignored


def test_pypause_leaves_its_working_directory_before_the_child_can_see_it(init, tmp_path):
    # dumb-init's suite checks this too: a child that looks at once must see "/".
    for _ in range(30):
        r = init.run(
            [PYPAUSE, "--", "sh", "-c", "readlink /proc/$PPID/cwd"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert r.stdout == "/\n", r.stderr


def test_arguments_environment_and_cwd_reach_the_child_unchanged(init, tmp_path):
    args = ["two words", "", "*", "$HOME", "--", "-v", "ünï"]
    env = {"PATH": os.environ["PATH"], "EMPTY": "", "SPACES": " a  b ", "PYPAUSE_X": "y"}
    got = report(init, args=args, env=env, cwd=tmp_path)
    assert got["argv"] == args
    assert {k: got["env"][k] for k in env} == env
    assert got["cwd"] == str(tmp_path)


def test_pypause_moves_to_root_and_sets_its_title(init, tmp_path):
    p = init.start([PYPAUSE, "--", "sleep", "30"], cwd=tmp_path)
    wait_until_idle(p.pid)
    assert cwd(p.pid) == "/"
    assert title(p.pid) == ["pypause", "--", "sleep", "30"]
    ps = subprocess.run(["ps", "-o", "args=", "-p", str(p.pid)], capture_output=True, text=True)
    if ps.returncode == 0:
        assert ps.stdout.strip() == "pypause -- sleep 30"


def test_closed_stdio_reaches_the_child_closed_and_does_not_crash_pypause(init, tmp_path):
    out = tmp_path / "report.json"
    # -vv makes pypause log to its closed stderr
    r = init.run(
        ["sh", "-c", 'exec <&- >&- 2>&- "$@"', "sh", PYPAUSE, "-vv", "--", *helper("report")],
        env={**os.environ, "REPORT_TO": str(out)},
    )
    assert r.returncode == 0
    assert json.loads(out.read_text())["stdio_open"] == [False, False, False]


def test_stderr_with_no_reader_does_not_crash_pypause(init):
    r, w = os.pipe()
    os.close(r)
    try:
        p = init.run([PYPAUSE, "-vv", "--", "sh", "-c", "exit 3"], stderr=w)
    finally:
        os.close(w)
    assert p.returncode == 3


def test_runs_as_unprivileged_user(init, unprivileged):
    argv, env = unprivileged
    r = init.run(
        [*argv, "--", "sh", "-c", 'test "$(id -u)" = 65534 && exit 9'],
        env=env,
        cwd="/",
        capture_output=True,
    )
    assert r.returncode == 9, r.stderr


# Runs pypause's main() (as the command script does, after its first
# statements) without site-packages' own .pth imports, and prints the modules
# loaded at the moment the child is forked, then those loaded by the end.
IMPORTS = """
import os, sys
sys.path.insert(0, sys.argv[1])
real_fork = os.fork
def fork():
    print("at fork:", " ".join(sorted(sys.modules)), flush=True)
    return real_fork()
os.fork = fork
real_exit = os._exit
def _exit(code):
    print("at exit:", " ".join(sorted(sys.modules)), flush=True)
    real_exit(code)
os._exit = _exit
sys.argv = ["pypause", "--", "true"]
from pypause.main import main
main()
"""


def test_start_up_imports_nothing_optional(init):
    as_pid1 = init.pid1
    r = init.run(
        [sys.executable, "-S", "-c", IMPORTS, os.path.dirname(os.path.dirname(pypause.__file__))],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    loaded = {line.split(":")[0]: set(line.split(":")[1].split()) for line in r.stdout.splitlines()}
    assert {"pypause.cli", "pypause.spawn"} <= loaded["at fork"]  # the probe sees them
    # Until the child runs: nothing that only the loop, the title or the metrics
    # need. Not PID 1, pypause must become a subreaper before the fork: ctypes.
    assert not loaded["at fork"] & {
        "enum",
        "signal",
        "re",
        "typing",
        "collections",
        "functools",
        "importlib.machinery",
        "pypause.loop",
        "pypause.title",
        "pypause.reaper",
        "pypause.shutdown",
        *(["ctypes"] if as_pid1 else []),
    }
    # Ever, without metrics or a grace period: nothing optional.
    assert not loaded["at exit"] & {
        "prometheus_client",
        "re",
        "json",
        "argparse",
        "logging",
        "dataclasses",
        "enum",
        "threading",
        "http.server",
        "socket",
        "selectors",
        "importlib",
        "warnings",
        "pypause.shutdown",
        "select",
        "pypause.containers",
    }


# Starts argv[2:] with file descriptor argv[1] (or the file argv[1] names,
# opened for writing) moved to 3, as a runtime hands them over, and LISTEN_PID
# naming the process it execs (sh and dash cannot redirect descriptors above 9).
AS_FD_3 = """
import os, sys
fd = int(sys.argv[1]) if sys.argv[1].isdigit() else os.open(sys.argv[1], os.O_WRONLY)
if fd != 3:
    os.dup2(fd, 3)  # inheritable
    os.close(fd)
else:  # open() gave 3 itself, close-on-exec
    os.set_inheritable(3, True)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2], sys.argv[2:])
"""


def test_a_pipe_handed_to_pypause_reaches_eof_when_the_child_closes_it(init, tmp_path):
    # As catatonit: pypause closes what it inherited from fd 3 up once the
    # child has its copies, so the reader is not held up until PID 1 exits.
    # A FIFO, opened by the process that becomes pypause: a pipe made here would
    # also be held open by unshare, which runs until PID 1 exits. Opened here
    # first, it reports no EOF until a writer has come and gone.
    fifo = tmp_path / "fd3"
    os.mkfifo(fifo)
    r = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        p = init.start(
            [
                sys.executable,
                "-c",
                AS_FD_3,
                str(fifo),
                PYPAUSE,
                "-v",
                "--",
                "sh",
                "-c",
                "exec 3>&-; exec sleep 5",
            ],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        ready, _, _ = select.select([r], [], [], 3)
        assert ready and os.read(r, 1) == b"", "EOF only when pypause exits"
        assert p.poll() is None  # pypause still runs: the EOF came from the child
    finally:
        os.close(r)
    wait_until_idle(p.pid)
    os.kill(p.pid, signal.SIGTERM)  # to the sleep: pypause exits with it
    assert p.wait(5) == 143
    assert b"closed the descriptors the child inherited count=1" in p.stderr.read()


def test_socket_activation_names_the_child_in_listen_pid(init):
    # podman passes listening sockets as fds 3.. with LISTEN_FDS and a
    # LISTEN_PID naming the container's PID 1; the app must see its own PID.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        fd = listener.fileno()
        check = (
            "import os, socket, sys; s = socket.socket(fileno=3); "
            "sys.exit(0 if os.environ['LISTEN_PID'] == str(os.getpid()) "
            "and s.getsockname()[1] == %d else 1)" % listener.getsockname()[1]
        )
        r = init.run(
            [sys.executable, "-c", AS_FD_3, str(fd), PYPAUSE, "--", sys.executable, "-c", check],
            pass_fds=(fd,),
            env={**os.environ, "LISTEN_FDS": "1"},
        )
    assert r.returncode == 0
