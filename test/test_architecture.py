"""The package's layering, read from the code's own imports (those that run; ``if
TYPE_CHECKING:`` imports are annotations only): protocol/ imports neither
client/ nor server/, the client and the server never import each other, data flows
source -> conversion -> client -> server, and there is no import circle anywhere; no
module of server/ is over 700 lines; the package ships py.typed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO

PKG = REPO / "mosaico_bridge"


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """module -> the mosaico_bridge modules it imports (at any depth of the file)."""
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {  # imports under ``if TYPE_CHECKING:`` never run
            id(n) for b in ast.walk(tree)
            if isinstance(b, ast.If) and isinstance(b.test, ast.Name) and b.test.id == "TYPE_CHECKING"
            for stmt in b.body for n in ast.walk(stmt)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t.startswith("mosaico_bridge") and t != name:
                    found.add(t)
        graph[name] = found
    return graph


GRAPH = _imports()


def _sub(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@pytest.mark.parametrize(
    ("importer", "forbidden"),
    [("protocol", {"client", "server", "conversion", "sources"}), ("server", {"client"}), ("client", {"server"}),
     ("conversion", {"client", "server", "sources"}), ("sources", {"client", "server"}), ("common", {"client", "server"})],
)
def test_layering(importer, forbidden):
    bad = sorted(
        (m, t) for m, targets in GRAPH.items() if _sub(m) == importer for t in targets if _sub(t) in forbidden
    )
    assert bad == []


def test_no_import_circle():
    # a package's __init__ re-exporting its own modules is not a circle
    def edges(m: str) -> set[str]:
        return {t for t in GRAPH[m] if not (m.startswith(t + ".") and t in GRAPH)}

    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for t in edges(m):
            if state.get(t) == 1:
                raise AssertionError("import circle: " + " -> ".join(path[path.index(t):] + [t]))
            if t not in state:
                visit(t)
        path.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)


def test_server_modules_are_small():
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in (PKG / "server").glob("*.py")}
    assert {n: s for n, s in sizes.items() if s > 700} == {}


def test_py_typed_is_shipped():
    assert (PKG / "py.typed").exists()
    assert 'package_data={PACKAGE: ["py.typed"]}' in (REPO / "setup.py").read_text()
