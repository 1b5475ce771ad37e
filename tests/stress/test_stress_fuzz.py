"""Fuzzed command lines and PYPAUSE_* variables, from a seeded generator
(reproducible: the failing vector and its seed are in the message).

In process, cli.parse() must return a Config (one that shows help or the version,
or one to run), or raise
cli.UsageError, for every vector. Black box, pypause must end with 0, 2, the
child's code, 126 or 127, exactly the one the parse predicts, never with a
traceback and never hang.
"""

import math
import os
import random
import shutil
import signal
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from pypause import cli
from tests.stress.stress_support import measured, scaled
from tests.support.running import PYPAUSE, wait_until_idle

SEED = 20240607
IN_PROCESS = scaled(5000, 50000)
BLACK_BOX = scaled(300, 3000)

SHORT = "hVvsgrepw" + "xZ9-"  # every short option, and some that are not
LONG = [o.long for o in cli.OPTIONS] + ["nope", "verbos", "help=1", ""]
ENV = [o.env for o in cli.OPTIONS if o.env]
_VALUES = [
    "TERM",
    "SIGTERM",
    "sigterm",
    "15",
    "0",
    "-1",
    "256",
    "255",
    "RTMIN+2",
    "rtmax-1",
    "SIGRTMIN+99",
    "RTMIN+",
    "RTMIN-0",
    "KILL",
    "STOP",
    "SEGV",
    "TERM:QUIT",
    "USR1:0",
    "TERM: 0",
    "TERM:",
    ":TERM",
    "TERM:QUIT:HUP",
    "15:9",
    "1.5",
    "nan",
    "inf",
    "-0",
    "1e9",
    "1e400",
    "0x10",
    "1_000",
    " 3 ",
    "json",
    "text",
    "JSON",
    "xml",
    "127.0.0.1:0",
    "[::1]:0",
    "0",
    "[::]",
    "[::]:",
    "host:",
    ":80",
    "65536",
    "1:2:3",
    "\u0663",
    "\u00b2",
    "",
    " ",
    "\t",
    "\u00df",
    "\u00e9t\u00e9",
    "\udcff\udcfe",
    "a" * 5000,
    "9" * 5000,
    "--",
    "-",
    "-v",
    "-vv",
    "--help",
    "-V",
    "yes",
    "no",
    "on",
    "off",
    "maybe",
    "TERM,QUIT",
    "1 2 3",
]
_ALPHABET = "abcXYZ019-_=:+,. /\\\t\n\x1b\x7f\u00e9\u0663\u00b2\u200b\U0001f600\udcff"


def _runnable(token):
    """True if exec'ing `token` might start a real program."""
    return "/" in token or shutil.which(token) is not None


VALUES = [v for v in _VALUES if not _runnable(v)]


def _junk(rng):
    while True:
        token = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 12)))
        if not _runnable(token):
            return token


def _option_token(rng):
    kind = rng.random()
    if kind < 0.3:
        token = "-" + "".join(rng.choice(SHORT) for _ in range(rng.randint(1, 3)))
        if rng.random() < 0.3:
            token += rng.choice(VALUES)
    elif kind < 0.6:
        token = "--" + rng.choice(LONG)
        if rng.random() < 0.4:
            token += "=" + rng.choice(VALUES)
    elif kind < 0.9:
        token = rng.choice(VALUES)
    else:
        token = _junk(rng)
    return token


def vector(rng, tails):
    """(argv, environ additions) drawn from `rng`; `tails` are the possible commands."""
    argv = [_option_token(rng) for _ in range(rng.randint(0, 6))]
    argv += rng.choice(tails)
    env = {}
    if rng.random() < 0.3:
        for name in rng.sample(ENV, rng.randint(1, 3)):
            env[name] = rng.choice(VALUES + [_junk(rng)])
    return argv, env


def _check_config(config):
    """A Config's fields are what the rest of pypause expects."""
    assert isinstance(config.command, list) and all(isinstance(a, str) for a in config.command)
    assert isinstance(config.verbosity, int) and config.verbosity >= 0
    if config.metrics_addr is not None:
        host, port = config.metrics_addr
        assert (host is None or isinstance(host, str) and host) and 0 <= port <= 65535
    if config.grace_period is not None:
        assert math.isfinite(config.grace_period) and config.grace_period >= 0
    assert all(isinstance(k, int) and isinstance(v, int) for k, v in config.rewrite.items())
    assert all(0 <= code <= 255 for code in config.expect_exit)
    assert config.log_format in ("text", "json")
    assert config.pdeathsig is None or isinstance(config.pdeathsig, int)
    assert isinstance(config.pgroup, bool) and isinstance(config.warn_on_reap, bool)


IN_PROCESS_TAILS = [[], ["sh", "-c", "exit 3"], ["--", "true"], ["cmd", "-v", "--", "x"]]


@pytest.mark.timeout(scaled(60, 600))
def test_parse_returns_a_config_or_a_usage_error_for_every_vector():
    rng = random.Random(SEED)
    results = {"config": 0, "help": 0, "version": 0, "usage error": 0}
    for i in range(IN_PROCESS):
        argv, env = vector(rng, IN_PROCESS_TAILS)
        if rng.random() < 0.05:  # bytes no file name can hold, too
            argv.insert(rng.randint(0, len(argv)), rng.choice(["\x00", "a\x00b", "\ud800"]))
        try:
            config = cli.parse(argv, env)
        except cli.UsageError as e:
            results["usage error"] += 1
            assert str(e), (i, argv, env)
            continue
        except Exception as e:  # anything else is a bug: pypause would crash at start
            raise AssertionError("vector %d (seed %d): %r %r raised %r" % (i, SEED, argv, env, e))
        if config.show:
            results[config.show] += 1
        else:
            results["config"] += 1
            _check_config(config)
    assert results["config"] and results["usage error"]  # the generator reaches both
    measured("fuzz, in process", "%d vectors: %r" % (IN_PROCESS, results))


@pytest.mark.timeout(30)
def test_every_usage_error_is_one_line():
    rng = random.Random(SEED + 1)
    for i in range(IN_PROCESS):
        argv, env = vector(rng, IN_PROCESS_TAILS)
        try:
            cli.parse(argv, env)
        except cli.UsageError as e:
            assert "\n" not in str(e) and "\x1b" not in str(e), (i, argv, env, str(e))


def _expected(config, known):
    """The exit statuses pypause may end with, per the parse of its vector."""
    if isinstance(config, cli.UsageError):
        return {2}
    if config.show:
        return {0}
    if not config.command:
        return {0}  # pause mode, ended by SIGTERM
    if tuple(config.command) in known:
        codes = {known[tuple(config.command)]}
    else:
        assert not _runnable(config.command[0]), config.command
        codes = {126, 127}  # a token of the generator: nothing to run
    return {0 if c in config.expect_exit else c for c in codes}


def _black_box(case):
    i, argv, env, expected, pause = case
    p = subprocess.Popen(
        [PYPAUSE, *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
    )
    try:
        if pause:
            wait_until_idle(p.pid)
            os.kill(p.pid, signal.SIGTERM)
        out, err = p.communicate(timeout=20)
    except (subprocess.TimeoutExpired, AssertionError):
        p.kill()
        p.communicate()
        return i, "hang", b""
    return i, p.returncode, err


@pytest.mark.timeout(scaled(120, 900))
def test_black_box_every_run_ends_with_a_predicted_status(tmp_path):
    not_executable = tmp_path / "not-executable"
    not_executable.write_text("#!/bin/sh\n")
    not_executable.chmod(stat.S_IRUSR | stat.S_IWUSR)
    rng = random.Random(SEED + 2)
    known = {
        ("true",): 0,
        ("false",): 1,
        ("/nonexistent/pypause-fuzz",): 127,
        (str(not_executable),): 126,
    }
    tails = [
        [],
        ["true"],
        ["false"],
        ["/nonexistent/pypause-fuzz"],
        [str(not_executable)],
        ["--", "true"],
    ]
    for code in (0, 3, 42, 126, 127, 255):
        known[("sh", "-c", "exit %d" % code)] = code
        tails += [["sh", "-c", "exit %d" % code], ["--", "sh", "-c", "exit %d" % code]]

    cases = []
    for i in range(BLACK_BOX):
        argv, env = vector(rng, tails)
        try:
            config = cli.parse(argv, env)
        except cli.UsageError as e:
            config = e
        pause = isinstance(config, cli.Config) and not config.show and not config.command
        cases.append((i, argv, env, _expected(config, known), pause))

    statuses = {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        for i, status, err in pool.map(_black_box, cases):
            _, argv, env, expected, _ = cases[i]
            where = "vector %d (seed %d): pypause %r with %r" % (i, SEED + 2, argv, env)
            assert status != "hang", "%s did not end" % where
            assert status in expected, "%s: status %d, expected %s; stderr %r" % (
                where,
                status,
                expected,
                err[-500:],
            )
            assert b"Traceback" not in err, "%s: %r" % (where, err[-2000:])
            if status == 2:
                assert err.count(b"\n") == 1 and err.startswith(b"pypause: "), (where, err)
            statuses[status] = statuses.get(status, 0) + 1
    assert {0, 2, 127} <= set(statuses)  # the vectors reach the main outcomes
    measured(
        "fuzz, black box", "%d runs, exit statuses %s" % (BLACK_BOX, dict(sorted(statuses.items())))
    )


@pytest.mark.timeout(30)
def test_an_argument_that_is_not_utf8_does_not_kill_pid1():
    r = subprocess.run(
        [PYPAUSE, "--", "sh", "-c", "exit 3", "sh", b"caf\xe9"], capture_output=True, timeout=20
    )
    assert b"Traceback" not in r.stderr
    assert r.returncode == 3
