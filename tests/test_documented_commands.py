"""Every command the documents show a user, run by the suite as written (issue 28).

The documents: README.md, MODEL_ZOO.md, docs/RESULTS.md, benchmarks/RESULTS.md (their fenced blocks)
and the header comments of the configs.  :data:`COMMANDS` is the one list: each documented command
(continuation lines joined, trailing comments dropped) with how the suite runs it:

- :class:`Run`: here, on tiny data this module makes, the placeholders of the document (``/data/...``,
  ``<checkpoint>``) pointing at it, in a fresh folder (``python`` is this interpreter, scripts and
  console scripts are the checkout's), capped with README's smoke overrides (CPU, one epoch, two
  iterations, batch 4; those the command sets itself stay) and with the configs' own DataLoader
  workers and start method;
- :class:`Elsewhere`: by the named test of another module, which runs that command's program on
  tiny data (a multi-node launch, SLURM, the study harness, the throughput benchmark, ...).

``test_every_documented_command_is_listed`` fails when a document shows a command the list does not
hold, and when the list holds one no document shows any more.
"""

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO
from fake_data import write_cifar10, write_image_folder, write_stl10

DOCS = ("README.md", "MODEL_ZOO.md", "docs/RESULTS.md", "benchmarks/RESULTS.md")
# what starts a command line in a fenced block (the other lines of such blocks are output or prose)
PROGRAM = re.compile(r"^(\./setup\.sh|python\b|\.venv/bin/\S+|aasae-\S+|benchmarks/\S+\.sh|for\s)")
# README "Usage": appended to a launch, except the keys the command sets itself
SMOKE = {
    "config.MACHINE.DEVICE": "cpu",
    "config.DISTRIBUTED.BACKEND": "gloo",
    "config.DISTRIBUTED.NUM_PROC_PER_NODE": "1",
    "config.OPTIMIZER.num_epochs": "1",
    "config.AASAE.MAX_ITERATIONS": "2",
    "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA": "4",
}
BIN = Path(sys.executable).parent


# --------------------------------------------------------------------------- reading the documents
def _joined(lines: List[str]) -> List[str]:
    """Lines with their ``\\`` continuations joined, comments (whole or trailing) dropped."""
    out, current = [], ""
    for line in lines:
        line = re.sub(r"\s+#.*$", "", line) if not line.lstrip().startswith("#") else ""
        current += " " + line.strip()
        if current.endswith("\\"):
            current = current[:-1]
            continue
        if current.strip():
            out.append(" ".join(current.split()))
        current = ""
    return out


def fenced_blocks(path: Path):
    """(language, lines) of each fenced block of a Markdown file."""
    block, language = None, None
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            if block is None:
                block, language = [], line[3:].strip()
            else:
                yield language, block
                block = None
        elif block is not None:
            block.append(line)


def documented_commands() -> Dict[str, List[str]]:
    """command -> where it is shown ("README.md", "configs/.../cifar10.yaml", ...)."""
    found: Dict[str, List[str]] = {}
    for name in DOCS:
        for language, lines in fenced_blocks(REPO / name):
            if language == "python":
                found.setdefault("\n".join(lines).strip(), []).append(name)
                continue
            commands = [c for c in _joined(lines) if PROGRAM.match(c)]
            if commands and commands[0].startswith("for "):  # a loop: the block is one shell command
                commands = ["\n".join(_joined(lines))]
            for command in commands:
                found.setdefault(command, []).append(name)
    for config in sorted((REPO / "configs").rglob("*.yaml")):
        header = []
        for line in config.read_text().splitlines():
            if not line.startswith("#"):
                break
            header.append(line[1:])
        # a command is indented in the comment (``#   python ...``); prose is not
        starts = [i for i, line in enumerate(header) if line.startswith("  ") and PROGRAM.match(line.strip())]
        for i in starts:
            block = [header[i]]
            while block[-1].rstrip().split("#")[0].rstrip().endswith("\\") and i + len(block) < len(header):
                block.append(header[i + len(block)])
            (command,) = _joined([re.sub(r"\s+#.*$", "", b) for b in block])
            found.setdefault(command, []).append(str(config.relative_to(REPO)))
    return found


# --------------------------------------------------------------------------- running one
@dataclass
class Run:
    """Run here, in a fresh folder: ``check(result, folder)`` asserts what the command promises.

    ``extra``: appended arguments (caps); ``smoke``: a launch gets README's smoke overrides;
    ``links``: ``{path in this folder: (command, path in that command's folder)}`` for what the
    command reads from an earlier one (run first, once); ``values``: placeholders of this command
    (``<checkpoint>``, ``CKPT``) -> a path in its folder; ``files``: small inputs the reader brings;
    ``setup`` / ``after``: for a Python snippet, the code the document leaves to the reader and
    what the test asserts after it; ``same_as``: the command is another listed one's launch (the
    same arguments once the placeholders are replaced, checked), run once for both."""

    check: Optional[Callable] = None
    extra: List[str] = field(default_factory=list)
    smoke: bool = True
    links: Dict[str, tuple] = field(default_factory=dict)
    values: Dict[str, str] = field(default_factory=dict)
    files: Dict[str, str] = field(default_factory=dict)
    setup: str = ""
    after: str = ""
    same_as: Optional[str] = None  # a listed command that makes the same launch (its run is this one's)


@dataclass
class Elsewhere:
    """Run by another module's test (``tests/<file>::<test>``) on tiny data; ``why`` not here."""

    test: str
    why: str


def argv_of(command: str, values: Dict[str, str]) -> List[str]:
    """The command's arguments with the placeholders replaced, ``python`` / ``.venv/bin/python`` by this
    interpreter, the checkout's scripts and console scripts by their paths."""
    for placeholder, path in sorted(values.items(), key=lambda kv: -len(kv[0])):  # whole paths only
        command = re.sub(r"(?<![\w.])" + re.escape(placeholder) + r"(?![\w])", lambda m: path, command)
    out = []
    for i, arg in enumerate(shlex.split(command)):
        if arg in ("python", ".venv/bin/python"):
            out.append(sys.executable)
        elif i == 0 and re.match(r"^(\.venv/bin/)?aasae-[a-z-]+$", arg):
            out.append(str(BIN / Path(arg).name))
        elif re.match(r"^(tools|benchmarks)/\S+\.(py|sh)$", arg):
            out.append(str(REPO / arg))
        else:
            out.append(arg)
    return out


def with_smoke(argv: List[str]) -> List[str]:
    keys = {a.split("=", 1)[0] for a in argv}
    return argv + [f"{k}={v}" for k, v in SMOKE.items() if k not in keys]


class Workspace:
    """Runs the listed commands, each once, each in its own folder under ``root``."""

    def __init__(self, root: Path, data: Dict[str, str]):
        self.root, self.data, self.done = root, data, {}

    def folder(self, command: str) -> Path:
        same = getattr(COMMANDS[command], "same_as", None)
        return self.folder(same) if same else self.root / f"command_{list(COMMANDS).index(command):02d}"

    def result(self, command: str):
        if command in self.done:
            return self.done[command]
        spec = COMMANDS[command]
        if spec.same_as:
            other = COMMANDS[spec.same_as]
            launch = spec.same_as.split("&&")[-1].strip()
            assert argv_of(command, {}) == argv_of(launch, {})
            assert (spec.extra, spec.links, spec.smoke) == (other.extra, other.links, other.smoke)
            self.done[command] = self.result(spec.same_as)
            return self.done[command]
        folder = self.folder(command)
        folder.mkdir(parents=True)
        for path, (other, their_path) in spec.links.items():
            if other is not None:  # None: a file of the checkout
                self.result(other)
            target = folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(self.folder(other) / their_path if other is not None else their_path)
        for name, text in spec.files.items():
            (folder / name).write_text(text)
        env = dict(os.environ, PYTHONUNBUFFERED="1", PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        if command.startswith(("import ", "from ")):  # a Python snippet
            script = f"{spec.setup}\n{command}\n{spec.after}\nprint('snippet ok')"
            out = subprocess.run([sys.executable, "-c", script], cwd=folder, capture_output=True, text=True, env=env)
        else:
            parts = [p.strip() for p in command.split("&&")]
            for part in parts[:-1]:  # ./setup.sh: idempotent; up to date in the suite's environment
                assert part == "./setup.sh", part
                setup = subprocess.run(["bash", str(REPO / "setup.sh")], capture_output=True, text=True, timeout=900)
                assert setup.returncode == 0 and "setup.sh: .venv is up to date" in setup.stdout, setup.stdout
            values = {**self.data, **spec.values}
            argv = argv_of(parts[-1], values) + argv_of(" ".join(spec.extra), values)
            launch = any(a.endswith("run_distributed_engines.py") for a in argv[:2])
            argv = with_smoke(argv) if launch and spec.smoke else argv
            if command.startswith("for "):  # a shell loop
                argv = ["bash", "-c", command]
            out = subprocess.run(argv, cwd=folder, capture_output=True, text=True, timeout=1200, env=env)
        self.done[command] = out
        return out


def last_line(out) -> str:
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def ok(out):
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


# --------------------------------------------------------------------------- what each promises
def trained(folder: str, iterations: int = 2, ranks: int = 1):
    """A pretraining launch: its summary is the console's last line, its final checkpoint holds the
    iterations, the logged ones once each with a finite positive loss equal to -log p(x|z) + beta KL
    (beta: the run's recorded LOSS.aasae_loss.kl_coeff), bits/dim and a posterior variance head for
    the stochastic variants only; the plugin's loss built in each of ``ranks`` processes."""

    def check(out, cwd):
        ok(out)
        for rank in range(ranks):
            assert f"built in rank {rank} of {ranks}" in out.stdout + out.stderr, rank
        line = last_line(out)
        assert line.startswith(f"AASAE summary: {iterations} iterations, loss "), line
        run = Path(folder) if folder.startswith("/") else cwd / folder
        (final,) = run.glob("model_final_checkpoint_phase*.torch")
        state = torch.load(final, map_location="cpu", weights_only=False)
        assert state["iteration"] == iterations
        records = [json.loads(r) for r in (run / "aasae_metrics.json").read_text().splitlines()]
        iterations_logged = [r["iteration"] for r in records]  # every LOG_FREQUENCY, from 0
        assert iterations_logged[0] == 0 and iterations_logged == sorted(set(iterations_logged))
        assert iterations_logged[-1] < iterations
        assert all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in records)
        record = yaml.safe_load((run / "train_config.yaml").read_text())
        beta = float(record["LOSS"]["aasae_loss"]["kl_coeff"])
        stochastic = record["MODEL"]["HEAD"]["PARAMS"][0][0] == "aasae_stochastic_projection"
        for r in records:
            assert r["loss"] == pytest.approx(-r["log_pxz"] + beta * r["kl"], rel=1e-4)
            assert ("bits_per_dim" in r) == stochastic
        heads = state["classy_state_dict"]["base_model"]["model"]["heads"]
        assert ("0.fc_log_var.weight" in heads) == stochastic

    return check


def benchmark(kind: str, folder: str, params: str):
    """A linear / fine-tuning benchmark: the test accuracy in metrics.json and on the console; the
    trunk starts from PARAMS_FILE (``params``): a linear run leaves it as it was, BatchNorm statistics
    too; fine-tuning moves it a little; the classifier reads the 2048-d h."""

    def check(out, cwd):
        ok(out)
        records = [json.loads(r) for r in (cwd / folder / "metrics.json").read_text().splitlines()]
        (tested,) = [r for r in records if "test_accuracy_list_meter" in r]
        (top1,) = tested["test_accuracy_list_meter"]["top_1"].values()
        assert top1 in (0.0, 50.0, 100.0)  # two test images
        assert f"AASAE benchmark: {kind} top-1 {top1:.2f} %" in out.stdout
        load = lambda path: torch.load(path, map_location="cpu", weights_only=False)["classy_state_dict"]  # noqa: E731
        saved = load(cwd / params)["base_model"]["model"]["trunk"]
        model = load(cwd / folder / "model_final_checkpoint_phase0.torch")["base_model"]["model"]
        if kind == "linear":
            for key, value in saved.items():
                assert torch.equal(model["trunk"]["base_model." + key], value), key
        else:
            moved, start = model["trunk"]["_feature_blocks.conv1.weight"], saved["_feature_blocks.conv1.weight"]
            assert not torch.equal(moved, start) and torch.allclose(moved, start, atol=1e-2)
        assert model["heads"]["0.clf.0.weight"].shape[1] == 2048

    return check


def knn(folder: str, n_test: int = 2, k: int = 20):
    def check(out, cwd):
        ok(out)
        (line,) = [line for line in out.stdout.splitlines() if line.startswith("AASAE benchmark: kNN")]
        (results,) = [json.loads(p.read_text()) for p in (cwd / folder).glob("*.json") if "metrics" not in p.name]
        assert (results["n_train"], results["n_test"]) == (4, n_test) and results["knn_k"] == k
        assert f"top-1 {results['knn_top1']:.2f} %" in line

    return check


def evaluated(random_init: bool):
    """aasae-eval: one line with the accuracies, the JSON in the config's CHECKPOINT.DIR."""

    def check(out, cwd):
        ok(out)
        (results,) = [json.loads(p.read_text()) for p in (cwd / "checkpoints" / "eval_quickstart").glob("*.json")]
        assert results["random_init"] is random_init and (results["n_train"], results["n_test"]) == (500, 1000)
        assert 10 < results["linear_top1"] <= 100 and 10 < results["knn_top1"] <= 100  # 10 classes: above chance
        assert f"{results['linear_top1']:.2f}" in last_line(out), last_line(out)

    return check


def exported_torchvision(out, cwd):
    ok(out)
    assert json.loads((cwd / "rn18_cifar.pth.json").read_text())["arch"] == "resnet18"
    assert "conv1.weight" in torch.load(cwd / "rn18_cifar.pth", weights_only=True)


def exported_detectron2(out, cwd):
    ok(out)
    import pickle

    with open(cwd / "r50.pkl", "rb") as f:  # the file this test just had written
        weights = pickle.load(f)
    assert weights["model"]["res2.0.conv1.weight"].shape == (64, 64, 1, 1)


def features(out, cwd):
    ok(out)
    array = np.load(cwd / "features" / "test_features.npy")
    assert array.shape == (1000, 512) and np.isfinite(array).all()
    assert np.load(cwd / "features" / "test_labels.npy").shape == (1000,)


def filelist(out, cwd):
    ok(out)
    (images,) = list((cwd / "data" / "imagenet1k_subsets").glob("*_images.npy"))
    assert len(np.load(images)) == 4


def snippet_ran(out, cwd):
    ok(out)
    assert out.stdout.strip().endswith("snippet ok"), out.stdout


# --------------------------------------------------------------------------- the list
QUICKSTART = "./setup.sh && .venv/bin/python tools/run_distributed_engines.py config=pretrain/aasae/quickstart"
IMAGENET = (
    "python tools/run_distributed_engines.py config=pretrain/aasae/imagenet "
    "config.DATA.TRAIN.DATA_PATHS=[/data/imagenet/train] config.CHECKPOINT.DIR=/checkpoints/aasae_in1k"
)
CIFAR10 = (
    "python tools/run_distributed_engines.py config=pretrain/aasae/cifar10 config.DATA.TRAIN.DATA_PATHS=[/data/cifar10]"
)
STL10 = "python tools/run_distributed_engines.py config=pretrain/aasae/stl10 config.DATA.TRAIN.DATA_PATHS=[/data/stl10]"
QUICKSTART_CAPS = ["config.DATA.TRAIN.DATA_LIMIT=64"]  # 2 epochs of 2 iterations: MODEL_ZOO reads its phase 1
ZOO_SNIPPET = """import torch
from vissl_aasae.interop import torchvision_resnet

net = torchvision_resnet(18, stem="cifar", width_multiplier=0.25).eval()
net.load_state_dict(torch.load("model_zoo/fashion_mnist/aasae_rn18w025_s0.pth", weights_only=True))
features = net(images)  # (N, 128); images: gray resized to 32x32, replicated to RGB, normalised with
#   mean 0.286 / std 0.353 (configs/config/pretrain/aasae/datasets/fashion_mnist.yaml)"""
EXPORT = "aasae-export --checkpoint checkpoints/quickstart/checkpoint.torch --output rn18_cifar.pth"
EXPORT_SNIPPET = """import torch
from vissl_aasae.interop import torchvision_resnet

model = torchvision_resnet(18, stem="cifar")  # a torchvision.models.ResNet
model.load_state_dict(torch.load("rn18_cifar.pth", weights_only=True))  # strict; model(x) -> (N, 512) pooled features
""".strip()
FEATURES = (
    "aasae-features --checkpoint checkpoints/quickstart/checkpoint.torch --output features/ --split test "
    "--device cpu config=pretrain/aasae/quickstart"
)
ENGINE = "python tools/run_distributed_engines.py config=benchmark/aasae/"
SEMI = (
    ENGINE + "semi_supervised/imagenet1k_{p}percent "
    "config.MODEL.WEIGHTS_INIT.PARAMS_FILE=checkpoints/aasae_imagenet/model_final_checkpoint_phase1998.torch "
    "config.DATA.TEST.DATA_PATHS=[/data/imagenet/val]"
)
FILELIST = (
    "python -m vissl_aasae.evaluation.filelists --subset {p}percent.txt --train-dir /data/imagenet/train "
    "--out-dir ./data/imagenet1k_subsets --name imagenet1k_{p}percent"
)
LINEAR = (
    ENGINE + "linear/{name} config.MODEL.WEIGHTS_INIT.PARAMS_FILE=checkpoints/{run}/model_final_checkpoint_phase"
    "{phase}.torch config.DATA.TRAIN.DATA_PATHS=[/data/{train}] config.DATA.TEST.DATA_PATHS=[/data/{test}]"
)
KNN = (
    ENGINE + "knn/{name} config.MODEL.WEIGHTS_INIT.PARAMS_FILE=<checkpoint> "
    "config.DATA.TRAIN.DATA_PATHS=[/data/{train}] config.DATA.TEST.DATA_PATHS=[/data/{test}]"
)
# the benchmarks: one epoch on 4 training and 2 test images (the configs' own workers and start method)
CAPS = [
    "config.MACHINE.DEVICE=cpu",
    "config.DISTRIBUTED.BACKEND=gloo",
    "config.DISTRIBUTED.NUM_PROC_PER_NODE=1",
    "config.OPTIMIZER.num_epochs=1",
    "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=2",
    "config.DATA.TEST.BATCHSIZE_PER_REPLICA=2",
    "config.DATA.TRAIN.DATA_LIMIT=4",
    "config.DATA.TEST.DATA_LIMIT=2",
]
# the step schedules' milestones lie beyond the one epoch run here
ONE_STEP = [
    f"config.OPTIMIZER.param_schedulers.{s}.{k}" for s in ("lr", "lr_head") for k in ("milestones=[]", "values=[0.01]")
]
SUBSET = "n01_0.jpg\nn01_1.jpg\nn02_0.jpg\nn02_1.jpg\n"  # the standard subset files' format: one file name a line


TP = "python benchmarks/throughput.py --config pretrain/aasae/"
THROUGHPUT = [
    TP + "quickstart --batch-size 64 --warmup 2 --iterations 6 --repeats 2 --modes step,plain,reference "
    "--json benchmarks/results/cpu_quickstart_rn18_32px_b64.json",
    TP + "cifar10 --fake-data 1024 --batch-size 64 --warmup 3 --iterations 4 --modes step,plain,reference "
    "--json benchmarks/results/cpu_cifar10_rn50_32px_b64.json",
    TP + "quickstart --batch-size 128 --warmup 2 --iterations 6 --modes step,plain,reference "
    "+config/pretrain/aasae/models=resnet18_w0.25 config.MODEL.AASAE.LATENT_DIM=64 "
    "--json benchmarks/results/cpu_study_rn18w025_32px_b128.json",
    TP + "cifar10 --fake-data 1024 --batch-size 64 --warmup 4 --iterations 6 --modes step,plain,reference "
    "--json benchmarks/results/cpu_cifar10_rn50_32px_b64_capped.json",
    "for r in 1 2; do for v in True False; do\n"
    + TP
    + "quickstart --batch-size 64 --warmup 2 --iterations 8 --modes plain config.MODEL.AASAE.ORIGINAL_IMAGE_PASS=$v "
    "--json benchmarks/results/cpu_quickstart_plain_b64_original_pass_${v}_r$r.json\ndone; done",
    TP + "quickstart --batch-size 64 --warmup 2 --iterations 5 --modes step --workers {0,1,2} "
    "--json benchmarks/results/cpu_quickstart_step_workers{0,1,2}.json",
    TP + "quickstart --batch-size {16,32,64,128} --warmup 2 --iterations 4 --modes plain "
    "--json benchmarks/results/cpu_quickstart_plain_b{16,32,64,128}.json",
    TP + "quickstart --batch-size 32 --resolution {32,64,96} --warmup 2 --iterations 4 --modes plain "
    "--json benchmarks/results/cpu_quickstart_plain_b32_{32,64,96}px.json",
    # issue 31: FLOPs per image and the fraction of the same run's measured peak, torch.compile
    TP + "quickstart --batch-size 64 --warmup 2 --iterations 6 --repeats 2 --profile 2 --modes step,plain,reference "
    "--json benchmarks/results/cpu_quickstart_rn18_32px_b64_flops.json",
    TP + "cifar10 --fake-data 1024 --batch-size 64 --warmup 3 --iterations 4 --profile 2 --modes step,plain,reference "
    "--json benchmarks/results/cpu_cifar10_rn50_32px_b64_flops.json",
    TP + "quickstart --batch-size 128 --warmup 2 --iterations 6 --repeats 2 --profile 2 --modes step,plain,reference "
    "+config/pretrain/aasae/models=resnet18_w0.25 config.MODEL.AASAE.LATENT_DIM=64 "
    "--json benchmarks/results/cpu_study_rn18w025_32px_b128_flops.json",
]
THROUGHPUT_COMPILE = [
    TP + "quickstart --batch-size 64 --warmup 3 --iterations 4 --modes plain --compare-compile --compile-cache shared "
    "--peak-seconds 0.5 --json benchmarks/results/cpu_quickstart_rn18_32px_b64_compile.json",
    TP + "quickstart --batch-size 128 --warmup 3 --iterations 6 --modes plain --compare-compile --compile-cache shared "
    "--peak-seconds 0.5 +config/pretrain/aasae/models=resnet18_w0.25 config.MODEL.AASAE.LATENT_DIM=64 "
    "--json benchmarks/results/cpu_study_rn18w025_32px_b128_compile.json",
    TP + "quickstart --batch-size 64 --warmup 3 --iterations 4 --modes step --compare-compile --compile-cache shared "
    "--peak-seconds 0.5 --json benchmarks/results/cpu_quickstart_rn18_32px_b64_step_compile.json",
    TP + "quickstart --batch-size 128 --warmup 3 --iterations 6 --modes step --compare-compile --compile-cache shared "
    "--peak-seconds 0.5 +config/pretrain/aasae/models=resnet18_w0.25 config.MODEL.AASAE.LATENT_DIM=64 "
    "--json benchmarks/results/cpu_study_rn18w025_32px_b128_step_compile.json",
]


def final_of(command: str, folder: str) -> tuple:
    """(command, its final checkpoint): what a benchmark's PARAMS_FILE names, made by a smoke run."""
    return (command, f"{folder}/model_final_checkpoint_phase0.torch")


IN1K = {"checkpoints/aasae_imagenet/model_final_checkpoint_phase1998.torch": final_of(IMAGENET, "in1k")}

COMMANDS: Dict[str, object] = {
    # ---- README: the two commands
    QUICKSTART: Run(trained("checkpoints/quickstart", 4), smoke=False, extra=QUICKSTART_CAPS),
    "./setup.sh && .venv/bin/python -m pytest tests -q": Elsewhere(".ci/run", "CI runs the suite with this command"),
    # ---- README "Usage" and the pretraining configs' headers
    IMAGENET: Run(trained("in1k")),
    CIFAR10: Run(trained("checkpoints/aasae_cifar10")),
    STL10: Run(trained("checkpoints/aasae_stl10")),
    "python tools/run_distributed_engines.py config=pretrain/aasae/imagenet config.DISTRIBUTED.NUM_PROC_PER_NODE=8 "
    "config.DISTRIBUTED.NUM_NODES=2 node_id=0 config.DISTRIBUTED.INIT_METHOD=tcp "
    "config.DISTRIBUTED.RUN_ID=host0:29500": Elsewhere(
        "tests/test_scale_out.py::test_two_nodes_train_the_same_run_as_one_node_with_two_processes",
        "two nodes: the test runs both node ids on one machine (TCP rendezvous, gloo)",
    ),
    "python tools/run_distributed_engines.py config=pretrain/aasae/cifar10 config.MACHINE.DEVICE=cpu "
    "config.DISTRIBUTED.BACKEND=gloo config.DISTRIBUTED.NUM_PROC_PER_NODE=2": Run(
        trained("checkpoints/aasae_cifar10", ranks=2), extra=["config.DATA.TRAIN.DATA_PATHS=[/data/cifar10]"]
    ),
    "python tools/run_distributed_engines.py config=pretrain/aasae/imagenet config.SLURM.USE_SLURM=True "
    "config.SLURM.PARTITION=<partition> config.SLURM.LOG_FOLDER=/shared/slurm_logs config.SLURM.TIME_HOURS=72 "
    "config.DISTRIBUTED.NUM_NODES=4 config.DISTRIBUTED.NUM_PROC_PER_NODE=8 "
    "config.CHECKPOINT.DIR=/shared/checkpoints/aasae_in1k": Elsewhere(
        "tests/test_scale_out.py::test_slurm_route_runs_the_plugin_through_submitit",
        "no SLURM cluster: the test submits through submitit's local executor",
    ),
    "python tools/run_distributed_engines.py config=pretrain/aasae/cifar10 +config/pretrain/aasae/variant=vae": Run(
        trained("checkpoints/aasae_cifar10"), extra=["config.DATA.TRAIN.DATA_PATHS=[/data/cifar10]"]
    ),
    "python tools/run_distributed_engines.py config=pretrain/aasae/stl10 +config/pretrain/aasae/models=resnet18": Run(
        trained("checkpoints/aasae_stl10"), extra=["config.DATA.TRAIN.DATA_PATHS=[/data/stl10]"]
    ),
    "python tools/run_distributed_engines.py config=pretrain/aasae/quickstart": Run(
        trained("checkpoints/quickstart", 4), smoke=False, extra=QUICKSTART_CAPS, same_as=QUICKSTART
    ),
    # ---- MODEL_ZOO.md
    ".venv/bin/aasae-eval --checkpoint checkpoints/quickstart/model_final_checkpoint_phase1.torch": Run(
        evaluated(False),
        links={"checkpoints/quickstart": (QUICKSTART, "checkpoints/quickstart")},
        extra=["config.DATA.TRAIN.DATA_LIMIT=500"],
    ),
    ".venv/bin/aasae-eval --random-init": Run(evaluated(True), extra=["config.DATA.TRAIN.DATA_LIMIT=500"]),
    ZOO_SNIPPET: Run(
        snippet_ran,
        links={"model_zoo": (None, REPO / "model_zoo")},
        setup="import torch\nimages = torch.randn(2, 3, 32, 32)",
        after="assert features.shape == (2, 128) and bool(torch.isfinite(features).all())",
    ),
    "python benchmarks/fashion_mnist_study.py --out runs/study --runs aasae:0": Elsewhere(
        "tests/test_study.py::test_study_curves_baselines_report_and_resume",
        "30 epochs of 20k images: the test runs the harness on 300 real images for 2 epochs",
    ),
    "aasae-export --checkpoint runs/study/aasae_s0/model_final_checkpoint_phase29.torch "
    "--output aasae_rn18w025_s0.pth": (
        Elsewhere(
            "tests/test_study.py::test_the_published_miniature_reproduces_its_numbers",
            "the study's run folder; the committed trunks it made are loaded and re-measured there",
        )
    ),
    "python benchmarks/fashion_mnist_study.py --out runs/study_b --views cifar10 --runs aasae:2": Elsewhere(
        "tests/test_study.py::test_study_b_pretrains_with_the_views_of_the_cifar10_config",
        "30 epochs of 20k images: the test runs Study B's harness on 300 real images",
    ),
    "aasae-export --checkpoint runs/study_b/aasae_s2/model_final_checkpoint_phase29.torch "
    "--output aasae_rn18w025_paper_views_s2.pth": (
        Elsewhere(
            "tests/test_study.py::test_the_published_miniature_reproduces_its_numbers",
            "Study B's run folder; the committed trunk it made is loaded and re-measured there",
        )
    ),
    EXPORT: Run(exported_torchvision, links={"checkpoints/quickstart": (QUICKSTART, "checkpoints/quickstart")}),
    EXPORT_SNIPPET: Run(
        snippet_ran,
        links={"rn18_cifar.pth": (EXPORT, "rn18_cifar.pth")},
        after="assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 512)",
    ),
    "aasae-export --format detectron2 --checkpoint CKPT --output r50.pkl": Run(
        exported_detectron2, links={"in1k": (IMAGENET, "in1k")}, values={"CKPT": "in1k/checkpoint.torch"}
    ),
    FEATURES: Run(features, links={"checkpoints/quickstart": (QUICKSTART, "checkpoints/quickstart")}),
    "aasae-import --checkpoint their_cifar10.ckpt --output aavae_cifar10.torch": Elsewhere(
        "tests/test_interop.py::test_import_tool_writes_a_vissl_checkpoint",
        "the authors' checkpoint: the test writes one in their layout",
    ),
    # ---- docs/RESULTS.md: the studies (hours each)
    "python benchmarks/fashion_mnist_study.py --out runs/study": Elsewhere(
        "tests/test_study.py::test_study_curves_baselines_report_and_resume", "the harness on 300 real images"
    ),
    "python benchmarks/fashion_mnist_study.py --out runs/study_b --views cifar10": Elsewhere(
        "tests/test_study.py::test_study_b_pretrains_with_the_views_of_the_cifar10_config",
        "the harness on 300 real images",
    ),
    "python benchmarks/nuisance_data.py --out runs/nuisance --seed 0 "
    "--grid docs/figures/nuisance_fashion_mnist_grid.png": (
        Elsewhere("tests/test_nuisance_data.py::test_the_command_line_writes_an_archive_and_a_grid", "70k images")
    ),
    "python benchmarks/nuisance_data.py --out runs/nuisance --seed 0": Elsewhere(
        "tests/test_nuisance_data.py::test_the_command_line_writes_an_archive_and_a_grid", "70k images"
    ),
    "python benchmarks/fashion_mnist_study.py --out runs/study_c --dataset nuisance": Elsewhere(
        "tests/test_nuisance_data.py::test_study_c_end_to_end_on_a_tiny_archive", "a tiny archive"
    ),
    # ---- MODEL_ZOO.md: Study C's row
    "python benchmarks/fashion_mnist_study.py --out runs/study_c --dataset nuisance --runs aasae:2": Elsewhere(
        "tests/test_nuisance_data.py::test_study_c_end_to_end_on_a_tiny_archive", "a tiny archive, one epoch"
    ),
    "aasae-export --checkpoint runs/study_c/aasae_s2/model_final_checkpoint_phase29.torch "
    "--output aasae_rn18w025_s2.pth": Elsewhere(
        "tests/test_study.py::test_the_published_miniature_reproduces_its_numbers",
        "Study C's run folder; the committed trunk it made is loaded and re-measured there",
    ),
    # ---- benchmarks/RESULTS.md: each writes a JSON of benchmarks/results (the committed measurements)
    **{
        command: Elsewhere(
            "tests/test_throughput.py::test_benchmark_runs_on_a_tiny_config_and_writes_its_json",
            "minutes of timing each, written over the committed JSON: the test runs the script on a tiny config",
        )
        for command in THROUGHPUT
    },
    **{
        command: Elsewhere(
            "tests/test_throughput.py::test_compiled_training_follows_the_uncompiled_trajectory",
            "minutes of compiling and timing: the test compiles the model and steps it beside the eager one",
        )
        for command in THROUGHPUT_COMPILE
    },
    "benchmarks/gpu_check.sh": Elsewhere(
        "tests/test_throughput.py::test_gpu_check_dry_run_on_cpu", "needs a GPU; --dry-run runs the same code"
    ),
    "benchmarks/gpu_check.sh --dry-run": Elsewhere(
        "tests/test_throughput.py::test_gpu_check_dry_run_on_cpu", "the test runs it (a few minutes on 2 cores)"
    ),
    # ---- the benchmark configs' headers, as written: the ResNet-50 trunks of the smoke runs above
    FILELIST.format(p=1): Run(filelist, files={"1percent.txt": SUBSET}),
    FILELIST.format(p=10): Run(filelist, files={"10percent.txt": SUBSET}),
    SEMI.format(p=1): Run(
        benchmark("fine-tuned", "checkpoints/semi_supervised_imagenet1k_1percent", *IN1K),
        smoke=False,
        extra=CAPS + ONE_STEP,
        links={**IN1K, "data": (FILELIST.format(p=1), "data")},
    ),
    SEMI.format(p=10): Run(
        benchmark("fine-tuned", "checkpoints/semi_supervised_imagenet1k_10percent", *IN1K),
        smoke=False,
        extra=CAPS + ONE_STEP,
        links={**IN1K, "data": (FILELIST.format(p=10), "data")},
    ),
    LINEAR.format(
        name="imagenet1k", run="aasae_imagenet", phase=1998, train="imagenet/train", test="imagenet/val"
    ): Run(benchmark("linear", "checkpoints/linear_imagenet1k", *IN1K), smoke=False, extra=CAPS, links=IN1K),
    LINEAR.format(
        name="places205", run="aasae_imagenet", phase=1998, train="places205/train", test="places205/val"
    ): Run(
        benchmark("linear", "checkpoints/linear_places205", *IN1K), smoke=False, extra=CAPS + ONE_STEP[:2], links=IN1K
    ),
    LINEAR.format(name="cifar10", run="aasae_cifar10", phase=3199, train="cifar10", test="cifar10"): Run(
        benchmark(
            "linear", "checkpoints/linear_cifar10", "checkpoints/aasae_cifar10/model_final_checkpoint_phase3199.torch"
        ),
        smoke=False,
        extra=CAPS,
        links={
            "checkpoints/aasae_cifar10/model_final_checkpoint_phase3199.torch": final_of(
                CIFAR10, "checkpoints/aasae_cifar10"
            )
        },
    ),
    LINEAR.format(name="stl10", run="aasae_stl10", phase=3199, train="stl10", test="stl10"): Run(
        benchmark(
            "linear", "checkpoints/linear_stl10", "checkpoints/aasae_stl10/model_final_checkpoint_phase3199.torch"
        ),
        smoke=False,
        extra=CAPS,
        links={
            "checkpoints/aasae_stl10/model_final_checkpoint_phase3199.torch": final_of(STL10, "checkpoints/aasae_stl10")
        },
    ),
    KNN.format(name="cifar10", train="cifar10", test="cifar10"): Run(
        knn("checkpoints/knn_cifar10"),
        smoke=False,
        extra=CAPS,
        links={"trunk.torch": final_of(CIFAR10, "checkpoints/aasae_cifar10")},
        values={"<checkpoint>": "trunk.torch"},
    ),
    KNN.format(name="stl10", train="stl10", test="stl10"): Run(
        knn("checkpoints/knn_stl10"),
        smoke=False,
        extra=CAPS,
        links={"trunk.torch": final_of(STL10, "checkpoints/aasae_stl10")},
        values={"<checkpoint>": "trunk.torch"},
    ),
    KNN.format(name="imagenet1k", train="imagenet/train", test="imagenet/val"): Run(
        knn("checkpoints/knn_imagenet1k", k=200),  # the config's k: ImageNet's usual 200
        smoke=False,
        extra=CAPS,
        links={"trunk.torch": final_of(IMAGENET, "in1k")},
        values={"<checkpoint>": "trunk.torch"},
    ),
    ENGINE + "knn/quickstart config.MODEL.WEIGHTS_INIT.PARAMS_FILE=checkpoints/quickstart/checkpoint.torch": Run(
        knn("checkpoints/eval_quickstart", 2),
        smoke=False,
        extra=CAPS,
        links={"checkpoints/quickstart": (QUICKSTART, "checkpoints/quickstart")},
    ),
}


# --------------------------------------------------------------------------- the tests
def test_every_documented_command_is_listed():
    shown = documented_commands()
    missing = {c: where for c, where in shown.items() if c not in COMMANDS}
    assert not missing, "documented but not in COMMANDS (add each with how the suite runs it):\n" + "\n".join(
        f"{where}: {c}" for c, where in missing.items()
    )
    stale = [c for c in COMMANDS if c not in shown]
    assert not stale, f"in COMMANDS but in no document any more: {stale}"


def _test_functions(path: Path) -> set:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def test_the_tests_named_for_the_others_exist():
    for command, spec in COMMANDS.items():
        if not isinstance(spec, Elsewhere):
            continue
        if spec.test == ".ci/run":
            assert command.split("&& ", 1)[1] in (REPO / ".ci" / "run").read_text()
            continue
        file, name = spec.test.split("::")
        assert name in _test_functions(REPO / file), f"{spec.test} (for {command!r}) does not exist"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("documented")
    data = root / "data"
    write_image_folder(data / "imagenet" / "train", classes=("n01", "n02"), per_class=20, size=64)
    write_image_folder(data / "imagenet" / "val", classes=("n01", "n02"), per_class=2, size=64, seed=5)
    for split, seed in (("train", 7), ("val", 9)):
        write_image_folder(data / "places205" / split, classes=("a", "b"), per_class=2, size=64, seed=seed)
    write_cifar10(data / "cifar10", n_per_batch=1004)  # HOLD_OUT 5000 of 5020: 20 left to train on
    write_stl10(data / "stl10", n=4, unlabeled=5020)  # the same for the unlabeled split
    names = ("imagenet/train", "imagenet/val", "places205/train", "places205/val", "cifar10", "stl10")
    values = {f"/data/{name}": str(data / name) for name in names}
    values["/checkpoints/aasae_in1k"] = "in1k"
    return Workspace(root, values)


RUN_HERE = [c for c, spec in COMMANDS.items() if isinstance(spec, Run)]


@pytest.mark.slow
@pytest.mark.parametrize("command", RUN_HERE, ids=[f"{i:02d}" for i in range(len(RUN_HERE))])
def test_documented_command_runs_as_written(workspace, command):
    out = workspace.result(command)
    COMMANDS[command].check(out, workspace.folder(command))
