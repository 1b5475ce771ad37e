"""The child gets exactly what pypause was given; pypause stays out of the way."""

import json
import os
import signal
import subprocess
import sys

import pytest

import pypause
from support import PYPAUSE, helper, wait_until_idle

pytestmark = pytest.mark.timeout(30)


def report(*pypause_args, **kwargs):
    r = subprocess.run([PYPAUSE, *pypause_args, "--", *helper("report", *kwargs.pop("args", ()))],
                       capture_output=True, timeout=20, **kwargs)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def bit(signum):
    return 1 << (signum - 1)


def child_signal_state(**kwargs):
    """(SigBlk, SigIgn) of a child exec'd by pypause directly: cat, since a
    Python child would ignore SIGPIPE and SIGXFSZ by itself."""
    r = subprocess.run([PYPAUSE, "--", "cat", "/proc/self/status"],
                       capture_output=True, text=True, timeout=20, **kwargs)
    assert r.returncode == 0, r.stderr
    fields = dict(line.split(":\t") for line in r.stdout.splitlines())
    return int(fields["SigBlk"], 16), int(fields["SigIgn"], 16)


def test_child_starts_with_no_blocked_or_ignored_signal():
    assert child_signal_state() == (0, 0)


def test_inherited_mask_and_ignores_reach_the_child():
    def nohup_like():
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, {signal.SIGUSR2})
    blocked, ignored = child_signal_state(preexec_fn=nohup_like)
    assert ignored == bit(signal.SIGHUP) | bit(signal.SIGINT)
    assert blocked == bit(signal.SIGUSR2)


def test_arguments_environment_and_cwd_reach_the_child_unchanged(tmp_path):
    args = ["two words", "", "*", "$HOME", "--", "-v", "ünï"]
    env = {"PATH": os.environ["PATH"], "EMPTY": "", "SPACES": " a  b ", "PYPAUSE_X": "y"}
    got = report(args=args, env=env, cwd=tmp_path)
    assert got["argv"] == args
    assert {k: got["env"][k] for k in env} == env
    assert got["cwd"] == str(tmp_path)


def test_pypause_moves_to_root_and_sets_its_title(procs, tmp_path):
    p = procs([PYPAUSE, "--", "sleep", "30"], cwd=tmp_path)
    wait_until_idle(p.pid)
    assert os.readlink("/proc/%d/cwd" % p.pid) == "/"
    with open("/proc/%d/cmdline" % p.pid, "rb") as f:
        assert f.read().split(b"\0")[0] == b"pypause -- sleep 30"
    ps = subprocess.run(["ps", "-o", "args=", "-p", str(p.pid)], capture_output=True, text=True)
    if ps.returncode == 0:
        assert ps.stdout.strip() == "pypause -- sleep 30"


def test_closed_stdio_reaches_the_child_closed_and_does_not_crash_pypause(tmp_path):
    out = tmp_path / "report.json"
    # -vv makes pypause log to its closed stderr
    r = subprocess.run(["sh", "-c", 'exec <&- >&- 2>&- "$@"', "sh",
                        PYPAUSE, "-vv", "--", *helper("report")],
                       env={**os.environ, "REPORT_TO": str(out)}, timeout=20)
    assert r.returncode == 0
    assert json.loads(out.read_text())["stdio_open"] == [False, False, False]


def test_stderr_with_no_reader_does_not_crash_pypause():
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([PYPAUSE, "-vv", "--", "sh", "-c", "exit 3"], stderr=w, timeout=20)
    finally:
        os.close(w)
    assert p.returncode == 3


def test_runs_as_unprivileged_user(unprivileged):
    argv, env = unprivileged
    r = subprocess.run([*argv, "--", "sh", "-c", 'test "$(id -u)" = 65534 && exit 9'],
                       env=env, cwd="/", capture_output=True, timeout=20)
    assert r.returncode == 9, r.stderr


def test_start_up_imports_nothing_optional(tmp_path):
    """Measured without site-packages' own .pth imports: only what pypause imports."""
    code = ("import sys; sys.path.insert(0, %r); sys.argv = ['pypause', '--', 'true'];"
            "from pypause.main import main; sys.exit(main())"
            % os.path.dirname(os.path.dirname(pypause.__file__)))
    r = subprocess.run([sys.executable, "-S", "-X", "importtime", "-c", code],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines()}
    heavy = {"prometheus_client", "re", "json", "argparse", "logging", "dataclasses",
             "threading", "http.server", "socket"}
    assert imported & heavy == set()
