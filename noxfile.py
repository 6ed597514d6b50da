"""Developer sessions: ``nox -s tests lint typecheck demo bench``.

Every session builds its own virtualenv (with uv when available) and installs what it
needs, so a fresh clone needs nothing but Python.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "tests"]

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite: unit, integration (real Redis + MariaDB + SQLite), acceptance
    (the real CLI in subprocesses)."""
    session.install("-e", ".[test]")
    session.run("pytest", *(session.posargs or ["-q", "--durations=10"]))


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", "src", "tests", "examples", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "examples", "noxfile.py")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[all]", "mypy>=1.11")
    session.run("mypy", "--strict", "src/aqueue")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Enqueue 10,000 jobs and drain them on the embedded default."""
    session.install("-e", ".[all]")
    session.run("python", "examples/demo.py", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Side-by-side benchmarks (see benchmarks/README.md)."""
    session.install("-e", ".[all]")
    session.run("python", "benchmarks/run.py", *session.posargs)
