#!/usr/bin/env python
"""Learning curves of AE, AAAE, VAE and AASAE on full Fashion-MNIST: the paper's Table 1 at CPU scale.

    python benchmarks/fashion_mnist_study.py --out runs/study                        # the whole study
    python benchmarks/fashion_mnist_study.py --out runs/study --runs aasae:0,ae:0   # some runs only
    python benchmarks/fashion_mnist_study.py --out runs/study --report-only          # tables + plot
    python benchmarks/fashion_mnist_study.py --out runs/study_b --views cifar10     # Study B (issue 29)
    python benchmarks/fashion_mnist_study.py --out runs/study_c --dataset nuisance  # Study C (issue 29)

One command, resumable: it skips what is done (a run's epochs already evaluated, finished runs,
the baselines) and continues what is not (a killed pretraining resumes from its last epoch's
checkpoint through VISSL's auto-resume); results go to ``--results`` (JSON) as they come.

The model (``+config/pretrain/aasae/models=resnet18_w0.25``): ResNet-18 at a quarter of the width
(stages 16/32/64/128, h = 128) with the CIFAR stem at 32 px, its decoder narrowed alike, latent
d = 64, PyTorch's default decoder init and the reference's original-image pass (the paper configs'
choices).  Pretraining: ``--train-images`` (20k) Fashion-MNIST training images (a fixed random
subset, labels unused) through VISSL's launcher, batch 128, Adam at a constant 1e-3, the
quickstart's augmentations (crops of 30-100 % of the area, flips, brightness/contrast jitter),
fixed log-scale 0; only the variant mix-in (and the seed) differ between runs.  ``--views cifar10``
(Study B) replaces the augmented view by the one ``pretrain/aasae/cifar10`` declares (the reference's
CIFAR-10 pipeline: RandomResizedCrop at its default scale 0.08-1, flips, colour distortion at strength
0.5), read from that config, for pretraining and for the robustness and view-similarity probes alike;
its results, figures and default runs (AASAE and AAAE, seeds 0-2) are its own (``study_name``).
``--dataset nuisance`` (Study C) reads, instead of Fashion-MNIST, the archive ``benchmarks/nuisance_data.py``
generates (``--data``: its ``.npz``; the garments at random scales, positions and colours over coloured
backgrounds), with its normalisation (the data set mix-in ``nuisance_fashion_mnist``), for the
pretraining, the probes, the baselines and the view similarity alike; its views default to the
``cifar10`` ones, and its results, figures and default runs (the four variants, then seeds 1-2 of
AASAE and of the best baseline) are its own.  ``--baselines-only`` measures the two baselines and stops:
a data set's sanity figures before any pretraining.

After epochs 1-6, then every ``--eval-every`` (3) epochs and after the last, the encoder's ``h`` is
evaluated (eval-mode BatchNorm, the test transform):
linear top-1 (logistic regression on standardised features, L-BFGS, fitted on ``--fit`` (10k)
training images) and kNN top-1 (k = 20, cosine, the same 10k as memory), both on all 10k test
images, and low-label linear probes with 10 and 100 labelled images per class (drawn from the 10k,
``--draws`` draws averaged).  At a run's last epoch also augmentation robustness: the same probe
(fitted on clean training features) scored on one augmented view (the ``augmented`` transform) of
every test image.  Baselines: the random-init trunk (same evaluation) and raw pixels (linear, kNN,
low-label on the normalised 3x32x32 images).  With ``--dataset nuisance``, at a run's last epoch and for
both baselines, a diagnostic beside the study's reading: the ridge R^2 of each nuisance factor (the
generator's own draws, ``nuisance_data.archive_factors``) from the test images' features.

The run order is ``--runs``: AASAE and AE first (``--epochs``), then VAE and AAAE, then seed 1 of
AASAE and of the best baseline, then seed 2 of each (``best:SEED``: of AE, AAAE and VAE, the one whose
finished seed-0 run has the highest final linear top-1, chosen when its turn comes), so that a study
stopped half-way still compares the two on the same number of seeds.  Seeds other than 0 only enter
the seed table, so they are evaluated at their last epoch only (``--seed-curves``: at every evaluated
epoch, as seed 0), which leaves the cores to their pretraining.  ``--report-only`` writes
``--figure`` (accuracy vs epoch) and prints the tables.
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from nuisance_data import FACTORS, archive_factors, archive_name  # benchmarks/, the script's own folder

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = ROOT / "tools" / "run_distributed_engines.py"
DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
DEFAULT_RUNS = "aasae:0,ae:0,vae:0,aaae:0,aasae:1,best:1,aasae:2,best:2"
# --dataset: the aasae_array format its runs read, the data set mix-in that declares its stem, size and
# normalisation (none: the quickstart's own, Fashion-MNIST), the default --data and --views
DATASETS = {
    "fashion_mnist": {"format": "fashion_mnist", "mixin": None, "data": DEFAULT_DATA, "views": "quickstart"},
    "nuisance": {
        "format": "npz",
        "mixin": "nuisance_fashion_mnist",
        "data": str(ROOT / "runs" / "nuisance" / archive_name(0)),
        "views": "cifar10",
    },
}
TITLES = {"fashion_mnist": "Fashion-MNIST", "nuisance": "Fashion-MNIST with nuisance factors"}
# (--dataset, --views): the name of the study's results and its default --runs. --views: the pretraining
# config whose augmented view the runs use; Study B's runs: the AE and VAE never see a view, so only
# AASAE and AAAE are run again; Study C (nuisance data) runs the four variants again
STUDIES = {
    ("fashion_mnist", "quickstart"): ("fashion_mnist_study", DEFAULT_RUNS),
    ("fashion_mnist", "cifar10"): ("fashion_mnist_paper_views_study", "aasae:0,aaae:0,aasae:1,aaae:1,aasae:2,aaae:2"),
    ("nuisance", "cifar10"): ("nuisance_fashion_mnist_study", DEFAULT_RUNS),
    ("nuisance", "quickstart"): ("nuisance_fashion_mnist_quickstart_views_study", DEFAULT_RUNS),
}
VIEWS = sorted({views for _, views in STUDIES})
# settings a results file must have been made with; a record made before a key existed had its default
COMPARED = ("dataset", "data_generator", "views", "epochs", "train_images", "batch_size", "lr")
RECORDED_DEFAULTS = {"views": "quickstart", "dataset": "fashion_mnist"}
VARIANTS = ("ae", "aaae", "vae", "aasae")
BASELINES = tuple(v for v in VARIANTS if v != "aasae")
LOW_LABEL = (10, 100)  # labelled images per class
PROBE = {"SOLVER": "lbfgs", "C": 1.0, "MAX_ITER": 500, "STANDARDIZE": True}
MODEL = ["+config/pretrain/aasae/models=resnet18_w0.25", "config.MODEL.AASAE.LATENT_DIM=64"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", required=True, help="folder for the runs' checkpoints and logs")
    p.add_argument(
        "--dataset",
        choices=sorted(DATASETS),
        default="fashion_mnist",
        help="the images: Fashion-MNIST or the nuisance-factor archive benchmarks/nuisance_data.py "
        "generates (Study C) (default %(default)s)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="fashion_mnist: folder with the Fashion-MNIST IDX .gz files (default "
        f"{DATASETS['fashion_mnist']['data']}); nuisance: the generated .npz (default "
        f"{DATASETS['nuisance']['data']})",
    )
    p.add_argument(
        "--views",
        choices=VIEWS,
        default=None,
        help="the augmented view: the quickstart's (crops of 30-100%% of the area) or the one "
        "pretrain/aasae/cifar10 declares (the reference's CIFAR-10 pipeline) (default: quickstart for "
        "fashion_mnist, cifar10 for nuisance)",
    )
    p.add_argument(
        "--results",
        default=None,
        help="JSON of every number (default docs/results/<study>.json, <study> from --views)",
    )
    p.add_argument(
        "--figure",
        default=None,
        help="accuracy-vs-epoch plot (default docs/figures/<study>_curves.png); the view-similarity "
        "figures go beside it",
    )
    p.add_argument("--runs", default=None, help="variant:seed pairs, in order (default: the study's, see VIEWS)")
    p.add_argument("--epochs", type=int, default=30, help="pretraining epochs per run (default %(default)s)")
    p.add_argument("--train-images", type=int, default=20000, help="pretraining images (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=128, help="pretraining batch (default %(default)s)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate, constant (default %(default)s)")
    p.add_argument("--fit", type=int, default=10000, help="training images that fit the probes (default %(default)s)")
    p.add_argument("--draws", type=int, default=3, help="draws of the low-label subsets (default %(default)s)")
    p.add_argument("--workers", type=int, default=1, help="pretraining DataLoader workers (default %(default)s)")
    p.add_argument(
        "--eval-every",
        type=int,
        default=3,
        help="evaluate epochs 1-6, then every N-th and the last (default %(default)s)",
    )
    p.add_argument(
        "--seed-curves",
        action="store_true",
        help="evaluate seeds other than 0 at every evaluated epoch too, not only at their last",
    )
    p.add_argument("--report-only", action="store_true", help="only write the figure and print the tables")
    p.add_argument(
        "--baselines-only",
        action="store_true",
        help="measure the baselines (random-init trunk, raw pixels) and pretrain nothing: a data set's sanity figures",
    )
    p.add_argument(
        "--seed-from",
        default=None,
        help="a folder of run folders saved by an earlier session (a copy of an --out folder): each one "
        "missing from --out is copied there first, so its pretraining resumes from its saved checkpoint",
    )
    args = p.parse_args(argv)
    args.views = args.views or DATASETS[args.dataset]["views"]
    name = study_name(args.views, args.dataset)
    args.results = args.results or str(ROOT / "docs" / "results" / f"{name}.json")
    args.figure = args.figure or str(ROOT / "docs" / "figures" / f"{name.removesuffix('_study')}_curves.png")
    args.runs = args.runs or STUDIES[args.dataset, args.views][1]
    # resolved: the pretraining runs in its own folder
    args.data = str(Path(args.data or DATASETS[args.dataset]["data"]).resolve())
    args.data_generator = None
    checked = not args.report_only  # --report-only: the tables and the figure come from the results file alone
    if checked and args.dataset == "fashion_mnist" and not (Path(args.data) / "train-images-idx3-ubyte.gz").exists():
        p.error(f"--data {args.data}: no train-images-idx3-ubyte.gz there (apt install dataset-fashion-mnist)")
    if checked and args.dataset == "nuisance":
        if not Path(args.data).is_file():
            p.error(
                f"--data {args.data}: no such file (make it: python benchmarks/nuisance_data.py --out "
                f"{Path(args.data).parent} --seed 0)"
            )
        try:
            with np.load(args.data) as archive:
                args.data_generator = json.loads(str(archive["parameters"]))
        except (OSError, ValueError, KeyError):
            p.error(f"--data {args.data}: not an archive of benchmarks/nuisance_data.py (no 'parameters' in it)")
    runs = []
    for item in args.runs.split(","):
        variant, _, seed = item.partition(":")
        if variant not in (*VARIANTS, "best") or not seed.isdigit():
            p.error(f"--runs {item!r}: expected variant:seed with variant in {[*VARIANTS, 'best']}")
        runs.append((variant, int(seed)))
    args.runs = runs
    return args


def study_name(views: str, dataset: str = "fashion_mnist") -> str:
    """The name of a study's results: the published one keeps its name, Studies B and C (issue 29) their own."""
    return STUDIES[dataset, views][0]


def dataset_overrides(dataset: str) -> list:
    """The data set mix-in that gives the quickstart config the stem, size and normalisation of ``dataset``
    (none for Fashion-MNIST, the quickstart's own)."""
    mixin = DATASETS[dataset]["mixin"]
    return [f"+config/pretrain/aasae/datasets={mixin}"] if mixin else []


def views_overrides(views: str, dataset: str = "fashion_mnist") -> list:
    """Overrides of the quickstart config that give its runs the augmented view of ``pretrain/aasae/<views>``
    (read from that config, with the data set mix-in of ``dataset`` for its normalisation: not declared
    again here); none for the quickstart's own."""
    if views == "quickstart":
        return []
    from vissl_aasae.config_compose import compose

    _, quickstart = compose(["config=pretrain/aasae/quickstart", *dataset_overrides(dataset)])
    dataset = f"+config/pretrain/aasae/datasets={quickstart.AASAE_DATASET.NAME}"
    (other,) = compose([f"config=pretrain/aasae/{views}", dataset])[1].DATA.TRAIN.TRANSFORMS
    (ours,) = quickstart.DATA.TRAIN.TRANSFORMS
    pair = {"name": "AASAEViews", "original": ours["original"], "augmented": other["augmented"]}
    return [f"config.DATA.TRAIN.TRANSFORMS=[{hydra_value(pair)}]"]


def hydra_value(value) -> str:
    """``value`` (dicts, lists, strings, numbers, booleans) in Hydra's override grammar."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


# --------------------------------------------------------------------------- results file
class Results:
    """The study's JSON: written after every evaluation (atomically), read back on a restart."""

    def __init__(self, path: Path, settings: dict):
        self.path = path
        self.data = json.loads(path.read_text()) if path.exists() else {}
        self.data.setdefault("runs", {})
        self.data.setdefault("baselines", {})
        recorded = {k: self.data.get("settings", {}).get(k, RECORDED_DEFAULTS.get(k)) for k in settings}
        differ = [k for k in COMPARED if k in settings and path.exists() and recorded[k] not in (None, settings[k])]
        if differ:
            raise SystemExit(
                f"{path}: its runs were made with {', '.join(f'{k}={recorded[k]}' for k in differ)}, not "
                f"{', '.join(f'{k}={settings[k]}' for k in differ)}: give another --results (and --out)"
            )
        self.data["settings"] = settings

    def run(self, name: str) -> dict:
        return self.data["runs"].setdefault(name, {"epochs": {}})

    def save(self) -> None:
        from vissl_aasae.checkpoints import atomic_write

        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(str(self.path), lambda f: json.dump(self.data, f, indent=1, sort_keys=True), mode="w")


# --------------------------------------------------------------------------- evaluation
class Evaluator:
    """Features of a trunk (random init or a checkpoint) and every probe of the study."""

    def __init__(self, args):
        import torch

        from vissl_aasae.config_compose import compose  # loads the plugin (vissl_aasae.registry)

        torch.set_num_threads(1)  # leave the other core to the pretraining running beside it
        self.args = args
        # arguments made before --views / --dataset existed (e.g. a test's namespace): the published study's
        self.view_config, self.dataset = getattr(args, "views", "quickstart"), getattr(args, "dataset", "fashion_mnist")
        self.format = DATASETS[self.dataset]["format"]
        data = [f"config.DATA.{split}.{key}" for split in ("TRAIN", "TEST") for key in ("DATASET_NAMES", "DATA_PATHS")]
        overrides = [
            "config=benchmark/aasae/knn/quickstart",
            *MODEL[:1],
            *dataset_overrides(self.dataset),
            f"{data[0]}=[{self.format}]",
            f"{data[1]}=[{args.data}]",
            f"{data[2]}=[{self.format}]",
            f"{data[3]}=[{args.data}]",
            f"config.DATA.TRAIN.DATA_LIMIT={args.fit}",
            f"config.CHECKPOINT.DIR={Path(args.out) / 'eval'}",
        ]
        _, self.config = compose(overrides)
        _, pretrain = compose(
            [
                "config=pretrain/aasae/quickstart",
                *dataset_overrides(self.dataset),
                *views_overrides(self.view_config, self.dataset),
            ]
        )
        self.pretrain = pretrain
        self.augmented = [dict(t) for t in pretrain.DATA.TRAIN.TRANSFORMS[0]["augmented"]]
        self._labels = {}

    def _features(self, model, split: str, augmented: bool = False):
        import torch

        from vissl_aasae.evaluation.features import extract_features, split_loader, trunk_feature_name

        config = self.config
        original = config.DATA.TEST.TRANSFORMS
        if augmented:
            config.DATA.TEST.TRANSFORMS = self.augmented
        try:
            torch.manual_seed(0), random.seed(0), np.random.seed(0)  # the same augmented views every time
            loader = split_loader(config, split, num_workers=0)
            return extract_features(model.trunk, loader, trunk_feature_name(config), torch.device("cpu"))
        finally:
            config.DATA.TEST.TRANSFORMS = original

    def pixels(self):
        import torch

        from vissl_aasae.evaluation.features import split_loader

        def split(name):
            xs, ys = zip(
                *[(images.flatten(1), labels) for images, labels, _ in split_loader(self.config, name, num_workers=0)]
            )
            return torch.cat(xs), torch.cat(ys)

        return (*split("TRAIN"), *split("TEST"))

    def model(self, checkpoint=None):
        from vissl_aasae.evaluation.frozen_trunk import build_eval_model

        self.config.MODEL.WEIGHTS_INIT.PARAMS_FILE = str(checkpoint) if checkpoint else ""
        return build_eval_model(self.config, random_init=checkpoint is None)

    def evaluate(self, checkpoint=None, robustness=False, figure=None) -> dict:
        started = time.time()
        model = self.model(checkpoint)
        train_x, train_y = self._features(model, "TRAIN")
        test_x, test_y = self._features(model, "TEST")
        extra = {}
        if robustness:
            extra["aug_x"] = self._features(model, "TEST", augmented=True)[0]
        result = probes(train_x, train_y, test_x, test_y, self.args.draws, **extra)
        if robustness:
            result.update(self.views(model, figure))
            if self.dataset == "nuisance":
                result["nuisance_r2"] = self.nuisance_r2(test_x, test_y)
        result["eval_seconds"] = round(time.time() - started, 1)
        return result

    def nuisance_r2(self, test_x, test_y):
        """Study C's diagnostic (added after its design, not part of its reading): how much of each
        nuisance factor the test images' features hold (``factor_r2``), the factors recovered through the
        generator's own draws (None, said once, where the archive's are not recoverable)."""
        if not hasattr(self, "_nuisance"):
            with np.load(self.args.data) as archive:
                self._nuisance = archive_factors(archive, "test"), archive["test_labels"]
            if self._nuisance[0] is None:
                print(f"--data {self.args.data}: its nuisance factors are not recoverable; no R^2 measured")
        targets, labels = self._nuisance
        if targets is None:
            return None
        if not np.array_equal(np.asarray(test_y), labels):
            raise SystemExit(f"--data {self.args.data}: the test features did not come in the archive's order")
        return factor_r2(test_x, targets)

    def nuisance_r2_of(self, checkpoint=None):
        return self.nuisance_r2(*self._features(self.model(checkpoint), "TEST"))

    def views(self, model, figure=None) -> dict:
        """The paper's Fig. 5 on test images: mean cosine similarity of ``h`` between augmented views of
        one example and between views of different examples (up to 100 examples x 5 views); the
        figure (10 examples) when ``figure`` is a path."""
        from vissl_aasae.visualize.data import open_images, view_transform
        from vissl_aasae.visualize.view_similarity import first_examples, nearest_view_top1, plot, view_similarity

        images = open_images(self.pretrain, self.args.data, self.format, "test")
        augment = view_transform(self.pretrain, "augmented")
        result = view_similarity(model, images, augment, examples=min(100, len(images)), views=5, progress=False)
        if figure is not None:  # the first 10 examples: the same images and views a 10-example draw gives
            plot(
                first_examples(result, 10),
                figure,
                title=Path(figure).stem.split("_view_similarity_")[-1],
            )
        return {
            "view_cos_same": result.same_mean,
            "view_cos_different": result.different_mean,
            "view_retrieval_top1": nearest_view_top1(result.matrix, result.views),
        }


def factor_r2(features, targets: dict) -> dict:
    """R^2 of each target (name -> (N, k) array) regressed linearly on ``features`` (N, D): ridge
    (sklearn's RidgeCV, the penalty picked by leave-one-out over 1e-3..1e3) on features standardised with
    the first half's statistics, fitted on the first half of the images, scored on the second (R^2
    averaged over a target's k outputs; 0 is the second half's mean, 1 a perfect read-out)."""
    from sklearn.linear_model import RidgeCV

    x = np.asarray(features, dtype=np.float64)
    half = len(x) // 2
    x = (x - x[:half].mean(0)) / (x[:half].std(0) + 1e-8)
    return {
        name: float(RidgeCV(alphas=np.logspace(-3, 3, 7)).fit(x[:half], y[:half]).score(x[half:], y[half:]))
        for name, y in targets.items()
    }


def probes(train_x, train_y, test_x, test_y, draws: int, aug_x=None) -> dict:
    """Linear (L-BFGS logistic regression) and kNN on all of train/test, low-label linear probes."""
    import torch

    from vissl_aasae.evaluation.knn import knn_accuracy, topk_accuracy
    from vissl_aasae.evaluation.linear_probe import probe_scores, train_linear_probe

    classes = int(train_y.max()) + 1
    classifier, mean, std = train_linear_probe(train_x, train_y, classes, PROBE)
    result = {
        "linear_top1": topk_accuracy(probe_scores(classifier, mean, std, test_x), test_y)["top1"],
        "knn_top1": knn_accuracy(train_x, train_y, test_x, test_y, k=20, temperature=0.07)["top1"],
        "n_fit": int(len(train_y)),
        "n_test": int(len(test_y)),
    }
    if aug_x is not None:
        result["linear_top1_augmented_test"] = topk_accuracy(probe_scores(classifier, mean, std, aug_x), test_y)["top1"]
    for per_class in LOW_LABEL:
        scores = []
        for draw in range(draws):
            g = torch.Generator().manual_seed(1000 * per_class + draw)
            picked = torch.cat(
                [
                    idx[torch.randperm(len(idx), generator=g)[:per_class]]
                    for idx in (torch.nonzero(train_y == c).flatten() for c in range(classes))
                ]
            )
            clf, m, s = train_linear_probe(train_x[picked], train_y[picked], classes, PROBE)
            scores.append(topk_accuracy(probe_scores(clf, m, s, test_x), test_y)["top1"])
        result[f"linear_top1_{per_class}_per_class"] = float(np.mean(scores))
        result[f"linear_top1_{per_class}_per_class_draws"] = scores
    return result


# --------------------------------------------------------------------------- pretraining
def best_baseline(runs: dict, epochs: int):
    """Of the baselines whose seed-0 run finished ``epochs`` epochs, the one with the highest final
    linear top-1 (None if none has)."""
    scores = {
        variant: record["epochs"][str(epochs)]["linear_top1"]
        for variant in BASELINES
        if final_epoch(record := runs.get(run_name(variant, 0), {"epochs": {}})) == epochs
    }
    return max(scores, key=scores.get) if scores else None


def run_name(variant: str, seed: int) -> str:
    return f"{variant}_s{seed}"


def checkpoint_of_epoch(folder: Path, epoch: int, epochs: int):
    """VISSL's file for the end of ``epoch`` (1-based): model_phase{e-1}, the last one
    model_final_checkpoint_phase{e-1}."""
    name = f"model_final_checkpoint_phase{epoch - 1}.torch" if epoch == epochs else f"model_phase{epoch - 1}.torch"
    path = folder / name
    return path if path.exists() else None


def pretrain_command(args, variant: str, seed: int, folder: Path):
    return [
        sys.executable,
        str(LAUNCHER),
        "config=pretrain/aasae/quickstart",
        *MODEL,
        f"+config/pretrain/aasae/variant={variant}",
        *dataset_overrides(args.dataset),
        *views_overrides(args.views, args.dataset),
        f"config.DATA.TRAIN.DATASET_NAMES=[{DATASETS[args.dataset]['format']}]",
        f"config.DATA.TRAIN.DATA_PATHS=[{args.data}]",
        f"config.DATA.TRAIN.DATA_LIMIT={args.train_images}",
        "config.DATA.TRAIN.DATA_LIMIT_SAMPLING.SEED=0",
        f"config.DATA.TRAIN.BATCHSIZE_PER_REPLICA={args.batch_size}",
        f"config.DATA.NUM_DATALOADER_WORKERS={args.workers}",
        "config.OPTIMIZER.param_schedulers.lr.name=constant",
        f"config.OPTIMIZER.param_schedulers.lr.value={args.lr}",
        f"config.OPTIMIZER.num_epochs={args.epochs}",
        f"config.SEED_VALUE={seed}",
        "config.CHECKPOINT.CHECKPOINT_FREQUENCY=1",
        "config.CHECKPOINT.CHECKPOINT_ITER_FREQUENCY=-1",
        "config.LOG_FREQUENCY=50",
        "config.AASAE.METRICS.IMAGE_FREQUENCY=0",
        f"config.CHECKPOINT.DIR={folder}",
        # the switches as the study's first runs had them (before they defaulted to auto): every run of
        # the study the same, and their recorded configs resume
        "config.AASAE.PERFORMANCE.CHANNELS_LAST=False",
        "config.AASAE.PERFORMANCE.FUSED_OPTIMIZER=False",
        "config.DATA.PIN_MEMORY=True",  # the quickstart's value when the study began (a CPU no-op)
    ]


def epoch_metrics(folder: Path, epoch: int, per_epoch: int) -> dict:
    """Means over the epoch's logged iterations of the training metrics (aasae_metrics.json)."""
    path = folder / "aasae_metrics.json"
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if (epoch - 1) * per_epoch <= r["iteration"] < epoch * per_epoch]
    keys = ("loss", "log_pxz", "kl", "posterior_cos_sim_z", "posterior_kl")
    return {f"train_{k}": float(np.mean([r[k] for r in rows if k in r])) for k in keys if any(k in r for r in rows)}


def seconds_per_epoch(record: dict):
    """Median wall time per epoch from the checkpoint times of a run: every epoch's as the harness saw
    its checkpoint (``checkpoint_times``), and the evaluated epochs' (records made before every epoch's
    time was kept); each gap is divided by the epochs it spans.  None with fewer than two."""
    times = {int(e): r["checkpoint_time"] for e, r in record["epochs"].items() if "checkpoint_time" in r}
    times.update((int(e), t) for e, t in record.get("checkpoint_times", {}).items())
    done = sorted(times.items())
    rates = [(t1 - t0) / (e1 - e0) for (e0, t0), (e1, t1) in zip(done, done[1:])]
    return float(np.median(rates)) if rates else None


def study_run(args, evaluator, results: Results, variant: str, seed: int) -> None:
    name = run_name(variant, seed)
    folder = Path(args.out) / name
    record = results.run(name)
    last = record["epochs"].get(str(args.epochs)) or {}
    figure = view_figure(args, name) if seed == 0 else None
    if "linear_top1_augmented_test" in last:  # finished and evaluated (its checkpoints may be gone)
        final = checkpoint_of_epoch(folder, args.epochs, args.epochs) if folder.is_dir() else None
        views = "view_cos_same" not in last  # evaluated before the views were measured
        nuisance = evaluator.dataset == "nuisance" and "nuisance_r2" not in last  # the same
        if final is not None and (views or nuisance):
            model = evaluator.model(final)  # loaded once for both
            if views:
                last.update(evaluator.views(model, figure))
            if nuisance:
                last["nuisance_r2"] = evaluator.nuisance_r2(*evaluator._features(model, "TEST"))
            results.save()
        return
    folder.mkdir(parents=True, exist_ok=True)
    record.update({"variant": variant, "seed": seed, "target_epochs": args.epochs})
    per_epoch = args.train_images // args.batch_size
    final = checkpoint_of_epoch(folder, args.epochs, args.epochs)
    process, log = None, None
    if final is None:
        log = open(folder / "pretrain.log", "a")
        cmd = pretrain_command(args, variant, seed, folder)
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
        started = time.time()
        print(f"{name}: pretraining {args.epochs} epochs (log {folder / 'pretrain.log'})", flush=True)
    times = record.setdefault("checkpoint_times", {})
    try:
        while True:
            for epoch in range(1, args.epochs + 1):
                key = str(epoch)
                ckpt = checkpoint_of_epoch(folder, epoch, args.epochs)
                if ckpt is not None and key not in times:  # every epoch's, evaluated or not
                    times[key] = os.path.getmtime(ckpt)
                    results.save()
                if not (epoch <= 6 or epoch % args.eval_every == 0 or epoch == args.epochs):
                    continue
                if seed != 0 and not args.seed_curves and epoch != args.epochs:
                    continue
                last = epoch == args.epochs
                done = record["epochs"].get(key)
                if ckpt is None or (done and (not last or "linear_top1_augmented_test" in done)):
                    continue
                result = evaluator.evaluate(ckpt, robustness=last, figure=figure if last else None)
                result.update(epoch_metrics(folder, epoch, per_epoch))
                result["checkpoint_time"] = os.path.getmtime(ckpt)
                record["epochs"][key] = result
                results.save()
                print(
                    f"{name} epoch {epoch}: linear {result['linear_top1']:.2f} knn {result['knn_top1']:.2f} "
                    f"10/class {result['linear_top1_10_per_class']:.2f} "
                    f"100/class {result['linear_top1_100_per_class']:.2f}",
                    flush=True,
                )
            if process is None or process.poll() is not None:
                break
            time.sleep(10)
        if process is not None:
            if process.returncode != 0:
                raise SystemExit(
                    f"{name}: pretraining failed (exit {process.returncode}); see {folder / 'pretrain.log'}"
                )
    finally:
        if process is not None:  # every call's pretraining time counts, an interrupted one too
            record["pretrain_seconds"] = record.get("pretrain_seconds", 0) + round(time.time() - started)
            results.save()
        if process is not None and process.poll() is None:
            # the launcher's own interruption (as Ctrl-C): it exits saving nothing partial and leaves its
            # run lock, so the same command resumes from the last epoch's checkpoint
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
        if log is not None:
            log.close()


def view_figure(args, name: str) -> Path:
    """Beside the curves, named after them: fashion_mnist_curves.png -> fashion_mnist_view_similarity_<run>.png."""
    figure = Path(args.figure)
    return figure.parent / f"{figure.stem.removesuffix('_curves')}_view_similarity_{name}.png"


def baselines(args, evaluator, results: Results) -> None:
    base = results.data["baselines"]
    if "random_init" not in base:
        base["random_init"] = evaluator.evaluate(None, robustness=True, figure=view_figure(args, "random_init"))
        results.save()
    elif "view_cos_same" not in base["random_init"]:  # measured before the views were
        base["random_init"].update(evaluator.views(evaluator.model(None), view_figure(args, "random_init")))
        results.save()
    if "raw_pixels" not in base:
        started = time.time()
        base["raw_pixels"] = probes(*evaluator.pixels(), args.draws)
        base["raw_pixels"]["eval_seconds"] = round(time.time() - started, 1)
        results.save()
    if args.dataset == "nuisance":  # measured before the diagnostic existed: measured now
        if "nuisance_r2" not in base["random_init"]:
            base["random_init"]["nuisance_r2"] = evaluator.nuisance_r2_of(None)
            results.save()
        if "nuisance_r2" not in base["raw_pixels"]:
            base["raw_pixels"]["nuisance_r2"] = evaluator.nuisance_r2(*evaluator.pixels()[2:])
            results.save()


# --------------------------------------------------------------------------- report
METRICS = [
    ("linear_top1", "linear top-1 (10k labels)"),
    ("knn_top1", "kNN top-1 (k=20)"),
    ("linear_top1_100_per_class", "linear top-1, 100 labels/class"),
    ("linear_top1_10_per_class", "linear top-1, 10 labels/class"),
]


def final_epoch(record: dict):
    epochs = [int(e) for e, r in record["epochs"].items() if "linear_top1_augmented_test" in r]
    return max(epochs) if epochs else None


def report(results: Results, figure: Path) -> str:
    data = results.data
    runs, base = data["runs"], data["baselines"]
    lines = []
    by_variant = {}
    for name, record in sorted(runs.items()):
        by_variant.setdefault(record["variant"], []).append(record)
    lines += [
        "| model | seeds | epochs | " + " | ".join(label for _, label in METRICS) + " | augmented test (drop) |",
        "|---|---|---|" + "---|" * (len(METRICS) + 1),
    ]
    for variant in ("aasae", "ae", "aaae", "vae"):
        finished = [(r, final_epoch(r)) for r in by_variant.get(variant, []) if final_epoch(r)]
        if not finished:
            continue
        epochs = {e for _, e in finished}
        cells = []
        for key, _ in METRICS:
            values = [r["epochs"][str(e)][key] for r, e in finished]
            cells.append(
                f"{np.mean(values):.2f}" + (f" [{min(values):.2f}-{max(values):.2f}]" if len(values) > 1 else "")
            )
        aug = [r["epochs"][str(e)]["linear_top1_augmented_test"] for r, e in finished]
        clean = [r["epochs"][str(e)]["linear_top1"] for r, e in finished]
        cells.append(f"{np.mean(aug):.2f} ({np.mean(clean) - np.mean(aug):.2f})")
        lines.append(
            f"| {variant.upper()} | {len(finished)} | {'/'.join(map(str, sorted(epochs)))} | "
            + " | ".join(cells)
            + " |"
        )
    for key, label in (("random_init", "random-init trunk"), ("raw_pixels", "raw pixels (3072-d)")):
        if key in base:
            r = base[key]
            aug = (
                f"{r['linear_top1_augmented_test']:.2f} ({r['linear_top1'] - r['linear_top1_augmented_test']:.2f})"
                if "linear_top1_augmented_test" in r
                else "-"
            )
            lines.append(f"| {label} | - | - | " + " | ".join(f"{r[k]:.2f}" for k, _ in METRICS) + f" | {aug} |")
    lines += ["", *comparison(by_variant, base), *nuisance_table(by_variant, base)]
    settings = {**RECORDED_DEFAULTS, **data.get("settings", {})}
    weak = results.path.parent / f"{study_name('quickstart', settings['dataset'])}.json"
    if settings["views"] != "quickstart" and weak.exists():  # Study B: each variant against its published runs
        lines += against_weak_views(by_variant, json.loads(weak.read_text())["runs"], weak.name)
    lines += ["", *curves(runs)]
    lines += ["", *wall_times(runs, base)]
    plot(data, figure)
    return "\n".join(lines)


def nuisance_table(by_variant: dict, base: dict) -> list:
    """Study C's diagnostic: R^2 of each nuisance factor from the final features (seed means), beside the
    baselines'; nothing where no run or baseline has it."""
    rows = []
    for variant in ("aasae", "ae", "aaae", "vae"):
        finished = [r["epochs"][str(final_epoch(r))] for r in by_variant.get(variant, []) if final_epoch(r)]
        measured = [r["nuisance_r2"] for r in finished if r.get("nuisance_r2")]
        if measured:
            means = [np.mean([m[f] for m in measured]) for f in FACTORS]
            rows.append(
                f"| {variant.upper()} ({len(measured)} seed{'s' * (len(measured) > 1)}) | "
                + " | ".join(f"{v:.3f}" for v in means)
                + " |"
            )
    for key, label in (("random_init", "random-init trunk"), ("raw_pixels", "raw pixels (3072-d)")):
        if base.get(key, {}).get("nuisance_r2"):
            rows.append(f"| {label} | " + " | ".join(f"{base[key]['nuisance_r2'][f]:.3f}" for f in FACTORS) + " |")
    if not rows:
        return []
    header = "| nuisance factor R^2 (test images, ridge) | " + " | ".join(f.replace("_", " ") for f in FACTORS) + " |"
    return ["", header, "|---|" + "---|" * len(FACTORS), *rows]


def against_weak_views(by_variant: dict, weak_runs: dict, weak_name: str) -> list:
    """Study B's second reading: each variant's final figures with these views minus its runs with the
    quickstart's weak views (the study in ``weak_name``), judged like AASAE against a baseline."""
    weak = {}
    for record in weak_runs.values():
        weak.setdefault(record["variant"], []).append(record)
    rows = []
    for variant in ("aasae", "ae", "aaae", "vae"):
        here = [r for r in by_variant.get(variant, []) if final_epoch(r)]
        there = [r for r in weak.get(variant, []) if final_epoch(r)]
        if here and there:
            cells = [verdict(finals(here, k), finals(there, k), "higher", "lower") for k, _ in METRICS]
            rows.append(f"| {variant.upper()} ({len(here)} / {len(there)} seeds) | " + " | ".join(cells) + " |")
    if not rows:
        return []
    header = f"| these views minus the weak views ({weak_name}) | " + " | ".join(label for _, label in METRICS) + " |"
    return ["", header, "|---|" + "---|" * len(METRICS), *rows]


def finals(records: list, key: str) -> list:
    """The value of ``key`` at the final (fully evaluated) epoch of each finished run."""
    return [r["epochs"][str(final_epoch(r))][key] for r in records if final_epoch(r)]


def verdict(ours: list, theirs: list, ahead: str = "AASAE ahead", behind: str = "AASAE behind") -> str:
    """Difference of the seed means, called a difference only when larger than the seed spread
    (max - min) of either side; with one seed on each side the spread is unknown and nothing is called."""
    diff = float(np.mean(ours) - np.mean(theirs))
    spread = max(max(ours) - min(ours), max(theirs) - min(theirs))
    if len(ours) == 1 and len(theirs) == 1:
        return f"{diff:+.2f} (one seed each: spread unknown)"
    if abs(diff) <= spread:
        return f"{diff:+.2f} (no difference: spread {spread:.2f})"
    return f"**{diff:+.2f}** ({ahead if diff > 0 else behind}: spread {spread:.2f})"


TRAINING = [
    ("train_log_pxz", "log-likelihood of the original (nats/img)", "{:.0f}"),
    ("train_kl", "KL to prior (nats)", "{:.0f}"),
    ("train_posterior_cos_sim_z", "posterior cos (view vs original)", "{:.3f}"),
    ("view_cos_same", "h cos, views of one test image", "{:.3f}"),
    ("view_cos_different", "h cos, views of different images", "{:.3f}"),
    ("view_retrieval_top1", "nearest other view is of the same image (%)", "{:.1f}"),
]


def comparison(by_variant: dict, base: dict) -> list:
    """AASAE minus each finished baseline variant (and the random-init trunk) at the final epoch, the
    slope of AASAE's last evaluations, and the final training metrics of every variant: the lines
    that say whether the paper's ordering shows and, if not, where to look."""
    ours = [r for r in by_variant.get("aasae", []) if final_epoch(r)]
    lines = []
    if ours:
        lines += ["| AASAE minus | " + " | ".join(label for _, label in METRICS) + " | augmented test |"]
        lines += ["|---|" + "---|" * (len(METRICS) + 1)]
        keys = [k for k, _ in METRICS] + ["linear_top1_augmented_test"]
        for variant in ("ae", "aaae", "vae"):
            theirs = [r for r in by_variant.get(variant, []) if final_epoch(r)]
            if theirs:
                cells = [verdict(finals(ours, k), finals(theirs, k)) for k in keys]
                lines.append(
                    f"| {variant.upper()} ({len(theirs)} seed{'s' * (len(theirs) > 1)}) | " + " | ".join(cells) + " |"
                )
        if "random_init" in base:
            cells = [
                f"{np.mean(finals(ours, k)) - base['random_init'][k]:+.2f}" for k in keys if k in base["random_init"]
            ]
            lines.append("| random-init trunk | " + " | ".join(cells) + " |")
        slopes = []
        for record in ours:
            points = sorted((int(e), r["linear_top1"]) for e, r in record["epochs"].items())[-3:]
            # a slope only along a curve's evenly spaced tail (not a seed evaluated at its last epoch only)
            if len(points) == 3 and points[1][0] - points[0][0] == points[2][0] - points[1][0]:
                (e0, a0), (e1, a1) = points[0], points[-1]
                slopes.append(
                    f"AASAE seed {record['seed']}: linear top-1 {a0:.2f} at epoch {e0} -> {a1:.2f} at epoch {e1} "
                    f"({(a1 - a0) / (e1 - e0):+.3f} per epoch over its last three evaluations)"
                )
        lines += ["", *slopes] if slopes else []
    rows = [
        (variant, [r for r in by_variant.get(variant, []) if final_epoch(r)])
        for variant in ("aasae", "ae", "aaae", "vae")
    ]
    rows = [(variant, records) for variant, records in rows if records]
    if rows:
        lines += [
            "",
            "| final epoch, training metrics (seed mean) | " + " | ".join(label for _, label, _ in TRAINING) + " |",
        ]
        lines += ["|---|" + "---|" * len(TRAINING)]
        for variant, records in rows:
            cells = []
            for key, _, fmt in TRAINING:
                values = [v for v in finals([r for r in records if key in r["epochs"][str(final_epoch(r))]], key)]
                cells.append(fmt.format(np.mean(values)) if values else "-")
            lines.append(f"| {variant.upper()} | " + " | ".join(cells) + " |")
        random_init = base.get("random_init", {})
        if "view_cos_same" in random_init:
            cells = [fmt.format(random_init[key]) if key in random_init else "-" for key, _, fmt in TRAINING]
            lines.append("| random-init trunk | " + " | ".join(cells) + " |")
    return lines


def curves(runs: dict) -> list:
    """The seed-0 curves side by side: linear top-1 / 10-labels-per-class top-1 at every evaluated epoch."""
    shown = [runs[f"{v}_s0"] for v in ("aasae", "ae", "aaae", "vae") if runs.get(f"{v}_s0", {}).get("epochs")]
    if not shown:
        return []
    lines = [
        "| epoch | " + " | ".join(f"{r['variant'].upper()} linear / 10 per class" for r in shown) + " |",
        "|---|" + "---|" * len(shown),
    ]
    for epoch in sorted({int(e) for r in shown for e in r["epochs"]}):
        cells = [
            f"{r['epochs'][str(epoch)]['linear_top1']:.2f} / {r['epochs'][str(epoch)]['linear_top1_10_per_class']:.2f}"
            if str(epoch) in r["epochs"]
            else "-"
            for r in shown
        ]
        lines.append(f"| {epoch} | " + " | ".join(cells) + " |")
    return lines


def wall_times(runs: dict, base: dict) -> list:
    """Wall time of each part: pretraining (every call of the command, an interrupted one too), the
    median epoch from the checkpoints' times (evaluations run beside it), the evaluations."""
    lines = [
        "| part | epochs evaluated | median s per epoch | pretraining s (all calls) | evaluations s |",
        "|---|---|---|---|---|",
    ]
    for name, record in sorted(runs.items()):
        epochs = record["epochs"]
        per_epoch = seconds_per_epoch(record)
        evaluations = sum(r.get("eval_seconds", 0) for r in epochs.values())
        median = f"{per_epoch:.0f}" if per_epoch else "-"
        lines.append(
            f"| {name} | {len(epochs)} | {median} | {record.get('pretrain_seconds', '-')} | {evaluations:.0f} |"
        )
    for key, record in sorted(base.items()):
        lines.append(f"| baseline {key} | - | - | - | {record.get('eval_seconds', 0):.0f} |")
    return lines


def plot(data: dict, figure: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"aasae": "tab:red", "ae": "tab:blue", "aaae": "tab:green", "vae": "tab:purple"}
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharex=True)
    for ax, (key, label) in zip(axes.flat, METRICS):
        for name, record in sorted(data["runs"].items()):
            points = sorted((int(e), r[key]) for e, r in record["epochs"].items() if key in r)
            if not points:
                continue
            x, y = zip(*points)
            ax.plot(
                x,
                y,
                "-",
                marker="." if record["seed"] == 0 else "x",
                color=colours[record["variant"]],
                alpha=1.0 if record["seed"] == 0 else 0.4,
                label=record["variant"].upper() if record["seed"] == 0 else None,
            )
        for base, style in (("random_init", ":"), ("raw_pixels", "--")):
            if key in data["baselines"].get(base, {}):
                ax.axhline(
                    data["baselines"][base][key],
                    color="gray",
                    linestyle=style,
                    label={"random_init": "random-init trunk", "raw_pixels": "raw pixels"}[base],
                )
        ax.set_title(label)
        ax.set_xlabel("pretraining epoch")
        ax.set_ylabel("top-1 %")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    settings = data.get("settings", {})
    fig.suptitle(
        f"{TITLES[settings.get('dataset', 'fashion_mnist')]}, ResNet-18 x0.25 (h=128, d=64), "
        f"{settings.get('train_images')} pretraining images, "
        f"batch {settings.get('batch_size')}, {settings.get('views', 'quickstart')} views; 10k test images "
        "(faint: other seeds)",
        fontsize=10,
    )
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    # `kill` (SIGTERM) unwinds like Ctrl-C: the pretraining subprocess is stopped, not left running
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    args.out = str(Path(args.out).resolve())
    settings = {
        k: getattr(args, k) for k in ("epochs", "train_images", "batch_size", "lr", "fit", "draws", "views", "dataset")
    }
    if args.data_generator is not None:  # the generated data's parameters and seed
        settings["data_generator"] = args.data_generator
    settings.update(
        {"model": "resnet18_w0.25, cifar stem, 32 px, latent 64", "probe": PROBE, "knn": {"k": 20, "temperature": 0.07}}
    )
    results = Results(Path(args.results), settings)
    if args.seed_from:
        import shutil

        for saved in sorted(Path(args.seed_from).iterdir()):
            if saved.is_dir() and not (Path(args.out) / saved.name).exists():
                shutil.copytree(saved, Path(args.out) / saved.name, symlinks=True)
                print(f"{saved.name}: resumed from {saved}", flush=True)
    if not args.report_only:
        evaluator = Evaluator(args)
        baselines(args, evaluator, results)
        for variant, seed in [] if args.baselines_only else args.runs:
            if variant == "best":
                variant = best_baseline(results.data["runs"], args.epochs)
                if variant is None:
                    print(f"best:{seed}: skipped, no baseline has finished seed 0 ({args.epochs} epochs)", flush=True)
                    continue
                print(f"best:{seed}: the best baseline is {variant.upper()}", flush=True)
            study_run(args, evaluator, results, variant, seed)
    print(report(results, Path(args.figure)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
