"""The size limits of docs/architecture.md hold in every `src` tree: no module over 400 lines, no function over
60. A module that outgrows them is doing two jobs (the Postgres store held its migrations until it passed 400);
this test says which, so the split happens when the module grows and not in a clean-up later."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def sources() -> list[Path]:
    trees = [*ROOT.glob("services/*/src"), *ROOT.glob("libs/*/src")]
    return sorted(p for tree in trees for p in tree.rglob("*.py"))


def too_long(path: Path, root: Path = ROOT) -> list[str]:
    text = path.read_text()
    found = []
    if (lines := text.count("\n")) > MAX_MODULE_LINES:
        found.append(f"{path.relative_to(root)}: {lines} lines")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.name}(): {length} lines")
    return found


def test_no_module_or_function_is_over_its_limit() -> None:
    paths = sources()
    assert len(paths) > 100  # the globs found the trees
    assert [line for path in paths for line in too_long(path)] == []


def test_the_limits_are_checked(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    module = tmp_path / "probe.py"
    module.write_text(f"def long():\n{body}\n" + "\n" * MAX_MODULE_LINES)
    found = too_long(module, tmp_path)
    assert len(found) == 2 and "long()" in found[1], found
