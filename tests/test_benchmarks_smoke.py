"""The benchmark's --quick run, so that benchmarks/ cannot rot unnoticed.

It checks that the benchmark works and cleans up, not what it measures: a
quick run's counts are too small for its numbers to mean anything. And that
the block a full run writes into README.md changes nothing outside its markers.
"""

import os
import shutil
import subprocess
import sys

import pytest

from tests.support.proc import command_lines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
PEERS = ("tini", "dumb-init", "catatonit")
FLOORS = ("python floor", "floor + import signal")


def _present(name):
    return bool(shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin"))


def _processes_mentioning(text):
    return [pid for pid, argv in command_lines().items() if text.encode() in b"\0".join(argv)]


def _row(table, label):
    for line in table.splitlines():
        if line.startswith("| " + label):
            return [cell.strip() for cell in line.strip("|").split("|")]
    raise AssertionError("no row %r in:\n%s" % (label, table))


def _columns(table, present):
    """The header row of `table`, which has a column for each `present` init
    and says each absent peer was skipped."""
    header = _row(table, "figure")
    for name in present:
        assert name in header, "no column for %s" % name
    for name in PEERS:
        if not _present(name):
            assert "%s not found, skipped" % name in table
    return header


def _check_every_init_measured(table, header, present):
    # Every present init got a measured start-up time, not a placeholder.
    startup = dict(zip(header, _row(table, "start-up")))
    for name in present + ["no init"]:
        assert float(startup[name].replace(",", "")) > 0, startup
    # The figures that every init has in init mode.
    labels = [
        "idle RSS, init mode",
        "wake-ups while idle, init mode",
        "reap CPU per orphan, zombie storm",
        "signal latency, median",
    ]
    if "time until the child runs: skipped" not in table:  # no proc connector
        labels.append("time until the child runs")
    for label in labels:
        values = dict(zip(header, _row(table, label)))
        for name in present:
            float(values[name].replace(",", ""))


def _check_per_pod_and_crowded_scrape(table, header):
    # Per-pod memory, for every init with a pause mode.
    for label in ("mean PSS per pod", "mean USS per pod"):
        values = dict(zip(header, _row(table, label)))
        for name in ["pypause", *FLOORS] + (["catatonit"] if _present("catatonit") else []):
            assert float(values[name]) > 0, values
    # The scrape with a crowd in the namespace (issue 20) was measured.
    crowded = dict(zip(header, _row(table, "`/metrics` scrape latency, 1,000 processes, p99")))
    assert float(crowded["pypause"]) > 0, crowded


@pytest.mark.skipif(os.geteuid() != 0, reason="PID namespaces need root")
@pytest.mark.timeout(180)
def test_quick_run_measures_every_present_init_and_cleans_up(tmp_path):
    out = tmp_path / "quick.md"
    # The benchmark's temporary venv and logs go under tmp_path, so that any
    # process it left behind would still name tmp_path in its command line.
    env = dict(os.environ, TMPDIR=str(tmp_path))
    with open(README, "rb") as f:
        readme = f.read()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = out.read_text()

    present = ["pypause", *FLOORS] + [p for p in PEERS if _present(p)]
    header = _columns(table, present)
    _check_every_init_measured(table, header, present)
    _check_per_pod_and_crowded_scrape(table, header)
    assert "## Targets" in table
    verdicts = [
        line
        for line in table.splitlines()
        if line.endswith(("| pass |", "| **MISS** |", "| skipped |"))
    ]
    assert len(verdicts) == 11, table

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no chart" in table
    else:
        assert out.with_suffix(".png").stat().st_size > 10000

    assert _processes_mentioning(str(tmp_path)) == []
    assert not [p for p in os.listdir(tmp_path) if p.startswith("pypause-bench-")]
    with open(README, "rb") as f:
        assert f.read() == readme, "a quick run wrote README.md"


def _outside_markers(text):
    from benchmarks import report

    begin = text.index(report.README_BEGIN) + len(report.README_BEGIN)
    return text[:begin], text[text.index(report.README_END, begin) :]


def test_readme_block_changes_only_the_text_between_the_markers(tmp_path):
    from benchmarks import measure, report, run

    results = measure.Results()
    for name, startup, uss in (
        ("pypause", 12.0, 3.2),
        ("python floor", 11.0, 3.0),
        ("tini", 1.5, None),
    ):
        results.set("startup_ms", name, startup)
        results.set("uss_pause", name, uss)
    block = report.readme_block(
        results,
        ["pypause", "python floor", "tini"],
        "Latest run: today:",
        "benchmarks/results/latest.png",
    )
    copy = tmp_path / "README.md"
    shutil.copy(README, copy)
    assert run.update_readme(str(copy), block)
    with open(README) as f:
        before = f.read()
    after = copy.read_text()
    assert _outside_markers(after) == _outside_markers(before)
    inside = after[len(_outside_markers(after)[0]) : -len(_outside_markers(after)[1])]
    assert inside == "\n" + block
    # The figures and the targets are two tables, with the chart between them.
    figures, _, targets = block.partition("![benchmark chart](benchmarks/results/latest.png)")
    assert "| start-up, `INIT -- true`" in figures and "≤" not in figures
    assert "| target | pypause | verdict |" in targets and "| start-up" not in targets
    # Written again, the block replaces itself.
    assert run.update_readme(str(copy), block)
    assert copy.read_text() == after

    # Without the markers, nothing is written.
    copy.write_text(before.replace(report.README_END, ""))
    assert not run.update_readme(str(copy), block)
    assert copy.read_text() == before.replace(report.README_END, "")
