import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAUNCHER = REPO / "tools" / "run_distributed_engines.py"

import vissl_aasae.launcher  # noqa: E402,F401  (the whole plugin, as a launch loads it, for in-process tests)


def process_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (this machine's pid 1 does not reap orphans: a zombie has exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


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


# the configs' own DataLoader workers and start method (forkserver), as users run them (issue 28: a
# crash that only workers > 0 show went through a suite that loaded every image in the trainer)
CPU_OVERRIDES = [
    "config.MACHINE.DEVICE=cpu",
    "config.DISTRIBUTED.BACKEND=gloo",
    "config.DISTRIBUTED.NUM_PROC_PER_NODE=1",
]


@pytest.fixture
def launch_here(monkeypatch, capsys):
    """``launcher.main`` in this process, for input the launcher must refuse before any work: the same
    code path as ``run_launcher`` without a new interpreter and VISSL import per case (~6 s each).
    Returns (returncode, stdout, stderr) like ``subprocess.run``; starting a run fails the test.
    ``test_plugin.py::test_refusal_from_the_command_line`` checks the real process (exit code, one line)."""
    from types import SimpleNamespace

    from vissl.utils import distributed_launcher

    from vissl_aasae import launcher

    def started(*args, **kwargs):
        raise AssertionError("the launcher started a run for input it should have refused")

    monkeypatch.setattr(distributed_launcher, "launch_distributed", started)
    monkeypatch.setattr(distributed_launcher, "launch_distributed_on_slurm", started)

    def run(overrides, cwd):
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        code = launcher.main(list(overrides))
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    return run


@pytest.fixture(scope="module", autouse=True)
def _module_temp_folders_go(request, tmp_path_factory):
    """The folders a module's fixtures made with ``tmp_path_factory`` go when the module ends with no
    failure (pytest's ``tmp_path_retention_policy = failed`` only removes each test's ``tmp_path``)."""
    base = tmp_path_factory.getbasetemp()
    before, failed = set(base.iterdir()), request.session.testsfailed
    yield
    if request.session.testsfailed == failed:
        for path in set(base.iterdir()) - before:
            shutil.rmtree(path, ignore_errors=True)
