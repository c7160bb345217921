"""The code's layers point only down, and no modules import each other in a circle.

    top      mathpal_cli.py, mathpal_commands/   (the commands and the demo)
    stages   dataprep/, evals/, mathpal_train/   (independent of one another)
    ground   mathpal_common/                     (notation, Comet session, atomic files, terminal)

Every import counts, also one inside a function or under ``TYPE_CHECKING``: a lazy import
that points up is still a dependency that points up.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = {
    "mathpal_common": 0,
    "dataprep": 1,
    "evals": 1,
    "mathpal_train": 1,
    "mathpal_commands": 2,
    "mathpal_cli": 2,
}


def project_modules() -> dict[str, Path]:
    """Every module of the layered packages, by dotted name."""
    modules = {}
    for top in LAYERS:
        folder, single = REPO / top, REPO / f"{top}.py"
        paths = sorted(folder.rglob("*.py")) if folder.is_dir() else [single]
        for path in paths:
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules ``path`` imports (a ``from package import module`` names the module)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports(path, name, set(modules)) for name, path in modules.items()}


def layer(module: str) -> tuple[str, int]:
    top = module.split(".")[0]
    return top, LAYERS[top]


def test_the_layered_packages_exist_and_hold_the_code():
    modules = project_modules()
    assert {name.split(".")[0] for name in modules} == set(LAYERS)
    outside = [p.name for p in REPO.glob("*.py") if p.stem not in LAYERS]
    assert outside == []  # no module beside them that the layers would not see


def test_imports_point_down_and_stages_stay_apart():
    wrong = []
    for module, targets in graph().items():
        package, rank = layer(module)
        for target in targets:
            other, other_rank = layer(target)
            if other_rank > rank or (other_rank == rank and other != package and rank == 1):
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_no_modules_import_each_other_in_a_circle():
    edges = graph()
    circles = []

    def visit(node: str, path: list[str], done: set[str]) -> None:
        for target in sorted(edges[node]):
            if target in path:
                circle = path[path.index(target) :] + [target]
                if sorted(circle[:-1]) not in [sorted(c[:-1]) for c in circles]:
                    circles.append(circle)
            elif target not in done:
                visit(target, [*path, target], done)
        done.add(node)

    done: set[str] = set()
    for start in sorted(edges):
        if start not in done:
            visit(start, [start], done)
    assert [" -> ".join(c) for c in circles] == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from mathpal_train import recipes\n", {"mathpal_train.recipes"}),
        ("import evals.generate\n", {"evals.generate"}),
        ("def f():\n    from dataprep.export import x\n", {"dataprep.export"}),
        ("from .recipes import load_recipe\n", {"mathpal_train.recipes"}),
        ("import json\nfrom typing import Any\n", set()),
    ],
)
def test_the_import_reader_sees_every_kind_of_import(tmp_path, source, expected):
    path = tmp_path / "launch.py"
    path.write_text(source)
    known = {"mathpal_train", "mathpal_train.recipes", "mathpal_train.launch", "evals.generate", "dataprep.export"}
    assert imports(path, "mathpal_train.launch", known) == expected
