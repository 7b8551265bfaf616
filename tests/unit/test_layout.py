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
