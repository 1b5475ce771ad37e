"""Exit status rules: the child's code, 128+N, 127/126, and 2 for usage errors."""

import os
import subprocess

import pytest

from tests.support.running import PYPAUSE, python_with

pytestmark = pytest.mark.timeout(30)


def run(*args, **kwargs):
    return subprocess.run([PYPAUSE, *args], capture_output=True, text=True, timeout=20, **kwargs)


# The child's status is pypause's as PID 1 of a PID namespace and as a
# subreaper alike: the tests below that run the child take the init fixture.


def run_in(init, *args, **kwargs):
    return init.run([PYPAUSE, *args], capture_output=True, text=True, **kwargs)


@pytest.mark.parametrize(
    "script, code",
    [
        ("exit 0", 0),
        ("exit 4", 4),
        ("exit 255", 255),
        ("kill -KILL $$", 137),
        ("kill -TERM $$", 143),
        ("kill -SEGV $$", 139),
    ],
)
def test_child_status_becomes_pypause_status(init, script, code):
    assert run_in(init, "--", "sh", "-c", script).returncode == code


def test_option_parsing_stops_at_first_non_option():
    # -c belongs to sh, not to pypause
    assert run("sh", "-c", "exit 4").returncode == 4
    assert run("-v", "sh", "-c", "exit 5").returncode == 5


def test_everything_after_double_dash_belongs_to_the_child():
    r = run("--", "sh", "-c", 'echo "$@"', "sh", "--version", "-h")
    assert r.returncode == 0
    assert r.stdout == "--version -h\n"


def test_command_not_found_is_127(init):
    r = run_in(init, "--", "no-such-command-pypause")
    assert r.returncode == 127
    assert "no-such-command-pypause" in r.stderr


def test_command_not_executable_is_126(init, tmp_path):
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    r = run_in(init, "--", str(script))
    assert r.returncode == 126
    assert "Permission denied" in r.stderr


def test_empty_command_is_127_with_a_line_that_says_why(init):
    r = run_in(init, "--", "")
    assert r.returncode == 127
    assert r.stderr.count("\n") == 1 and "empty command" in r.stderr


def test_directory_as_command_is_126(init, tmp_path):
    assert run_in(init, "--", str(tmp_path)).returncode == 126


def test_a_script_without_a_shebang_is_run_by_sh(init, tmp_path):
    # As execvp() does, and tini, dumb-init and catatonit with it (ENOEXEC).
    (tmp_path / "script").write_text('echo "hi $0 $*"; exit 4\n')
    (tmp_path / "script").chmod(0o755)
    path = "%s:%s" % (tmp_path, os.environ["PATH"])  # unshare too needs the PATH
    r = run_in(init, "--", "script", "a b", "c", env={**os.environ, "PATH": path})
    assert (r.returncode, r.stdout) == (4, "hi %s a b c\n" % (tmp_path / "script")), r.stderr
    r = run_in(init, "--", str(tmp_path / "script"))
    assert (r.returncode, r.stdout) == (4, "hi %s \n" % (tmp_path / "script")), r.stderr


@pytest.mark.parametrize("command, code", [("no-such-command-pypause", 127), ("/", 126)])
def test_exec_failure_status_holds_when_stderr_has_no_reader(init, command, code):
    # The child's own log line meets a pipe without a reader: SIGPIPE must not
    # turn 127 into 141 (the inherited mask leaves SIGPIPE deliverable).
    r, w = os.pipe()
    os.close(r)
    try:
        p = init.run([PYPAUSE, "--", command], stderr=w)
    finally:
        os.close(w)
    assert p.returncode == code


@pytest.mark.parametrize(
    "args, env, word",
    [
        (["--bogus"], {}, "--bogus"),
        (["-x"], {}, "-x"),
        (["--metrics-addr"], {}, "--metrics-addr"),
        (["--metrics-addr", "no-port"], {}, "no-port"),
        (["--metrics-addr", "host:70000"], {}, "70000"),
        (["--metrics-addr", "::1:80"], {}, "::1:80"),
        (["--version=3"], {}, "--version"),
        ([], {"PYPAUSE_VERBOSITY": "loud"}, "PYPAUSE_VERBOSITY"),
        ([], {"PYPAUSE_METRICS_ADDR": "x:y"}, "PYPAUSE_METRICS_ADDR"),
    ],
)
def test_usage_error_is_one_line_and_exit_2(args, env, word):
    r = run(*args, "--", "true", env={"PATH": "/usr/bin:/bin", **env})
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1, r.stderr
    assert word in r.stderr
    assert "Traceback" not in r.stderr


def test_version_and_help():
    from pypause import __version__

    r = run("-V")
    assert (r.returncode, r.stdout) == (0, "pypause %s\n" % __version__)
    r = run("--help")
    assert r.returncode == 0
    for word in ("--metrics-addr", "PYPAUSE_METRICS_ADDR", "PYPAUSE_VERBOSITY", "--subreaper"):
        assert word in r.stdout


def test_subreaper_flag_is_accepted():
    assert run("-s", "--", "sh", "-c", "exit 3").returncode == 3


def test_python_dash_m_runs_pypause():
    import sys

    r = subprocess.run([sys.executable, "-m", "pypause", "--", "sh", "-c", "exit 6"], timeout=20)
    assert r.returncode == 6


def test_a_foreign_pypause_package_is_named_not_a_traceback(tmp_path):
    # PyPI's unrelated "pypause" installs a top-level package of the same name.
    python = python_with(tmp_path, {"pypause/__init__.py": "VERSION = '9'\n"})
    r = subprocess.run([python, PYPAUSE, "--version"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "pypause-init" in r.stderr
    # pypause-init is not on PyPI: the way out installs it from where it is.
    assert "'pip uninstall pypause'" in r.stderr and "install --force-reinstall PATH" in r.stderr
    assert "Traceback" not in r.stderr
