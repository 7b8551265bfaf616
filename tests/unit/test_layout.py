"""The layout stays readable: no function in service/ longer than a screenful and a half.

The import contracts (layers, a pure domain) are checked by `lint-imports` in `make test`; this
checks the other rule of the layout issue, which import-linter cannot see.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LONGEST = 100


def long_functions(tree_root: Path) -> list[str]:
    """`path:line name (N lines)` for every function under `tree_root` longer than LONGEST."""
    found = []
    for path in sorted(tree_root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > LONGEST:
                    found.append(f"{path.relative_to(tree_root)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_in_service_is_longer_than_100_lines():
    assert long_functions(ROOT / "service") == []


def test_the_check_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(LONGEST))
    (tmp_path / "m.py").write_text(f"def f():\n{body}\n")
    assert long_functions(tmp_path) == [f"m.py:1 f ({LONGEST + 1} lines)"]


def import_cycles(package: str) -> list[list[str]]:
    """The groups of modules of `package` that import each other in a loop (any import: at the
    top, inside a function, or for type checking only), found as strongly connected components."""
    import grimp

    graph = grimp.build_graph(package)
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & graph.modules) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:   # Tarjan's algorithm; the package is small enough to recurse
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in edges[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in modules:
        if module not in index:
            visit(module)
    return cycles


def test_no_two_files_of_service_import_each_other_in_a_loop():
    """A loop means neither file can be understood, tested or moved without the other."""
    assert import_cycles("service") == []
