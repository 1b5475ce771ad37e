"""The documents a newcomer follows: README.md at most 300 lines with both
set-up commands on its first screen, and every relative link in it and in
docs/, deploy/ and benchmarks/ leading to a file that exists and, with an
anchor, to a heading that exists (as GitHub names headings)."""

import glob
import os
import re

import pytest

pytestmark = pytest.mark.timeout(30)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCUMENTS = sorted(
    [
        os.path.join(REPO, "README.md"),
        os.path.join(REPO, "deploy", "README.md"),
        os.path.join(REPO, "benchmarks", "README.md"),
    ]
    + glob.glob(os.path.join(REPO, "docs", "*.md"))
)
FIRST_SCREEN = 50  # lines


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _anchors(path):
    """GitHub's anchors for the headings of a Markdown file: lower case, spaces
    to hyphens, everything but letters, digits, hyphens and underscores dropped."""
    text = re.sub(r"```.*?```", "", _read(path), flags=re.S)
    return {
        re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        for m in re.finditer(r"^#+ (.*)$", text, re.M)
    }


def test_the_readme_fits_and_opens_with_both_commands():
    lines = _read(os.path.join(REPO, "README.md")).splitlines()
    assert len(lines) <= 300, len(lines)
    screen = "\n".join(lines[:FIRST_SCREEN])
    assert "pip install . && pypause --" in screen  # install and run
    assert "pip install '.[test]' && python3 -m pytest" in screen  # the tests
    with open(os.path.join(REPO, ".ci", "run")) as f:  # the command CI runs is that one
        assert "pip install '.[test]' && python3 -m pytest" in f.read()


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: os.path.relpath(p, REPO))
def test_every_relative_link_leads_somewhere(path):
    text = re.sub(r"```.*?```", "", _read(path), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        where = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
        if not os.path.exists(where):
            broken.append(target)
        elif anchor and where.endswith(".md") and anchor not in _anchors(where):
            broken.append(target)
    assert not broken, broken
