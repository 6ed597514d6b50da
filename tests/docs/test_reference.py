"""The reference pages stay true to the code: every public name they show (the
``__all__`` of aqueue, aqueue.testing and aqueue.web) has a docstring, and so has each
public method, property and option field of the public classes; the error tree on
docs/reference/errors.md is the real class hierarchy, and each public error has its entry."""

from __future__ import annotations

import ast
import dataclasses
import enum
import inspect
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

import aqueue
import aqueue.testing
import aqueue.web

ROOT = Path(__file__).resolve().parents[2]
ERRORS_PAGE = ROOT / "docs" / "reference" / "errors.md"
MODULES = (aqueue, aqueue.testing, aqueue.web)
NOT_DOCUMENTED_OBJECTS = {"__version__", "DEFAULT_CONFIG"}  # values: described on the page
# Type aliases: their docstring is the string after the assignment, in this module.
ALIASES = {"aqueue.web.Auth": aqueue.web._auth, "aqueue.web.Role": aqueue.web._auth}
# Implementations of internal interfaces: their page shows the class without its members
# (``members: false``), which the test below checks.
MEMBERS_NOT_SHOWN = {
    "aqueue.testing.MemoryStore",
    "aqueue.testing.MemoryBroker",
    "aqueue.testing.MemoryFinishWaiters",
}


def public_names() -> list[tuple[str, Any]]:
    return [
        (f"{module.__name__}.{name}", getattr(module, name))
        for module in MODULES
        for name in module.__all__
        if name not in NOT_DOCUMENTED_OBJECTS
    ]


def _own_members(cls: type) -> list[tuple[str, Any]]:
    """Public methods and properties defined by aqueue (in the class or a base of it)."""
    found = []
    for klass in cls.__mro__:
        if not klass.__module__.startswith("aqueue") or issubclass(klass, BaseException):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or isinstance(value, type):
                continue
            if isinstance(value, property | staticmethod | classmethod) or inspect.isfunction(
                value
            ):
                found.append((f"{cls.__name__}.{name}", value))
    return found


def _field_docs(cls: type) -> dict[str, bool]:
    """Dataclass field -> whether a string literal (its docstring) follows it."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    documented = {}
    for i, node in enumerate(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            nxt = body[i + 1] if i + 1 < len(body) else None
            documented[node.target.id] = (
                isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            )
    return documented


@pytest.mark.parametrize(("name", "obj"), public_names(), ids=[n for n, _ in public_names()])
def test_public_name_has_a_docstring(name: str, obj: Any) -> None:
    if name in ALIASES:
        source = inspect.getsource(ALIASES[name])
        short = name.rsplit(".", 1)[1]
        assert re.search(rf"^{short} = .*\n\"\"\"\S", source, re.M), f"{name}: no docstring"
        return
    doc = obj.__doc__ if inspect.isclass(obj) or callable(obj) else None
    if inspect.isclass(obj) and issubclass(obj, enum.Enum):
        doc = obj.__doc__
    assert doc and doc.strip(), f"{name} has no docstring"
    if inspect.isclass(obj) and obj.__doc__ == obj.__mro__[1].__doc__:
        pytest.fail(f"{name} only inherits its base's docstring")
    if name in MEMBERS_NOT_SHOWN:
        page = (ROOT / "docs" / "reference" / "testing.md").read_text()
        assert re.search(rf"::: {re.escape(name)}\n\s+options:\n\s+members: false", page)
    elif inspect.isclass(obj):
        # getdoc of the class attribute: a method documented on the interface it
        # implements (JobStore, MessageBroker) shows that docstring, as the page does.
        missing = [
            m
            for m, value in _own_members(obj)
            if not inspect.getdoc(getattr(obj, m.split(".", 1)[1], value))
        ]
        assert not missing, f"no docstring: {missing}"
        if dataclasses.is_dataclass(obj):
            # A field is documented by its own docstring or by name in the class's.
            fields = _field_docs(obj)
            undocumented = [
                f
                for f, ok in fields.items()
                if not ok and not f.startswith("_") and f"``{f}``" not in (obj.__doc__ or "")
            ]
            assert not undocumented, f"{name}: fields without a docstring: {undocumented}"


def _tree() -> list[tuple[int, str]]:
    text = ERRORS_PAGE.read_text()
    block = text.split("```\nAqueueError", 1)[1].split("```", 1)[0]
    rows = [(0, "AqueueError")]
    for line in block.splitlines():
        m = re.match(r"^(?P<lead>[│├└─\s]*)(?P<name>\w+)", line)
        if m and m["name"]:
            rows.append((len(m["lead"]) // 4, m["name"]))
    return rows


def test_error_tree_is_the_class_hierarchy() -> None:
    parents: list[str] = []
    seen = set()
    for depth, name in _tree():
        parents = parents[:depth]
        cls = getattr(aqueue, name, None) or getattr(aqueue._errors, name)  # type: ignore[attr-defined]
        if parents:
            assert cls.__mro__[1].__name__ == parents[-1] or parents[-1] in {
                b.__name__ for b in cls.__bases__
            }, f"{name}: its parent is not {parents[-1]}"
        parents.append(name)
        seen.add(name)
    public_errors = {
        n for n in aqueue.__all__ if isinstance(getattr(aqueue, n), type) and n.endswith("Error")
    }
    assert public_errors <= seen, f"missing from the tree: {public_errors - seen}"
    page = ERRORS_PAGE.read_text()
    missing = [n for n in sorted(public_errors) if f"::: aqueue.{n}\n" not in page]
    assert not missing, f"no reference entry on errors.md: {missing}"


def test_every_public_name_is_on_a_reference_page() -> None:
    pages = "".join(p.read_text() for p in (ROOT / "docs" / "reference").glob("*.md"))
    missing = [
        f"{module.__name__}.{name}"
        for module in MODULES
        for name in module.__all__
        if f"::: {module.__name__}.{name}\n" not in pages
    ]
    assert not missing, f"not on any reference page: {missing}"
