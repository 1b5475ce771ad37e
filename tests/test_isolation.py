"""PID 1 is immune to the app's Python environment, and hands it on intact.

The app's image decides what pypause's interpreter is started with: PYTHON*
variables, a sitecustomize that starts threads (auto-instrumentation), .pth
files. None of it may reach pypause's own interpreter, and the child must
still get every variable exactly as pypause was given it.
Each as PID 1 of a PID namespace and as a subreaper (fixture init)."""

import os
import signal
import subprocess

import pytest

from tests.support.http import http_get, port_from
from tests.support.proc import children, ignored_signals, thread_count, title
from tests.support.running import PYPAUSE, python_with, stop, wait_for, wait_until_idle

pytestmark = pytest.mark.timeout(30)

# What auto-instrumentation injects through PYTHONPATH: a sitecustomize that
# starts an exporter thread before any script runs.
THREAD_STARTER = (
    "import threading, time\n"
    "threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n"
)


@pytest.fixture
def sitecustomize(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(THREAD_STARTER)
    return {**os.environ, "PYTHONPATH": str(tmp_path)}


def test_a_sitecustomize_thread_cannot_take_pid_1s_signals(init, sitecustomize):
    r = init.run([PYPAUSE, "--", "sh", "-c", "exit 3"], env=sitecustomize)
    assert r.returncode == 3  # before: the thread took SIGCHLD, pypause never exited


def test_a_storm_of_signals_reaches_the_loop_and_only_the_loop(init, sitecustomize):
    p = init.start(
        [PYPAUSE, "--", "sh", "-c", 'trap "" USR1; while :; do sleep 1; done'], env=sitecustomize
    )
    wait_until_idle(p.pid)
    assert thread_count(p.pid) == 1  # the interpreter that runs pypause started none
    # sh must have run its trap before the storm: a USR1 forwarded earlier kills it.
    wait_for(
        lambda: any(signal.SIGUSR1 in (ignored_signals(kid) or ()) for kid in children(p.pid)),
        what="sh to ignore SIGUSR1",
    )
    for _ in range(300):
        os.kill(p.pid, signal.SIGUSR1)  # before: a USR1 taken by the thread killed pypause (138)
    assert p.poll() is None
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(10) == 128 + signal.SIGTERM  # forwarded: sh died of it


def test_a_thread_from_a_pth_file_is_left_behind_too(init, tmp_path):
    # No PYTHON* variable at all: a .pth file in the interpreter's own
    # site-packages starts the thread.
    python = python_with(tmp_path, {"exporter.pth": THREAD_STARTER.replace("\n", "; ") + "\n"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    p = init.start([python, PYPAUSE, "--", "sleep", "30"], env=env)
    wait_until_idle(p.pid)
    assert thread_count(p.pid) == 1
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(10) == 128 + signal.SIGTERM


def test_the_apps_modules_on_pythonpath_do_not_shadow_pypauses(init, tmp_path):
    # The app's own (or an old) prometheus_client and setproctitle, first on PYTHONPATH.
    for name in ("prometheus_client", "setproctitle"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(
            "open(%r, 'w').close()\nraise ImportError('the app\\'s')\n"
            % str(tmp_path / ("imported-" + name))
        )
    p = init.start(
        [PYPAUSE, "--metrics-addr", "127.0.0.1:0", "--", "sleep", "30"],
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        stderr=subprocess.PIPE,
    )
    port = port_from(p.stderr)
    wait_until_idle(p.pid)
    status, _, body = http_get(port)
    assert status == 200 and "pypause_zombies_reaped_total" in body
    assert title(p.pid)[:2] == ["pypause", "--metrics-addr"]  # setproctitle: the real one
    assert not list(tmp_path.glob("imported-*"))
    stop(p.proc)


def given_environment(init, env, *pypause_args):
    """The environment a non-Python child of pypause starts with, as bytes."""
    r = init.run(
        [PYPAUSE, *pypause_args, "--", "cat", "/proc/self/environ"], env=env, capture_output=True
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def as_exec_gives_it(env):
    """The environment block execve() makes of `env`, as /proc shows it."""
    return b"".join(b"%s=%s\0" % (os.fsencode(k), os.fsencode(v)) for k, v in env.items())


@pytest.mark.parametrize(
    "locale",
    [
        {},  # the C locale: Python coerces it (PEP 538) by setting LC_CTYPE
        {"LC_CTYPE": "C"},
        {"LC_CTYPE": "POSIX", "LANG": "C"},
        {"LC_CTYPE": "xx_NO.WHERE"},  # a locale that does not exist is C too
        {"LC_CTYPE": "C.UTF-8"},
        {"LC_ALL": "C"},
        {"LANG": "C.UTF-8"},
    ],
    ids=lambda locale: ",".join("%s=%s" % kv for kv in locale.items()) or "none",
)
@pytest.mark.parametrize(
    "python",
    [{}, {"PYTHONUNBUFFERED": "1", "PYTHONPATH": "/nowhere"}],
    ids=["no-PYTHON-variables", "PYTHON-variables"],
)
def test_the_child_gets_the_environment_byte_for_byte(init, locale, python):
    env = {"PATH": "/usr/bin:/bin", **locale, **python, "Z": "last"}
    got = given_environment(init, env)
    # The mark the init fixture adds to find strays: it goes last.
    assert got.startswith(as_exec_gives_it(env)), got
    assert got.count(b"\0") == len(env) + 1  # and nothing else


def test_an_inherited_lc_ctype_is_not_doubled_or_lost(init):
    env = {"PATH": "/usr/bin:/bin", "LC_CTYPE": "C.utf8", "LANGUAGE": "fr"}
    assert given_environment(init, env).startswith(as_exec_gives_it(env))


def test_a_python_variable_that_kills_the_interpreter_is_said_in_the_readme():
    # PYTHONHOME and a malformed PYTHONINTMAXSTRDIGITS end the interpreter
    # before any code runs: no init written in Python can catch that. The
    # README says what to write instead; the way it gives works.
    with open(
        os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
    ) as f:
        readme = f.read()
    assert "PYTHONHOME" in readme and "PYTHONINTMAXSTRDIGITS" in readme
    r = subprocess.run(
        [
            PYPAUSE,
            "--",
            "env",
            "PYTHONHOME=/opt/app-python",
            "sh",
            "-c",
            'test "$PYTHONHOME" = /opt/app-python && exit 5',
        ],
        timeout=20,
    )
    assert r.returncode == 5


def test_the_inherited_mask_survives_the_reexec(init, sitecustomize):
    # Signals stay blocked across the re-exec (none is lost in between), so
    # the mask pypause was given is handed across it for the child.
    def block_usr2():
        signal.pthread_sigmask(signal.SIG_SETMASK, {signal.SIGUSR2})

    r = init.run(
        [PYPAUSE, "--", "grep", "SigBlk", "/proc/self/status"],
        env=sitecustomize,
        capture_output=True,
        text=True,
        preexec_fn=block_usr2,
    )
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.split()[1], 16) == 1 << (signal.SIGUSR2 - 1)
