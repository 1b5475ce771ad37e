"""The benchmark's --quick run, so that benchmarks/ cannot rot unnoticed.

It checks that the benchmark works and cleans up, not what it measures: a
quick run's counts are too small for its numbers to mean anything.
"""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = ("tini", "dumb-init", "catatonit")


def _present(name):
    return bool(shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin"))


def _processes_mentioning(text):
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    if text.encode() in f.read():
                        found.append(int(pid))
            except OSError:
                continue
    return found


def _row(table, label):
    for line in table.splitlines():
        if line.startswith("| " + label):
            return [cell.strip() for cell in line.strip("|").split("|")]
    raise AssertionError("no row %r in:\n%s" % (label, table))


@pytest.mark.skipif(os.geteuid() != 0, reason="PID namespaces need root")
@pytest.mark.timeout(180)
def test_quick_run_measures_every_present_init_and_cleans_up(tmp_path):
    out = tmp_path / "quick.md"
    # The benchmark's temporary venv and logs go under tmp_path, so that any
    # process it left behind would still name tmp_path in its command line.
    env = dict(os.environ, TMPDIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    table = out.read_text()

    present = ["pypause", "python floor"] + [p for p in PEERS if _present(p)]
    header = _row(table, "figure")
    for name in present:
        assert name in header, "no column for %s" % name
    for name in PEERS:
        if not _present(name):
            assert "%s not found, skipped" % name in table
    # Every present init got a measured start-up time, not a placeholder.
    startup = dict(zip(header, _row(table, "start-up")))
    for name in present + ["no init"]:
        assert float(startup[name].replace(",", "")) > 0, startup
    # The figures that every init has in init mode.
    for label in ("idle RSS, init mode", "wake-ups while idle, init mode",
                  "reap CPU per orphan, zombie storm", "signal latency, median"):
        values = dict(zip(header, _row(table, label)))
        for name in present:
            float(values[name].replace(",", ""))
    assert "## Targets" in table
    verdicts = [line for line in table.splitlines()
                if line.endswith(("| pass |", "| **MISS** |", "| skipped |"))]
    assert len(verdicts) == 8, table

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no chart" in table
    else:
        assert out.with_suffix(".png").stat().st_size > 10000

    assert _processes_mentioning(str(tmp_path)) == []
    assert not [p for p in os.listdir(tmp_path) if p.startswith("pypause-bench-")]
