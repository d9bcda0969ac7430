"""The command line (aasae_cli): one module, the same flags everywhere, --help without importing VISSL."""

import subprocess
import sys

import pytest
from conftest import REPO

COMMANDS = ["train", "eval", "export", "import", "features", "density", "view_similarity"]
HELP_CHECK = """
import sys
import aasae_cli
try:
    getattr(aasae_cli, sys.argv[1] + "_main")(["--help"])
except SystemExit:
    pass
print("heavy imports:", sorted(m for m in ("vissl", "torch", "vissl_aasae", "hydra") if m in sys.modules))
"""


@pytest.mark.parametrize("command", COMMANDS)
def test_help_answers_without_importing_vissl_or_torch(command):
    out = subprocess.run([sys.executable, "-c", HELP_CHECK, command], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "heavy imports: []" in out.stdout
    assert "usage: aasae-" in out.stdout


def test_flags_and_defaults_in_help(capsys):
    import aasae_cli

    texts = {}
    for command in [c for c in COMMANDS if c != "train"]:
        with pytest.raises(SystemExit):
            getattr(aasae_cli, f"{command}_main")(["--help"])
        texts[command] = capsys.readouterr().out
    for command, text in texts.items():
        assert "--checkpoint" in text and "--output" in text, command
        assert "--input " not in text.replace("--checkpoint CHECKPOINT, --input", ""), command  # only as alias
    for command in ("features", "density"):
        assert "--workers" in texts[command]
    for command in ("eval", "density", "view_similarity"):
        assert "embedded (the Fashion-MNIST subset" in texts[command]
    assert "(default: 100)" in texts["density"] and "~1 h" in " ".join(texts["density"].split())


def test_data_values_split_into_format_and_path():
    from aasae_cli import split_data

    assert split_data("embedded") == ("npz", "embedded")
    assert split_data("fashion_mnist:/usr/share/datasets/fashion-mnist") == (
        "fashion_mnist",
        "/usr/share/datasets/fashion-mnist",
    )
    assert split_data("/data/images") == (None, "/data/images")
    assert split_data("/data/x", "cifar10") == ("cifar10", "/data/x")  # the older --data-format spelling
    with pytest.raises(ValueError, match="no path after 'npz:'"):
        split_data("npz:")


def test_bad_input_is_one_line_with_exit_2(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "aasae_export.py"),
            "--checkpoint",
            str(tmp_path / "none.torch"),
            "--output",
            str(tmp_path / "x.pth"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "none.torch" in lines[0]
