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
