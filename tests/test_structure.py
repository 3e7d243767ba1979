"""The package's shape: no import circle inside onnxforge/ (lazy imports included) and
no module over 400 lines.

The import graph is read from the source with ``ast``: every ``import``/``from ... import``
anywhere in a module (module level, inside functions, under ``TYPE_CHECKING``), relative
imports resolved, each edge going to the module named (a package's ``__init__`` when a name
is imported from the package), and a package ``__init__``'s lazy table (``_MODULES`` or
``_HOMES = {name: submodule}``) counted as edges to those submodules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import onnxforge

PACKAGE_DIR = Path(onnxforge.__file__).resolve().parent
MAX_LINES = 400


def module_name(path: Path, root: Path = PACKAGE_DIR) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(current: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute module a ``from`` import names (``level`` dots relative to ``current``)."""
    if level == 0:
        return module or ""
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports_of(path: Path, known: set[str], root: Path = PACKAGE_DIR) -> set[str]:
    """Modules of ``known`` that ``path`` imports, at any depth of its code."""
    name = module_name(path, root)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

    def closest(target: str) -> str | None:
        # ``import a.b.c`` or ``from a.b import c``: the deepest known module named.
        while target and target not in known:
            target = target.rpartition(".")[0]
        return target or None

    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, is_package, node.level, node.module)
            # ``from . import x`` may name a submodule x, or else an attribute of the package.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        elif is_package and isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Dict):
            # A lazy table (``_MODULES``, ``_HOMES``: attribute -> submodule) loaded by
            # ``__getattr__``: a value naming a submodule is an edge to it.
            targets = [f"{name}.{v.value}" for v in node.value.values
                       if isinstance(v, ast.Constant) and isinstance(v.value, str) and f"{name}.{v.value}" in known]
        else:
            continue
        for target in targets:
            hit = closest(target)
            if hit and hit != name:
                found.add(hit)
    # Importing ``a.b.c`` first runs ``a/b/__init__``: an edge to every enclosing package
    # that is not one of this module's own (those are already running when it loads).
    own = {name.rsplit(".", i)[0] for i in range(name.count(".") + 1)}
    for hit in list(found):
        parent = hit.rpartition(".")[0]
        while parent and parent not in own:
            if parent in known:
                found.add(parent)
            parent = parent.rpartition(".")[0]
    return found


def import_graph(root: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    paths = sorted(root.rglob("*.py"))
    known = {module_name(p, root) for p in paths}
    return {module_name(p, root): imports_of(p, known, root) for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, ..., a]``, or None when the graph has none."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = {n: WHITE for n in graph}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = GREY
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt, WHITE) == GREY:
                return stack[stack.index(nxt):] + [nxt]
            if colour.get(nxt, WHITE) == WHITE:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        colour[node] = BLACK
        return None

    for start in sorted(graph):
        if colour[start] == WHITE:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


# -- the finder itself can fail ---------------------------------------------------------
def test_find_cycle_on_synthetic_graphs():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None  # a diamond is no cycle
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"y"}, "y": {"y"}}) == ["y", "y"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"d"}, "d": {"c"}}) == ["c", "d", "c"]


def test_import_graph_sees_lazy_relative_and_table_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text('_HOMES = {"Thing": "c", "Other": "not_a_module"}\n')
    (pkg / "sub" / "b.py").write_text("from ..a import f\n")
    (pkg / "sub" / "c.py").write_text("import pkg.a\nfrom .. import a\n")
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.sub.b", "pkg.sub"}  # importing pkg.sub.b runs pkg/sub/__init__ first
    assert graph["pkg.sub.b"] == {"pkg.a"}
    assert graph["pkg.sub"] == {"pkg.sub.c"}
    assert graph["pkg.sub.c"] == {"pkg.a"}
    # a -> sub (its __init__ runs first) -> c (the lazy table) -> a; a -> sub.b -> a too.
    assert find_cycle(graph) == ["pkg.a", "pkg.sub", "pkg.sub.c", "pkg.a"]
    del graph["pkg.sub"]
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.a"]


# -- the package ------------------------------------------------------------------------
def test_no_import_cycle_in_onnxforge():
    graph = import_graph()
    assert len(graph) > 50 and graph["onnxforge.smoke.smoke"], "the graph should cover the whole package"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_over_400_lines():
    too_long = {str(p.relative_to(PACKAGE_DIR.parent)): n for p in PACKAGE_DIR.rglob("*.py")
                if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"
