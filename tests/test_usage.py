"""The command line as a user meets it: bad input named in one line, help
that lists every variable, and every option at once."""

import json
import os
import signal
import subprocess

import pytest

from tests.support.running import PYPAUSE, helper, lines, wait_for, wait_until_idle

pytestmark = pytest.mark.timeout(30)


# -- bad input ----------------------------------------------------------------


@pytest.mark.parametrize(
    "args, env, words",
    [
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
    ],
)
def test_bad_input_names_the_option_and_value(args, env, words):
    r = subprocess.run(
        [PYPAUSE, *args, "--", "true"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=20,
    )
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    for word in words:
        assert word in r.stderr


def test_help_lists_every_variable():
    out = subprocess.run([PYPAUSE, "--help"], capture_output=True, text=True, timeout=20).stdout
    for var in (
        "PYPAUSE_VERBOSITY",
        "PYPAUSE_SUBREAPER",
        "PYPAUSE_PGROUP",
        "PYPAUSE_REWRITE",
        "PYPAUSE_EXPECT_EXIT",
        "PYPAUSE_PDEATHSIG",
        "PYPAUSE_WARN_ON_REAP",
        "PYPAUSE_GRACE_PERIOD",
        "PYPAUSE_LOG_FORMAT",
        "PYPAUSE_METRICS_ADDR",
    ):
        assert var in out


# -- the same options together ---------------------------------------------------


def test_options_together(init):
    """-g, -r, -e, -w and JSON logs together."""
    p = init.start(
        [
            PYPAUSE,
            "-g",
            "-r",
            "TERM:USR2",
            "-r",
            "INT:TERM",
            "-e",
            "7",
            "-w",
            "--log-format",
            "json",
            "--",
            "sh",
            "-c",
            '(sleep 0.1 &); trap "" USR2 TERM; "$@" & wait $!; exit 7',
            "sh",
            *helper("signal_echo", 0, "--exit-on-term", "--no-stdin"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert lines(p.stdout, 1) == ["ready"]
    wait_until_idle(p.pid)
    os.kill(p.pid, signal.SIGTERM)  # rewritten to SIGUSR2, sent to the whole group
    assert lines(p.stdout, 1) == ["SIGUSR2"]
    wait_for(
        lambda: "sleep" not in [s.comm for s in p.members().values()],
        what="the orphaned sleep to be reaped",
    )
    os.kill(p.pid, signal.SIGINT)  # rewritten to SIGTERM: the echo child exits,
    assert lines(p.stdout, 1) == ["SIGTERM"]
    assert p.wait(10) == 0  # and sh with 7, an expected code
    records = [json.loads(line) for line in p.stderr.read().splitlines()]
    assert any(r["msg"] == "reaped zombie" and r["comm"] == "sleep" for r in records)
