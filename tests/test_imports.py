"""Imports point one way: the package's import graph, read from the source with ``ast``
(imports inside functions count; ``if TYPE_CHECKING:`` blocks do not, they never run)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import apipod

PACKAGE = Path(apipod.__file__).parent
SUBPACKAGES = {"app", "store", "supervisor", "worker", "media"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def group(module: str) -> str:
    """``apipod.store.sqlite`` → ``store``; ``apipod.cli`` → ``cli``; ``apipod`` → ``apipod``."""
    parts = module.split(".")
    if parts[0] != "apipod":
        return ""
    return parts[1] if len(parts) > 1 else "apipod"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(tree: ast.AST, module: str) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            node.body = []  # skip what only a type checker runs
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: -node.level]
                yield ".".join([*base, node.module] if node.module else base)
            elif node.module:
                yield node.module


def import_graph() -> dict[str, set[str]]:
    """Group → the groups its modules import (within apipod)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        tree = ast.parse(path.read_text(), filename=str(path))
        source = group(module)
        targets = {group(name) for name in imported_modules(tree, module)}
        graph.setdefault(source, set()).update(t for t in targets if t and t != source)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in visiting:
            return [*visiting[visiting.index(node) :], node]
        if node in done:
            return None
        visiting.append(node)
        for target in sorted(graph.get(node, ())):
            cycle = visit(target)
            if cycle:
                return cycle
        visiting.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node)
        if cycle:
            return cycle
    return None


# ``APIPod.start()`` is ``apipod start`` called from Python: the one sanctioned upward
# import (lazy, in that method). Every other edge must point down.
ENTRY_EDGE = ("app", "cli")


def test_the_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert {"app", "store", "supervisor", "worker", "cli", "config"} <= set(graph)
    graph[ENTRY_EDGE[0]] = graph[ENTRY_EDGE[0]] - {ENTRY_EDGE[1]}
    cycle = find_cycle(graph)
    assert cycle is None, " → ".join(cycle or [])


def modules_imported_by(package: str, prefix: str) -> set[str]:
    found: set[str] = set()
    for path in sorted((PACKAGE / package).rglob("*.py")):
        module = module_name(path)
        tree = ast.parse(path.read_text(), filename=str(path))
        found |= {m for m in imported_modules(tree, module) if m.startswith(prefix)}
    return found


def app_modules_imported_by(package: str) -> set[str]:
    return modules_imported_by(package, "apipod.app")


def test_layers_import_only_downwards() -> None:
    graph = import_graph()
    assert "app" not in graph["worker"], "the worker never imports the HTTP front end"
    assert "supervisor" not in graph["app"], "the front end knows no processes"
    # The app may run the embedded worker (queue mode outside `apipod start`), through
    # its one entry point; the rest of the worker package stays behind it.
    worker_modules = modules_imported_by("app", "apipod.worker")
    assert worker_modules <= {"apipod.worker.embedded"}, worker_modules
    # The supervisor loads apps through the loader; it may use the front end's helpers
    # (server options, webhook payloads), never the other way round.
    assert "apipod.app.pod" not in app_modules_imported_by("supervisor")
    assert not graph["store"] & {"app", "worker", "supervisor", "cli"}
    assert not graph["config"] & {"app", "worker", "supervisor", "cli", "store"}
    importers_of_cli = {source for source, targets in graph.items() if "cli" in targets}
    assert importers_of_cli <= {ENTRY_EDGE[0], "__main__"}, importers_of_cli


def test_the_checker_sees_lazy_imports_and_skips_type_checking_blocks() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from apipod.app.pod import APIPod\n"
        "def f():\n    from apipod.cli import main\n    from . import sql\n"
    )
    found = set(imported_modules(ast.parse(source), "apipod.store.x"))
    assert found == {"typing", "apipod.cli", "apipod.store"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
