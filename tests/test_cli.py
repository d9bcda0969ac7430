"""The command line (vissl_aasae.cli): the same flags everywhere, --help without importing VISSL."""

import json
import subprocess
import sys

import pytest
from conftest import REPO

COMMANDS = ["train", "eval", "export", "import", "features", "density", "view_similarity"]
HELP_CHECK = """
import sys
from vissl_aasae import cli as aasae_cli
try:
    getattr(aasae_cli, sys.argv[1] + "_main")(["--help"])
except SystemExit:
    pass
print("heavy imports:", sorted(m for m in ("vissl", "torch", "vissl_aasae.registry", "hydra") if m in sys.modules))
"""


@pytest.mark.parametrize("command", COMMANDS)
def test_help_answers_without_importing_vissl_or_torch(command):
    out = subprocess.run([sys.executable, "-c", HELP_CHECK, command], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "heavy imports: []" in out.stdout
    assert "usage: aasae-" in out.stdout


def test_flags_and_defaults_in_help(capsys):
    from vissl_aasae import cli as aasae_cli

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
    from vissl_aasae.cli.arguments import split_data

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


# ---------------------------------------------------------------- issue 28: outputs, run folders, usage
@pytest.fixture
def no_work(monkeypatch):
    """Every tool's work (config composition, model, data, evaluation, writing) fails the test if it starts."""
    import vissl_aasae.config_compose as config_compose
    import vissl_aasae.evaluation.frozen_trunk as frozen_trunk
    import vissl_aasae.interop.export as export
    import vissl_aasae.interop.feature_extraction as feature_extraction
    import vissl_aasae.interop.lightning_import as lightning_import
    import vissl_aasae.visualize.checkpoint as visual_checkpoint

    def started(*args, **kwargs):
        raise AssertionError("the command started its work before refusing its output")

    for module, name in (
        (config_compose, "compose"),
        (frozen_trunk, "evaluate_frozen_trunk"),
        (export, "export_checkpoint"),
        (lightning_import, "import_lightning_file"),
        (feature_extraction, "extract_features"),
        (visual_checkpoint, "load_run_config"),
    ):
        monkeypatch.setattr(module, name, started)


@pytest.fixture
def run_folder(tmp_path):
    """A training run's folder as the launcher leaves it (the record files; the checkpoint is not read)."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "train_config.yaml").write_text("config: {}\n")
    (folder / "model_final_checkpoint_phase1.torch").write_bytes(b"not read by these tests")
    (folder / "metrics.json").write_text("{}\n")
    return folder


def bad_output_cases(tmp_path, run_folder):
    """(command, argv, expected text of the error line) for each kind of output that cannot be written."""
    existing_dir = tmp_path / "existing_dir"
    existing_dir.mkdir()
    a_file = tmp_path / "a_file.json"
    a_file.write_text("{}")
    missing = tmp_path / "missing" / "out.json"
    ckpt = run_folder / "model_final_checkpoint_phase1.torch"
    folder = "is a folder; give a file name"
    return [
        ("eval", ["--random-init", "--output", str(existing_dir)], f"--output '{existing_dir}' {folder}"),
        ("eval", ["--random-init", "--output", str(missing)], f"folder '{missing.parent}' does not exist"),
        ("eval", ["--random-init", "--output", "/proc/aasae_eval.json"], "folder '/proc' is not writable"),
        ("eval", ["--random-init", "--output", str(run_folder / "metrics.json")], "is part of the training run"),
        ("export", ["--checkpoint", str(run_folder), "--output", str(existing_dir)], folder),
        ("export", ["--checkpoint", str(run_folder), "--output", str(ckpt)], "is the file this command reads"),
        ("export", ["--checkpoint", str(run_folder), "--output", str(run_folder / "train_config.yaml")], "part of the"),
        ("import", ["--checkpoint", str(a_file), "--output", str(existing_dir)], folder),
        ("features", ["--output", str(a_file), "config=pretrain/aasae/quickstart"], "is a file; give a folder"),
        ("features", ["--output", str(missing.parent / "feats"), "config=x"], f"'{missing.parent}' does not exist"),
        ("density", ["--checkpoint", str(run_folder), "--output", str(existing_dir)], folder),
        ("view_similarity", ["--checkpoint", str(run_folder), "--output", str(existing_dir)], folder),
        ("view_similarity", ["--checkpoint", str(run_folder), "--output", str(missing)], "does not exist"),
    ]


def test_every_tool_refuses_an_output_it_cannot_write_before_any_work(tmp_path, run_folder, no_work, capsys):
    from vissl_aasae import cli as aasae_cli

    for command, argv, expected in bad_output_cases(tmp_path, run_folder):
        code = getattr(aasae_cli, f"{command}_main")(argv)
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert code == 2, (command, argv, err)
        assert len(lines) == 1 and lines[0].startswith("error: "), (command, err)
        assert expected in lines[0], (command, lines[0])
    assert sorted(p.name for p in run_folder.iterdir()) == [
        "metrics.json",
        "model_final_checkpoint_phase1.torch",
        "train_config.yaml",
    ]
    assert (run_folder / "metrics.json").read_text() == "{}\n"  # the run's record is untouched


def test_output_check_accepts_what_a_tool_may_write(tmp_path, run_folder):
    from vissl_aasae.cli.arguments import check_output

    (tmp_path / "results.json").write_text("{}")  # an earlier result of the same command: replaced
    assert check_output(str(tmp_path / "results.json")) == str(tmp_path / "results.json")
    assert check_output(str(tmp_path / "new" / "deeper"), folder=True, create_parents=True).endswith("deeper")
    assert check_output(str(tmp_path / "a" / "b.json"), create_parents=True) == str(tmp_path / "a" / "b.json")
    assert not (tmp_path / "a").exists() and not (tmp_path / "new").exists()  # checked, not created
    # in a run folder: a new file (the view-similarity figure) is fine, the record is not
    assert check_output(str(run_folder / "view_similarity.png")).endswith("view_similarity.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "run"]  # no probe file left


def test_eval_accepts_a_run_folder_as_the_other_tools_do(tmp_path, run_folder, monkeypatch, capsys):
    import vissl_aasae.evaluation.frozen_trunk as frozen_trunk
    from vissl_aasae import cli as aasae_cli
    from vissl_aasae.checkpoints import resolve

    seen = {}

    def evaluate(config, random_init=False, **kwargs):
        seen["params_file"] = config.MODEL.WEIGHTS_INIT.PARAMS_FILE
        return {"checkpoint": seen["params_file"], "random_init": False, "n_train": 2, "n_test": 1, "knn_k": 1}

    monkeypatch.setattr(frozen_trunk, "evaluate_frozen_trunk", evaluate)
    monkeypatch.chdir(tmp_path)
    for _ in range(2):  # twice in a row: the results file of the first call is replaced
        code = aasae_cli.eval_main(["--checkpoint", "run", "--output", "eval.json"])
        out = capsys.readouterr()
        assert code == 0, out.err
        assert seen["params_file"] == resolve(run_folder) == str(run_folder / "model_final_checkpoint_phase1.torch")
        assert json.loads((tmp_path / "eval.json").read_text())["checkpoint"] == seen["params_file"]
    assert aasae_cli.eval_main(["--checkpoint", "nowhere"]) == 2
    assert capsys.readouterr().err.strip() == "error: --checkpoint: checkpoint 'nowhere' is neither a file nor a folder"


def test_train_without_a_config_prints_the_usage_and_the_configs(capsys):
    from vissl_aasae import cli as aasae_cli

    for argv in ([], ["config.OPTIMIZER.num_epochs=1"]):
        assert aasae_cli.train_main(argv) == 2
        out = capsys.readouterr()
        lines = out.err.strip().splitlines()
        assert lines[0].startswith("usage: aasae-train config=NAME")
        assert lines[-1].startswith("error: no config given: add config=NAME, e.g. config=pretrain/aasae/quickstart")
        assert "pretrain/aasae/{" in lines[-1] and "benchmark/aasae/knn/{" in lines[-1]
        assert "quickstart" in lines[-1] and "resnet50_synthetic" not in out.err + out.out
