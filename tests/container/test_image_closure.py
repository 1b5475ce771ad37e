"""The pause image holds only the standard library pypause can import
(deploy/image/assemble_rootfs.py): every path pypause has is run inside the
image, with an import hook behind every other finder, which sees exactly the
imports the image cannot satisfy. A module it names that the base image has
is one the image left out: a bug. (Names neither has are optional imports,
`try: import nt` and the like.)"""

import json
import time

import pytest

from tests.container.runtimes import ORPHANS_PY
from tests.support.running import wait_for

pytestmark = pytest.mark.timeout(300)

# Runs the image's pypause command as its #! line would (-IS), after putting a
# finder last on sys.meta_path: it is asked only when no other could find it.
HOOK = """\
import sys
class Missing:
    def find_spec(self, name, path=None, target=None):
        sys.stderr.write("MISSING-MODULE %s\\n" % name)
sys.meta_path.append(Missing())
command = "/usr/local/bin/pypause"
sys.argv = [command] + sys.argv[1:]
with open(command) as f:
    exec(compile(f.read(), command, "exec"), {"__name__": "__main__", "__file__": command})
"""
# A child that leaves an orphan behind (which lives until SIGTERM's default
# action ends it) and exits 5.
LEAVES_ORPHAN = ["-c", ORPHANS_PY, "1", "--until-killed", "--code", "5"]
# (pypause's arguments, its expected exit status)
RUNS = [
    (["-V"], 0),
    (["-h"], 0),
    (["--bogus"], 2),
    (["--metrics-addr", "bad..name:1"], 2),
    (["--", "/no/such/program"], 127),
    (["--", "python3", "-IS", "-c", "raise SystemExit(3)"], 3),
    (
        [
            "--log-format",
            "json",
            "-w",
            "-v",
            "--grace-period",
            "1",
            "--",
            "python3",
            "-IS",
            *LEAVES_ORPHAN,
        ],
        5,
    ),
]


def _hooked(podman, image, *args, detach=False):
    return podman.run_in(
        image,
        "-IS",
        "-c",
        HOOK,
        *args,
        entrypoint="python3",
        detach=detach,
        check=False,
        timeout=60,
    )


def _missing(stderr):
    return {line.split()[1] for line in stderr.splitlines() if line.startswith("MISSING-MODULE ")}


@pytest.fixture(scope="module")
def base_has(podman, base_image):
    """Which of some module names the base image's Python can find."""

    def has(names):
        code = (
            "import importlib.util, json, sys\n"
            "print(json.dumps([n for n in sys.argv[1:] if importlib.util.find_spec(n)]))"
        )
        r = podman.run_in(base_image, "-I", "-c", code, *sorted(names), entrypoint="python3")
        return set(json.loads(r.stdout))

    return has


@pytest.mark.parametrize("args, status", RUNS, ids=[" ".join(a)[:40] for a, _ in RUNS])
def test_every_path_finds_what_it_imports(podman, image, base_has, args, status):
    r = _hooked(podman, image, *args)
    assert r.returncode == status, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    missing = _missing(r.stderr)
    assert not base_has(missing), "the image lacks what the base has: %s" % base_has(missing)


@pytest.mark.parametrize("addr", ["127.0.0.1:9199", "localhost:9199"])
def test_metrics_find_what_they_import(podman, image, base_has, addr):
    # A name too: resolving it encodes it with the idna codec (stringprep).
    r = _hooked(podman, image, "--log-format", "json", "--metrics-addr", addr, detach=True)
    assert r.returncode == 0, r.stderr
    container = r.stdout.strip()
    try:
        wait_for(
            lambda: "serving metrics" in podman("logs", container).stderr,
            what="pypause to serve metrics",
        )
        answers = {}
        for path, accept in [
            ("/metrics", "*/*"),
            ("/metrics", "application/openmetrics-text"),
            ("/healthz", "*/*"),
            ("/", "*/*"),
            ("/nowhere", "*/*"),
        ]:
            got = podman.get_in(container, addr.rpartition(":")[2], path, accept)
            answers[path, accept] = got.splitlines()[0]  # (text mode: the CRLFs are gone)
        start = time.monotonic()
        podman("stop", "--time", "10", container)
        assert time.monotonic() - start < 5  # SIGTERM ended it, not the SIGKILL after 10 s
        assert podman.inspect(container, "{{.State.ExitCode}}") == "0"
        stderr = podman("logs", container).stderr
    finally:
        podman("rm", "--force", container, check=False)
    assert answers == {
        ("/metrics", "*/*"): "HTTP/1.1 200 OK",
        ("/metrics", "application/openmetrics-text"): "HTTP/1.1 200 OK",
        ("/healthz", "*/*"): "HTTP/1.1 200 OK",
        ("/", "*/*"): "HTTP/1.1 200 OK",
        ("/nowhere", "*/*"): "HTTP/1.1 404 Not Found",
    }
    assert "error" not in stderr and "Traceback" not in stderr, stderr
    missing = _missing(stderr)
    assert not base_has(missing), "the image lacks what the base has: %s" % base_has(missing)
