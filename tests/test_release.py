"""What a user, a packager and an image builder get: the sdist and the wheel
carry the licence and the metadata, the sdist carries its tests (and they
pass from it), and the version is written in one place."""

import email.parser
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

import pypause

pytestmark = pytest.mark.timeout(300)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERSION = pypause.__version__


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """The sdist and the wheel, built by PyPA's `build` from a copy of this
    checkout (an in-tree build would leave build/ and *.egg-info behind)."""
    out, src = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("src") / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".git", "__pycache__", "*.egg-info", "build", "dist", ".pytest_cache", ".venv"
        ),
    )
    r = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (sdist,) = out.glob("pypause_init-%s.tar.gz" % VERSION)
    (wheel,) = out.glob("pypause_init-%s-py3-none-any.whl" % VERSION)
    return sdist, wheel


def _metadata(text):
    return email.parser.Parser().parsestr(text)


def _check_metadata(meta):
    assert meta["Name"] == "pypause-init" and meta["Version"] == VERSION
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert meta["Requires-Python"] == ">=3.9"
    assert meta["Description-Content-Type"] == "text/markdown"
    description = meta.get_payload()
    assert description.startswith("# pypause")  # docs/pypi.md, as the long description
    # PyPI cannot follow a relative link (docs/..., the README's): none at all.
    assert "](" not in description and "<a " not in description, description
    runtime = [r for r in meta.get_all("Requires-Dist") if "extra ==" not in r]
    assert sorted(runtime) == ["prometheus-client>=0.16", "setproctitle>=1.3.2"]
    classifiers = meta.get_all("Classifier")
    for python in ("3.9", "3.10", "3.11", "3.12", "3.13"):
        assert "Programming Language :: Python :: " + python in classifiers
    assert "Operating System :: POSIX :: Linux" in classifiers
    assert meta.get_all("Keywords") or meta["Keywords"]


def test_the_wheel_carries_the_licence_and_metadata(dist):
    _, wheel = dist
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        info = "pypause_init-%s.dist-info/" % VERSION
        assert info + "licenses/LICENSE" in names
        assert z.read(info + "licenses/LICENSE").startswith(b"\n" + b" " * 33 + b"Apache License")
        _check_metadata(_metadata(z.read(info + "METADATA").decode()))
        assert "pypause_init-%s.data/scripts/pypause" % VERSION in names
    assert not [n for n in names if n.startswith("tests/")]


def test_the_sdist_carries_licence_metadata_and_tests_which_pass_from_it(dist, tmp_path):
    sdist, _ = dist
    top = "pypause_init-%s/" % VERSION
    with tarfile.open(sdist) as t:
        names = set(t.getnames())
        _check_metadata(_metadata(t.extractfile(top + "PKG-INFO").read().decode()))
        t.extractall(tmp_path)
    for path in (
        "LICENSE",
        "CHANGELOG.md",
        "Dockerfile",
        "tests/conftest.py",
        "tests/support/proc.py",
        "tests/helpers/orphans.py",
        "tests/stress/stress_support.py",
        "tests/container/runtimes.py",
        "deploy/image/metrics.Dockerfile",
        "docs/prometheus/alerts.yml",
        "benchmarks/run.py",
    ):
        assert top + path in names, path
    assert not [n for n in names if "__pycache__" in n]
    # The unpacked sdist's own tests, run against its own code (its directory
    # comes first on sys.path): a sample that needs no root.
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cli_unit.py"],
        cwd=tmp_path / top,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout[-3000:]
    assert re.search(r"\d+ passed", r.stdout)


def test_the_version_is_written_in_one_place():
    """git grep finds it only in the single source and the changelog (and in
    benchmark results, which record what was measured)."""
    r = subprocess.run(
        ["git", "grep", "-l", "-F", VERSION], cwd=REPO, capture_output=True, text=True, timeout=20
    )
    if r.returncode not in (0, 1):
        pytest.skip("not a git checkout: %s" % r.stderr.strip())
    found = set(r.stdout.split()) - {"pypause/__init__.py", "CHANGELOG.md"}
    assert not {f for f in found if not f.startswith("benchmarks/results/")}, found
    with open(os.path.join(REPO, "CHANGELOG.md")) as f:
        assert "## [%s]" % VERSION in f.read()
