"""The house style's limits on the code itself, checked on every run.

Functions stay short: at most 70 lines, route factories included
(STYLE.md, "functions stay short"). Module names are unique across the
product packages, so a name says which file it is. The test parses every
product module with ``ast`` and fails naming each offender.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PRODUCT_PACKAGES = ("agent_client", "broker", "escrow", "exchange", "human_portal", "wallet")
FUNCTION_LINES_MAX = 70


def product_modules() -> list[Path]:
    modules = []
    for package in PRODUCT_PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:  # generated-style schema steps
                modules.append(path)
    assert len(modules) > 100, "the product packages were not found"
    return modules


def long_functions(path: Path, /) -> list[str]:
    """``name:line length`` of each function in ``path`` over the limit."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            lines = node.end_lineno - node.lineno + 1
            if lines > FUNCTION_LINES_MAX:
                found.append(f"{node.name}:{node.lineno} {lines} lines")
    return found


def test_no_product_function_is_longer_than_70_lines():
    offenders = {
        str(path.relative_to(REPO_ROOT)): found
        for path in product_modules()
        if (found := long_functions(path))
    }
    assert offenders == {}


def test_the_check_counts_a_function_one_line_over_the_limit(tmp_path):
    statements = "\n".join(f"    x{i} = {i}" for i in range(FUNCTION_LINES_MAX - 1))
    sample = tmp_path / "sample.py"
    sample.write_text(
        f"def fits():\n{statements}\n\n\nasync def too_long():\n    pass\n{statements}\n"
    )
    # fits: its signature and 69 statements (70 lines); too_long: one more.
    assert long_functions(sample) == [f"too_long:{FUNCTION_LINES_MAX + 3} 71 lines"]


def test_module_names_are_unique_across_the_product():
    shared_by_design = {"__init__.py", "errors.py", "limits.py"}
    names = Counter(path.name for path in product_modules() if path.name not in shared_by_design)
    assert sorted(name for name, count in names.items() if count > 1) == []
