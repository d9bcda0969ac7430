"""The suite's own footprint: what its temporary folders leave on disk (CI shares a disk; a suite that
kept every launch's checkpoints filled 13 GB of /tmp, and a full disk failed CI with torch.save's
'unexpected pos')."""

import configparser
import subprocess
import sys
import textwrap

from conftest import REPO

INNER_CONFTEST = f"""
import importlib.util

spec = importlib.util.spec_from_file_location("suite_conftest", {str(REPO / "tests" / "conftest.py")!r})
suite = importlib.util.module_from_spec(spec)
spec.loader.exec_module(suite)
_module_temp_folders_go = suite._module_temp_folders_go
"""

INNER_MODULE = """
import pytest


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    folder = tmp_path_factory.mktemp("{name}_module")
    (folder / "checkpoint.torch").write_bytes(bytes(1000))
    return folder


seen = []


def test_one(made, tmp_path):
    seen.append(tmp_path)
    (tmp_path / "checkpoint.torch").write_bytes(bytes(1000))
    assert {ok}


def test_two(made):
    assert seen[0].exists() != {ok}  # a passing test's folder went as it ended; a failing one's stays
"""


def test_a_passing_modules_folders_go_and_a_failing_ones_stay(tmp_path):
    """With the repository's pytest.ini settings and conftest: a passing test's ``tmp_path`` goes when
    the test ends, its module's ``tmp_path_factory`` folders when the module ends; a failing module
    keeps both for the reader."""
    ini = configparser.ConfigParser()
    ini.read(REPO / "pytest.ini")
    keys = ("tmp_path_retention_policy", "tmp_path_retention_count")
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "pytest.ini").write_text("[pytest]\n" + "".join(f"{k} = {ini['pytest'][k]}\n" for k in keys))
    (inner / "conftest.py").write_text(INNER_CONFTEST)
    for name, ok in (("passing", "True"), ("failing", "False")):
        (inner / f"test_{name}.py").write_text(textwrap.dedent(INNER_MODULE.format(name=name, ok=ok)))
    base = tmp_path / "base"
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={base}", "."],
        cwd=inner,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "1 failed, 3 passed" in out.stdout, out.stdout[-3000:] + out.stderr[-3000:]
    left = sorted(p.name for p in base.iterdir() if not p.is_symlink())  # pytest's "<name>current" links
    assert left == ["failing_module0", "test_one0"], left  # the failing module's (collected first) only
    assert (base / "failing_module0" / "checkpoint.torch").stat().st_size == 1000
