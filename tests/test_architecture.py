"""The package's shape: no import cycles between ``sevnet`` modules, no function over 60 lines.

Both are read from the source (``ast``), nothing is imported. Every import statement counts, the
function-local ones and those under ``if TYPE_CHECKING:`` too: a cycle that only runs late is still a
cycle. ``python tests/test_architecture.py`` prints the import graph's cycles and the long functions.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "sevnet"
MAX_FUNCTION_LINES = 60


def module_files(src: Path = SRC) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package ``__init__``) for every module under ``src/sevnet``."""
    out = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def _imported_names(tree: ast.AST, package: str) -> Iterator[tuple[str, str | None]]:
    """(module, name or None) for every import statement anywhere in ``tree``, relative ones resolved."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            yield from ((base, alias.name) for alias in node.names)


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Module -> the ``sevnet`` modules it imports. ``from pkg import name`` imports ``pkg.name`` when that
    is a module, else ``pkg``; ``import a.b.c`` of a name that is no module imports its nearest module."""
    modules = module_files(src)
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        edges = graph.setdefault(name, set())
        for module, member in _imported_names(ast.parse(path.read_text(encoding="utf-8")), package):
            target = f"{module}.{member}" if member and f"{module}.{member}" in modules else module
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (sorted module names), largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out, key=lambda c: (-len(c), c))


def import_cycles(src: Path = SRC) -> list[list[str]]:
    """The strongly connected components of more than one module: each is at least one import cycle."""
    return [c for c in strongly_connected(import_graph(src)) if len(c) > 1]


def long_functions(src: Path = SRC, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int, str, int]]:
    """(file, line, name, length) of every function or method over ``limit`` lines, ``def`` to last line."""
    out = []
    for path in sorted((src / PACKAGE).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > limit:
                    out.append((str(path.relative_to(src.parent)), node.lineno, node.name, length))
    return out


def test_no_import_cycles() -> None:
    cycles = import_cycles()
    assert not cycles, (
        "import cycles between sevnet modules (each line: modules that import each other):\n"
        + "\n".join("  " + " <-> ".join(c) for c in cycles)
    )


def test_functions_at_most_60_lines() -> None:
    found = long_functions()
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines (extract well-named helpers):\n" + "\n".join(
        f"  {file}:{line} {name}: {length} lines" for file, line, name, length in found
    )


def test_the_checks_see_a_cycle_and_a_long_function(tmp_path: Path) -> None:
    """The helpers themselves: a relative, function-local cycle and a 61-line function are found."""
    pkg = tmp_path / PACKAGE / "sub"
    pkg.mkdir(parents=True)
    (tmp_path / PACKAGE / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from .a import x\n")
    (pkg / "a.py").write_text("def x():\n    from . import b\n")
    (pkg / "b.py").write_text("from sevnet.sub.a import x\n\n\ndef f():\n" + "    pass\n" * 60)
    assert import_cycles(tmp_path) == [["sevnet.sub.a", "sevnet.sub.b"]]
    assert long_functions(tmp_path) == [(f"{tmp_path.name}/sevnet/sub/b.py", 4, "f", 61)]


if __name__ == "__main__":  # python tests/test_architecture.py [REPO]: a checkout's cycles and long functions
    src = Path(sys.argv[1]) / "src" if len(sys.argv) > 1 else SRC
    for cycle in import_cycles(src):
        print("cycle:", " <-> ".join(cycle))
    for file, line, name, length in long_functions(src):
        print(f"long: {file}:{line} {name} {length}")
