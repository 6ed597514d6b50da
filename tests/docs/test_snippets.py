"""Every Python block of the docs runs, one way or another:

- ``--8<-- "examples/x.py:section"``: included at build time from an example file that the
  suite runs (mkdocs' snippets extension fails the build on a missing file or section);
- a block right after a ``<!-- snippet: run -->`` line is a whole program: it is run here
  in a subprocess, with the test services' URLs in ``AQUEUE_REDIS_URL`` /
  ``AQUEUE_DATABASE_URL`` and a scratch ``AQUEUE_HOME``, and must exit 0;
- any other block must be copied from a tested example: each of its lines, stripped,
  appears in one file under examples/ (so a snippet cannot drift from the code that runs);
  every file there is named by a test that runs it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..conftest import POSTGRES_URL, REDIS_URL

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"
RUN_MARK = "<!-- snippet: run -->"
FENCE = re.compile(r"^(?P<indent> *)(?P<ticks>```+)\s*(?P<lang>[\w+-]*)(?P<rest>.*)$")


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    code: str
    run: bool

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def blocks() -> list[Block]:
    found: list[Block] = []
    for page in sorted(DOCS.rglob("*.md")):
        lines = page.read_text().splitlines()
        i = 0
        while i < len(lines):
            m = FENCE.match(lines[i])
            if not m:
                i += 1
                continue
            indent, ticks = len(m["indent"]), m["ticks"]
            end = i + 1
            while end < len(lines) and lines[end].strip() != ticks:
                end += 1
            body = "\n".join(line[indent:] for line in lines[i + 1 : end])
            before = next((ln.strip() for ln in reversed(lines[:i]) if ln.strip()), "")
            found.append(
                Block(
                    page=page.relative_to(DOCS).as_posix(),
                    line=i + 1,
                    lang=m["lang"].lower(),
                    code=body,
                    run=before == RUN_MARK,
                )
            )
            i = end + 1
    return found


PYTHON = [b for b in blocks() if b.lang in ("python", "py", "pycon")]
RUNNABLE = [b for b in PYTHON if b.run]
COPIED = [b for b in PYTHON if not b.run and "--8<--" not in b.code]


def _normal(line: str) -> str:
    """A line without its comment (two spaces then ``#``, or a whole-line comment), its
    spaces, or a stub body (``: ...``): the docs may comment a line differently, wrap it
    differently or elide a body, but not change its code."""
    code = re.split(r"\s{2,}#|^\s*#", line, maxsplit=1)[0]
    code = re.sub(r":\s*\.\.\.\s*$", ":", code)
    return "".join(code.split()).rstrip(",")


IMPORT = re.compile(r"^from\s+(?P<module>[\w.]+)\s+import\s+(?P<names>[\w ,]+)$", re.M)


def _found(line: str, examples: list[str]) -> bool:
    """``line`` is in an example; an import may name fewer names than the example's."""
    if any(_normal(line) in text for text in examples):
        return True
    m = IMPORT.match(line.strip())
    if not m:
        return False
    imported = {
        (im["module"], name.strip())
        for path in EXAMPLES.rglob("*.py")
        for im in IMPORT.finditer(path.read_text())
        for name in im["names"].split(",")
    }
    return all((m["module"], name.strip()) in imported for name in m["names"].split(","))


def _examples_text() -> list[str]:
    """Each example file as one string of its normalised lines: a docs line is found in
    it even when the example wraps that line differently."""
    return [
        "".join(_normal(line) for line in path.read_text().splitlines())
        for path in EXAMPLES.rglob("*.py")
    ]


def test_every_example_is_run_by_a_test() -> None:
    """A copied block is matched against every file under examples/, so each must be one
    a test runs: named by a test file (its file name, its module, or its folder)."""
    tests_text = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("*.py"))
    unnamed = []
    for path in sorted(EXAMPLES.rglob("*.py")):
        rel = path.relative_to(EXAMPLES)
        names = {
            f'"{path.name}"',
            "examples." + ".".join(rel.with_suffix("").parts),
            f'"examples" / "{rel.parts[0]}"',
        }
        if not any(name in tests_text for name in names):
            unnamed.append(rel.as_posix())
    assert not unnamed, f"examples no test runs: {unnamed}"


def test_the_docs_have_python_blocks() -> None:
    assert len(PYTHON) >= 20
    assert RUNNABLE


@pytest.mark.parametrize("block", COPIED, ids=[b.id for b in COPIED])
def test_copied_block_matches_an_example(block: Block) -> None:
    examples = _examples_text()
    missing = [
        line.strip()
        for line in block.code.splitlines()
        if _normal(line) not in ("", "...") and not _found(line, examples)
    ]
    assert not missing, (
        f"{block.id}: lines found in no file under examples/ (include the example with "
        f"--8<--, or mark the block {RUN_MARK}): {missing}"
    )


@pytest.mark.acceptance
@pytest.mark.timeout(120)
@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_runnable_block_runs(block: Block, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(block.code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AQUEUE_")}
    env.update(
        AQUEUE_REDIS_URL=REDIS_URL,
        AQUEUE_DATABASE_URL=POSTGRES_URL,
        AQUEUE_HOME=str(tmp_path / "aq"),
        PYTHONPATH=os.pathsep.join([str(EXAMPLES), env.get("PYTHONPATH", "")]),
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, f"{block.id}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
