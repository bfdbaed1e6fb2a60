"""The package's layers point one way (DESIGN.md "Layers"): read from the code's own imports.

Every ``import`` of a bitpack module, at module level or inside a function, is an arrow. An
arrow may point down the table below, or sideways inside one package; never up, and there is
no cycle at all (a function-level import is not a way around one).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bitpack"

# Top to bottom. A module's layer is its longest matching prefix.
LAYERS = [
    ("bitpack.cli", "bitpack.__main__"),
    ("bitpack",),  # the lazy API root
    ("bitpack.pipelines",),
    ("bitpack.executor",),
    ("bitpack.models",),
    ("bitpack.containers",),
    ("bitpack.codecs",),
    ("bitpack.bitstack",),  # pure BitStack math, which the bitstack codec uses
    ("bitpack.errors", "bitpack.jsonsafe", "bitpack.dtypes", "bitpack.parallel", "bitpack._version"),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(name: str) -> set[str]:
    """Every bitpack module ``name`` imports, anywhere in its body."""
    path = MODULES[name]
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            root = base[: len(base) - node.level + 1] if node.level else []
            target = ".".join(root + ([node.module] if node.module else []))
            for alias in node.names:  # "from . import avd" imports a module
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    resolved = set()
    for target in found:
        while target not in MODULES and "." in target:
            target = target.rsplit(".", 1)[0]
        if target in MODULES and target != name and target.startswith("bitpack"):
            resolved.add(target)
    return resolved


def layer(name: str) -> int:
    best = max((prefix for group in LAYERS for prefix in group if name == prefix or name.startswith(prefix + ".")),
               key=len)
    return next(i for i, group in enumerate(LAYERS) if best in group)


GRAPH = {name: imports(name) for name in MODULES}


def test_every_module_has_a_layer():
    for name in MODULES:
        assert layer(name) is not None


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name):
    up = sorted(t for t in GRAPH[name] if layer(t) < layer(name))
    assert not up, f"{name} imports {up}, which sit above it"


def test_no_import_cycle():
    seen: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(GRAPH[node]):
            if seen.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in seen:
                visit(nxt, path + [nxt])
        seen[node] = 2

    for start in sorted(GRAPH):
        if start not in seen:
            visit(start, [start])


def test_the_graph_is_read_from_the_code():
    # the checks above would pass vacuously on an empty graph
    assert "bitpack.codecs.base" in GRAPH["bitpack.codecs.tq2_0"] or "bitpack.codecs._tq" in GRAPH["bitpack.codecs.tq2_0"]
    assert "bitpack.pipelines.open" in GRAPH["bitpack.pipelines.convert"]
    assert layer("bitpack.pipelines.convert") < layer("bitpack.models.model") < layer("bitpack.codecs.base")
