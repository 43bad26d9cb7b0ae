"""The package's shape as the README's Layout states it: no module over 400 lines, and no layer importing
one above it (dicom under files under imaging under dicomweb under tools)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "dicomweb_mcp"
PREFIX = "dicomweb_mcp."
LAYERS = ["dicom", "files", "imaging", "dicomweb", "tools"]
MAX_LINES = 400
MODULES = sorted(PACKAGE.rglob("*.py"))


def name(path: Path) -> str:
    return str(path.relative_to(PACKAGE))


@pytest.mark.parametrize("path", MODULES, ids=name)
def test_no_module_is_over_400_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES


def imported_layers(path: Path) -> set[str]:
    """The other layers a module imports from, at module level or inside functions, relative or absolute."""
    package = list(path.relative_to(PACKAGE).parts[:-1])  # "tools/server.py" is in ["tools"]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            # "from ..files import x" in tools/ is files; "from .. import x" at a layer's top is x.
            base = package[: len(package) - node.level + 1]
            module = [*base, *node.module.split(".")] if node.module else base
            heads = module[:1] or [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            heads = (
                (node.module or "").removeprefix(PREFIX).split(".")[:1]
                if (node.module or "").startswith(PREFIX)
                else []
            )
        elif isinstance(node, ast.Import):
            heads = [alias.name.split(".")[1] for alias in node.names if alias.name.startswith(PREFIX)]
        else:
            continue
        found.update(head for head in heads if head in LAYERS)
    return found - set(package[:1])


@pytest.mark.parametrize("path", [p for p in MODULES if p.relative_to(PACKAGE).parts[0] in LAYERS], ids=name)
def test_no_layer_imports_one_above_it(path: Path) -> None:
    layer = LAYERS.index(path.relative_to(PACKAGE).parts[0])
    above = sorted(other for other in imported_layers(path) if LAYERS.index(other) > layer)
    assert not above, f"{name(path)} imports from {above}, above its own layer"


def test_the_import_reading_sees_each_kind_of_import() -> None:
    # Relative imports up two packages (tools/server.py), and one (imaging/render.py).
    assert imported_layers(PACKAGE / "tools" / "server.py") >= {"dicomweb", "files"}
    assert imported_layers(PACKAGE / "imaging" / "render.py") >= {"dicom"}
