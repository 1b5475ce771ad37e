"""-r (PYPAUSE_REWRITE): a signal forwarded as another, or dropped."""

import os
import signal
import subprocess

import pytest

from tests.support.running import PYPAUSE, helper, lines, wait_until_idle

pytestmark = pytest.mark.timeout(30)


# -- -r / PYPAUSE_REWRITE -----------------------------------------------------


@pytest.mark.parametrize(
    "args, env",
    [
        (["-r", "TERM:QUIT", "-r", "USR1:0"], {}),
        (["--rewrite=15:3", "-rSIGUSR1:0"], {}),
        ([], {"PYPAUSE_REWRITE": "term:quit, USR1:0"}),
    ],
)
def test_rewrite_maps_and_drops_signals(init, args, env):
    p = init.start(
        [PYPAUSE, *args, "--", *helper("signal_echo", 0)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, **env},
    )
    assert lines(p.stdout, 1) == ["ready"]
    wait_until_idle(p.pid)
    os.kill(p.pid, signal.SIGUSR1)  # dropped
    os.kill(p.pid, signal.SIGTERM)  # arrives as SIGQUIT
    os.kill(p.pid, signal.SIGUSR2)  # untouched
    assert sorted(lines(p.stdout, 2)) == ["SIGQUIT", "SIGUSR2"]
    p.stdin.close()
    assert p.wait(10) == 0
