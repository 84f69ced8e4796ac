"""Dependencies run one way: data -> model -> training -> export, and the runtime on its own.

Read from the source with the ast module (imports inside functions count too), so a lazy
import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Folder -> the longteng packages its modules may not import.
FORBIDDEN = {
    "model": ("longteng.training", "longteng.export", "longteng.inference", "longteng.cli", "longteng.station"),
    "training": ("longteng.export", "longteng.inference.predict", "longteng.inference.score", "longteng.cli", "longteng.station"),
    "export": ("longteng.cli", "longteng.station"),
    "inference": ("longteng.model", "longteng.training", "longteng.export", "longteng.cli", "longteng.station"),
    # The station serves the runtime: it may use inference, never training, export or torch.
    "station": ("longteng.model", "longteng.training", "longteng.export", "longteng.cli", "torch"),
    "longteng/data": ("longteng.model", "longteng.training", "longteng.export", "longteng.inference", "longteng.cli"),
}


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_no_module_imports_a_later_stage(folder):
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / folder).rglob("*.py"))
        for name in _imports(path)
        if any(name == banned or name.startswith(banned + ".") for banned in FORBIDDEN[folder])
    ]
    assert not offenders, "\n".join(offenders)


def test_core_modules_import_no_stage():
    core = [path for path in (ROOT / "longteng").glob("*.py")]
    offenders = [
        f"{path.name} imports {name}"
        for path in core
        for name in _imports(path)
        if name.split(".")[:2] in (["longteng", "model"], ["longteng", "training"], ["longteng", "export"], ["longteng", "inference"])
    ]
    assert not offenders, "\n".join(offenders)
