"""Workspace rules that span packages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# DESIGN.md: annotate <- train <- infer, annotate <- eval (infer for its benchmark); nothing imports upward
FORBIDDEN = {"annotate": {"emo_train", "emo_infer", "emo_eval"}, "train": {"emo_infer", "emo_eval"}, "infer": {"emo_eval"},
             "eval": {"emo_train", "emo_infer"}}
# the modules that may import a forbidden package anyway: eval's benchmark generates with emo-infer
ALLOWED = {"packages/eval/src/emo_eval/benchmarking.py", "packages/eval/benchmarks", "packages/eval/tests"}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_imports_upward(package):
    offenders = []
    for path in (ROOT / "packages" / package).rglob("*.py"):
        if any(path.relative_to(ROOT).as_posix().startswith(allowed) for allowed in ALLOWED):
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in FORBIDDEN[package]]
    assert not offenders, offenders


def test_nothing_pickled_ships_in_the_packages():
    shipped = [p for p in (ROOT / "packages").rglob("*") if p.suffix in {".pkl", ".pickle", ".pth", ".pt", ".ckpt"}]
    assert not shipped, shipped
