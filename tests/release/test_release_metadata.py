"""The release metadata stays consistent: one version (``aqueue.__version__``, which
pyproject reads), a changelog section for it, the license the metadata declares, and
classifiers for every Python version ``requires-python`` admits up to the newest tested."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import aqueue

ROOT = Path(__file__).resolve().parents[2]


def pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def test_the_version_is_written_once() -> None:
    data = pyproject()
    project = data["project"]
    assert isinstance(project, dict)
    assert "version" not in project and "version" in project["dynamic"]
    hatch = data["tool"]["hatch"]["version"]
    assert hatch == {"path": "src/aqueue/__init__.py"}
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]|rc)?\d*", aqueue.__version__)
    assert "__version__" in aqueue.__all__


def test_the_changelog_has_the_version_and_an_unreleased_section() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## \[([^\]]+)\]", text, flags=re.M)
    assert headings[0] == "Unreleased"
    assert aqueue.__version__ in headings
    assert "## Version policy" in text


def test_license_and_classifiers() -> None:
    project = pyproject()["project"]
    assert isinstance(project, dict)
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    assert project["license"] == {"text": "MIT"}
    classifiers = project["classifiers"]
    assert "License :: OSI Approved :: MIT License" in classifiers
    assert "Framework :: AsyncIO" in classifiers
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert any(c.startswith("Development Status ::") for c in classifiers)
    assert set(project["urls"]) >= {"Homepage", "Documentation", "Changelog", "Issues"}
    extras = project["optional-dependencies"]
    # `all` names every extra a user installs (not the developers' test and lint sets)
    for_users = set(extras) - {"all", "test", "lint", "docs"}
    all_extra = extras["all"][0]
    assert all(name in all_extra for name in for_users), (for_users, all_extra)
