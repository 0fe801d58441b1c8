"""The package's modules import one another without a cycle.

Every import counts, those inside functions too: an import deferred to a call only hides a
cycle, and two modules that need each other are one concern split in two, or layers the wrong
way round. Imports under `if TYPE_CHECKING:` never run and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import django_taskqueue

PACKAGE_DIR = Path(django_taskqueue.__file__).resolve().parent
PACKAGE = "django_taskqueue"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import of the module, at any depth, except those under `if TYPE_CHECKING:`."""
    found: list[ast.Import | ast.ImportFrom] = []

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if _is_type_checking(node.test):
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.append(node)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            found.append(node)

    Visitor().visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """Return module -> the package's modules it imports."""
    paths = {_module_name(p): p for p in PACKAGE_DIR.rglob("*.py") if "migrations" not in p.parts}
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), str(path))
        for node in _imports(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = name.split(".")
                    base = base[: len(base) - node.level + (1 if is_package else 0)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                targets = [prefix]
                # `from . import x` imports the submodule x.
                targets += [f"{prefix}.{alias.name}" for alias in node.names]
            for target in targets:
                if target in graph and target != name:
                    graph[name].add(target)
    # A module's load also loads its parent packages.
    for name in list(graph):
        parent = name.rsplit(".", 1)[0]
        if name != PACKAGE and parent in graph and parent != name:
            graph[name].add(parent)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _without_package_inits(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    # A package's __init__ re-exporting its submodules, which load the package first, is how
    # Python packages work, not a cycle between concerns: the edge child -> parent is dropped.
    return {
        name: {t for t in targets if not name.startswith(t + ".")}
        for name, targets in graph.items()
    }


def test_graph_sees_the_package():
    graph = import_graph()
    assert "django_taskqueue.db.base" in graph
    assert "django_taskqueue.models" in graph["django_taskqueue.db.base"]


def test_no_import_cycle():
    assert find_cycles(_without_package_inits(import_graph())) == []


def test_the_check_finds_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
