"""ruff (configured in pyproject.toml) finds nothing: lint and formatting are part of the test command."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO


def ruff():
    found = Path(sys.executable).with_name("ruff")
    return str(found) if found.exists() else shutil.which("ruff")


@pytest.mark.skipif(ruff() is None, reason="ruff is installed by setup.sh (requirements.txt)")
@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff_is_clean(command):
    out = subprocess.run([ruff(), *command, "."], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


CORE = [
    "models",
    "losses",
    "data",
    "hooks",
    "trainer",
    "compat",
    "settings.py",
    "checkpoints.py",
    "progress.py",
    "images.py",
]
ADD_ONS = ("evaluation", "interop", "visualize", "detection")


def test_core_imports_no_add_on():
    """README "Layout": the core (what the method needs) never imports an add-on."""
    import ast

    package = REPO / "vissl_aasae"
    offending = []
    for part in CORE:
        for path in [package / part] if part.endswith(".py") else sorted((package / part).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
                names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
                offending += [
                    f"{path.relative_to(REPO)}: {n}"
                    for n in names
                    if n.startswith("vissl_aasae.") and n.split(".")[1] in ADD_ONS
                ]
    assert offending == []
