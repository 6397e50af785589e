"""A function over 60 lines is rare and says why, on the line above it (``# Long: ...``)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 60


def _unexplained(path: Path) -> list[str]:
    text = path.read_text()
    lines = text.splitlines()
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            if node.end_lineno - node.lineno + 1 > LIMIT:
                if not lines[first - 2].strip().startswith("# Long:"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    return found


def test_long_functions_say_why() -> None:
    files = [p for d in ("vaultd", "tui", "plugins") for p in sorted((ROOT / d).rglob("*.py"))]
    assert [f for p in files for f in _unexplained(p)] == []
