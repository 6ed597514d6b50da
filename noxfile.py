"""Developer sessions: ``nox -s tests lint typecheck demo bench soak``.

Every session builds its own virtualenv (with uv when available) and installs what it
needs, so a fresh clone needs nothing but Python.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nox
from nox.command import CommandFailed

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "docs", "tests"]

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite: unit, integration (real Redis + MariaDB + PostgreSQL + SQLite),
    acceptance (the real CLI in subprocesses)."""
    session.install("-e", ".[test]")
    session.run("pytest", *(session.posargs or ["-q", "--durations=10"]))


@nox.session(python=PYTHON)
def quick(session: nox.Session) -> None:
    """The fast tier, for every edit (about 15 s): the pure unit tests and the JobStore and
    broker contract suite (memory, SQLite and the servers). ``nox -s tests`` runs every
    tier; CONTRIBUTING.md lists them with their times."""
    session.install("-e", ".[test]")
    session.run("pytest", "-q", "tests/unit", "tests/contract", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff, and the import layers of src/aqueue (the contracts in pyproject.toml)."""
    session.install("ruff>=0.6", "import-linter>=2.1", "-e", ".")
    session.run("ruff", "check", "src", "tests", "examples", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "examples", "noxfile.py")
    session.run("lint-imports", "--no-cache")


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """The randomized fault soak (not a default session): own Redis and MariaDB, three
    runners, a producer and random faults, then a check of every acknowledged job, e.g.
    ``nox -s soak -- --seed 1 --duration 180`` (docs/explanation/reliability.md,
    "Randomized soak")."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "tests.soak.soak", *(session.posargs or ["--seed", "1"]))


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[all]", "mypy>=1.11")
    session.run("mypy", "--strict", "src/aqueue")


# mkdocs-click renders the CLI reference from the click commands at build time.
DOCS_DEPS = (
    "mkdocs>=1.6",
    "mkdocs-material>=9.5",
    "mkdocstrings[python]>=0.26",
    "mkdocs-click>=0.8",
    "ruff>=0.6",  # mkdocstrings formats the signatures with it
)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """The documentation site (mkdocs.yml) built with ``--strict`` into site/: a broken link,
    a missing anchor or an unresolved reference fails it. ``nox -s docs -- serve`` serves it
    on 127.0.0.1:8000 instead. The snippets are run by tests/docs (the tests session)."""
    session.install("-e", ".[all]", *DOCS_DEPS)
    quiet = {"NO_MKDOCS_2_WARNING": "1"}  # material's end-of-life banner, on every build
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", *session.posargs[1:], env=quiet)
    else:
        session.run("mkdocs", "build", "--strict", *session.posargs, env=quiet)


@nox.session(python=PYTHON)
def build(session: nox.Session) -> None:
    """Build the sdist and the wheel, ``twine check`` them, then install the wheel in a
    fresh virtualenv outside the source tree and smoke-test it there (import, ``python -m
    aqueue --help``, the embedded demo on 300 jobs): tests/release/check_dist.py."""
    session.install("build>=1.2", "twine>=5")
    dist = Path(session.create_tmp()) / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(dist), ".")
    session.run("twine", "check", "--strict", *(str(p) for p in sorted(dist.iterdir())))
    session.run("python", "tests/release/check_dist.py", str(dist))


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Enqueue 10,000 jobs and drain them on the embedded default."""
    session.install("-e", ".[all]")
    session.run("python", "examples/demo.py", *session.posargs)


# arq (newest: 0.28) needs redis<6, so taskiq-redis resolves to 1.0.9 (its newest for
# redis 5), which imports names that taskiq 0.13 removed: hence taskiq<0.13.
BENCH_PEERS = ("arq", "saq[redis]", "taskiq<0.13", "taskiq-redis", "streaq")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Side-by-side benchmarks against arq, SAQ, taskiq and streaQ, aqueue on MariaDB,
    PostgreSQL and SQLite (see benchmarks/README.md). Arguments go to benchmarks/run.py,
    e.g. ``nox -s bench -- --quick --only aqueue``."""
    session.install("-e", ".[all]", "py-spy")
    # One resolution for all the peers, so that none of them upgrades a dependency under
    # another (arq needs redis<6); if that fails, each on its own: a peer that cannot be
    # installed here is reported as unavailable by run.py instead of failing the session.
    try:
        session.install(*BENCH_PEERS)
    except CommandFailed:
        for peer in BENCH_PEERS:
            try:
                session.install(peer)
            except CommandFailed:
                session.warn(f"bench: {peer} cannot be installed here; it will be skipped")
    session.run("python", "benchmarks/run.py", *session.posargs)
