"""-e (PYPAUSE_EXPECT_EXIT): an exit code of the child reported as 0."""

import os

import pytest

from tests.support.running import PYPAUSE

pytestmark = pytest.mark.timeout(30)


# -- -e / PYPAUSE_EXPECT_EXIT -------------------------------------------------


@pytest.mark.parametrize(
    "args, env, script, code",
    [
        (["-e", "143"], {}, "kill -TERM $$", 0),
        (["-e", "143", "-e", "4"], {}, "exit 4", 0),
        (["-e", "143"], {}, "exit 5", 5),
        ([], {"PYPAUSE_EXPECT_EXIT": "143,4"}, "exit 4", 0),
        (["-e", "5"], {"PYPAUSE_EXPECT_EXIT": "4"}, "exit 4", 4),  # the flag wins
    ],
)
def test_expect_exit_maps_codes_to_0(init, args, env, script, code):
    r = init.run([PYPAUSE, *args, "--", "sh", "-c", script], env={**os.environ, **env})
    assert r.returncode == code
