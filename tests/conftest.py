import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAUNCHER = REPO / "tools" / "run_distributed_engines.py"

import vissl_aasae  # noqa: E402,F401  (patches and registrations for in-process tests)


def run_launcher(overrides, cwd, timeout=900, env=None):
    """Run tools/run_distributed_engines.py with the given overrides; returns CompletedProcess."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run(
        [sys.executable, str(LAUNCHER), *overrides],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


@pytest.fixture
def launcher():
    return run_launcher


CPU_OVERRIDES = [
    "config.MACHINE.DEVICE=cpu",
    "config.DISTRIBUTED.BACKEND=gloo",
    "config.DISTRIBUTED.NUM_PROC_PER_NODE=1",
    "config.DATA.NUM_DATALOADER_WORKERS=0",
]
