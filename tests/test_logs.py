"""--log-format (PYPAUSE_LOG_FORMAT): JSON lines, valid whatever they hold."""

import json
import os
import subprocess

import pytest

from tests.support.running import PYPAUSE

pytestmark = pytest.mark.timeout(30)


# -- --log-format / PYPAUSE_LOG_FORMAT ----------------------------------------


@pytest.mark.parametrize(
    "args, env", [(["--log-format", "json"], {}), ([], {"PYPAUSE_LOG_FORMAT": "json"})]
)
def test_json_logs(args, env):
    r = subprocess.run(
        [PYPAUSE, "-v", *args, "--", "sh", "-c", "exit 3"],
        capture_output=True,
        env={**os.environ, **env},
        timeout=20,
    )
    assert r.returncode == 3
    records = [json.loads(line) for line in r.stderr.splitlines()]
    assert records
    for record in records:
        assert {"ts", "level", "msg"} <= set(record)
    assert {"msg": "main child exited", "status": 3}.items() <= records[-1].items()


# -- JSON lines whatever they hold ---------------------------------------------


def test_json_log_lines_stay_json_with_wide_characters():
    name = "\U0001f600" * 400  # 12 bytes each once escaped
    r = subprocess.run(
        [PYPAUSE, "--log-format", "json", "--", name], capture_output=True, timeout=20
    )
    assert r.returncode == 126  # ENAMETOOLONG
    assert len(r.stderr) <= 4096
    record = json.loads(r.stderr)
    assert record["truncated"] is True and record["msg"].startswith("cannot run '\U0001f600")


def test_json_log_lines_stay_json_when_too_long():
    name = "x" * 5000  # the exec failure names the command: a line over PIPE_BUF
    r = subprocess.run(
        [PYPAUSE, "--log-format", "json", "--", name], capture_output=True, timeout=20
    )
    assert r.returncode == 126  # ENAMETOOLONG: found nothing runnable, as a shell says
    record = json.loads(r.stderr)
    assert record["truncated"] is True and record["msg"].startswith("cannot run 'xxx")
