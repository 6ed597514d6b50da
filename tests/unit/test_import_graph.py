"""No import cycle anywhere in ``src/aqueue``, module by module (imports under
``TYPE_CHECKING`` and inside functions count too): the module-level twin of the
import-linter contracts in pyproject.toml, which ``nox -s lint`` checks."""

from __future__ import annotations

import grimp


def test_no_import_cycle_in_aqueue() -> None:
    graph = grimp.build_graph("aqueue", cache_dir=None)
    cycles = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None:
                cycles.append(" -> ".join((module, *back)))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_runner_and_producer_side_never_import_each_other() -> None:
    graph = grimp.build_graph("aqueue", cache_dir=None)
    for a, b in (("aqueue._queue", "aqueue._runner"), ("aqueue._runner", "aqueue._queue")):
        chain = graph.find_shortest_chain(importer=a, imported=b, as_packages=True)
        assert chain is None, f"{a} imports {b}: {' -> '.join(chain or ())}"
