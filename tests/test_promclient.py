"""prometheus_client loaded in part (pypause/promclient.py): what is loaded,
the oldest version pyproject.toml allows, and a layout pypause does not know.
(The newest version is the one the test environment installs.)"""

import os
import re
import shutil
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.http import http_get, port_from
from tests.support.running import PYPAUSE, PYPAUSE_PYTHON, python_with

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: What pypause must not load: prometheus_client's HTTP machinery.
HEAVY = {
    "http.server",
    "http.client",
    "ssl",
    "urllib.request",
    "wsgiref.simple_server",
    "email.parser",
    "prometheus_client.exposition",
}


def scrape(port, accept=None):
    """(Content-Type, body) of a scrape that answers 200."""
    status, headers, text = http_get(port, headers={"Accept": accept} if accept else None)
    assert status == 200, text
    return headers["Content-Type"], text


def check_scrapes(port):
    """Both formats parse, and the series pypause promises are there."""
    kind, text = scrape(port)
    assert kind.startswith("text/plain; version=0.0.4")
    names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    assert {"pypause_zombies_reaped_total", "process_resident_memory_bytes"} <= names
    kind, text = scrape(port, "application/openmetrics-text; version=1.0.0")
    assert kind.startswith("application/openmetrics-text") and text.endswith("# EOF\n")
    if shutil.which("promtool"):
        r = subprocess.run(
            ["promtool", "check", "metrics"],
            input=scrape(port)[1],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r


def test_metrics_load_none_of_prometheus_clients_http_machinery(procs):
    # -X importtime: PYTHONPROFILEIMPORTTIME would be a PYTHON* variable, which
    # pypause leaves to the app (it re-executes itself isolated from them).
    p = procs(
        [PYPAUSE_PYTHON, "-X", "importtime", PYPAUSE, "--metrics-addr", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
    )
    imported = set()
    while True:
        line = p.stderr.readline().decode()
        assert line, "pypause ended before serving metrics"
        if line.startswith("import time:"):
            imported.add(line.split("|")[-1].strip())
            continue
        m = re.search(r"serving metrics on http://\S+:(\d+)/metrics", line)
        if m:
            break
    assert "prometheus_client.registry" in imported  # the measurement sees it at all
    assert not imported & HEAVY
    check_scrapes(int(m.group(1)))


def test_an_unknown_layout_disables_metrics_loudly(procs, tmp_path):
    # A prometheus_client without the submodules pypause loads, found first.
    python = python_with(tmp_path, {"prometheus_client/__init__.py": ""})
    r = subprocess.run(
        [python, PYPAUSE, "--metrics-addr", "127.0.0.1:0", "--", "sh", "-c", "exit 6"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert r.returncode == 6  # the init goes on
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "metrics disabled" in r.stderr and "not laid out as pypause expects" in r.stderr
    # ... naming the version found (from a .dist-info directory on sys.path).
    assert re.search(r"prometheus_client (\d[\w.]*|\(version unknown\)) is not laid out", r.stderr)


def _oldest_allowed():
    tomllib = pytest.importorskip("tomllib", reason="tomllib comes with Python 3.11+")
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        dependencies = tomllib.load(f)["project"]["dependencies"]
    (spec,) = [d for d in dependencies if d.startswith("prometheus-client")]
    return re.fullmatch(r"prometheus-client>=([\d.]+)", spec).group(1)


@pytest.mark.timeout(300)
def test_the_oldest_prometheus_client_allowed(tmp_path, procs):
    """A venv with the oldest prometheus-client pyproject.toml allows (from PyPI)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
    ]
    r = subprocess.run(
        pip + ["prometheus-client==%s" % _oldest_allowed(), "setproctitle"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0, r.stderr  # PyPI must be reachable, as the README says
    subprocess.run(pip + ["--no-deps", REPO], check=True, capture_output=True, timeout=240)
    p = procs(
        [str(venv / "bin" / "pypause"), "--metrics-addr", "127.0.0.1:0"], stderr=subprocess.PIPE
    )
    check_scrapes(port_from(p.stderr))
