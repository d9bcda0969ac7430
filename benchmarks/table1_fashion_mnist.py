#!/usr/bin/env python
"""The paper's Table 1 in miniature on real images: AE, AAAE, VAE and AASAE on Fashion-MNIST.

    python benchmarks/table1_fashion_mnist.py --out runs/table1                  # the table
    python benchmarks/table1_fashion_mnist.py --out runs/table1 --sweep latent   # one sweep
    python benchmarks/table1_fashion_mnist.py --out runs/table1 --sweep all      # every sweep
    python benchmarks/table1_fashion_mnist.py --out runs/table1 --sweep kl_coeff --points kl_coeff0,kl_coeff1

Every model is the quickstart's (``pretrain/aasae/quickstart``: ResNet-18 with the CIFAR stem and
its mirrored decoder, 32 px, Adam, 10 % linear warm-up then constant LR) trained through VISSL's
launcher on the Fashion-MNIST training images (labels unused; Debian package
``dataset-fashion-mnist``) for the same budget: ``--images`` images seen (one pass over the first
``--images`` training images), batch ``--batch-size``.  Only the variant mix-in
(``+config/pretrain/aasae/variant=...``) or the swept key differs between runs.

Each trunk is then evaluated by ``benchmarks/evaluate.py`` (frozen features ``h``; linear probe and
kNN, k = 20) fitted on the first ``--fit`` training images and reported on the **full 10k test
split**.  Baselines for scale: the same trunk at random init, and raw pixels (the normalised 3x32x32
target images, flattened) through the same linear probe and kNN.

Augmentations (the quickstart's ``augmented`` view, chosen for these images): RandomResizedCrop to
32 px with scale 0.3-1 (the garments fill the frame; smaller crops leave little of the object),
horizontal flip, brightness/contrast jitter (``ImgPilColorDistortion`` strength 0.5; hue and
saturation do nothing on gray images), no blur at 32 px.  The target is always the original image.

Sweeps (AASAE only, same budget): ``batch`` (16/32/64, LR and warm-up linear in batch size: the
number of images seen stays fixed), ``latent`` (64/128/256), ``decoder`` (depth 18/34),
``kl_coeff`` (0/0.01/0.1/1), ``log_scale`` (fixed -2/-1/0/1).  The point of each sweep that has
the quickstart's own value is the table's AASAE run (same folder, trained once).

Runs are resumable: a run whose results JSON exists is not repeated; a pretraining that was killed
resumes from its last checkpoint (VISSL's auto-resume).  Writes ``<out>/results.json`` and
``<out>/table.md`` (the tables of docs/RESULTS.md).
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = ROOT / "tools" / "run_distributed_engines.py"
EVALUATE = ROOT / "benchmarks" / "evaluate.py"
SIMILARITY = ROOT / "tools" / "aasae_view_similarity.py"
DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
VARIANTS = ("ae", "aaae", "vae", "aasae")
BASE_LR, BASE_BATCH = 1.0e-3, 32
LR_KEY = "config.OPTIMIZER.param_schedulers.lr.schedulers"


def lr_overrides(lr: float):
    return [f"{LR_KEY}.0.end_value={lr}", f"{LR_KEY}.1.value={lr}"]


SWEEPS = {
    "batch": {f"batch{b}": [f"config.DATA.TRAIN.BATCHSIZE_PER_REPLICA={b}", *lr_overrides(BASE_LR * b / BASE_BATCH)]
              for b in (16, 32, 64)},
    "latent": {f"latent{d}": [f"config.MODEL.AASAE.LATENT_DIM={d}"] for d in (64, 128, 256)},
    "decoder": {f"decoder{d}": [f"config.MODEL.AASAE.DECODER_DEPTH={d}"] for d in (18, 34)},
    "kl_coeff": {f"kl_coeff{v:g}": [f"config.LOSS.aasae_loss.kl_coeff={v}"] for v in (0.0, 0.01, 0.1, 1.0)},
    # last: with kl_coeff 0 a fixed log-scale only rescales the gradients, which Adam divides out
    # (tests/test_models.py::test_fixed_log_scale_does_not_change_aasae_training_under_adam)
    "log_scale": {f"log_scale{v:g}": [f"config.MODEL.AASAE.LOG_SCALE={v}"] for v in (-2.0, -1.0, 0.0, 1.0)},
}
# The quickstart's own value of each swept key (tests/test_table1.py checks them against the config):
# that point of a sweep is the table's AASAE run, which is reused rather than trained again.
QUICKSTART_VALUES = {"latent": "latent128", "decoder": "decoder18", "kl_coeff": "kl_coeff0", "log_scale": "log_scale0"}


def is_base_point(sweep: str, name: str, batch_size: int) -> bool:
    return name == (f"batch{batch_size}" if sweep == "batch" else QUICKSTART_VALUES[sweep])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for checkpoints, results.json and table.md")
    p.add_argument("--data", default=DEFAULT_DATA, help="folder with the Fashion-MNIST IDX .gz files")
    p.add_argument("--images", type=int, default=6400, help="images seen in pretraining (one pass), per run")
    p.add_argument("--batch-size", type=int, default=BASE_BATCH, help="pretraining batch (LR scaled from 1e-3 at 32)")
    p.add_argument("--fit", type=int, default=10000, help="training images that fit the linear probe / kNN memory")
    p.add_argument("--sweep", default="table", choices=("table", "all", *SWEEPS), help="what to run")
    p.add_argument("--variants", default=",".join(VARIANTS), help="variants of the table")
    p.add_argument("--points", default=None,
                   help="with --sweep: only these points, comma-separated (e.g. kl_coeff0,kl_coeff1); default all")
    p.add_argument("--no-baselines", action="store_true", help="skip random-init and raw-pixel rows")
    p.add_argument("--no-figures", action="store_true", help="skip the Fig. 5 view-similarity matrices")
    args = p.parse_args(argv)
    if not (Path(args.data) / "train-images-idx3-ubyte.gz").exists():
        p.error(f"--data {args.data}: no train-images-idx3-ubyte.gz there (apt install dataset-fashion-mnist)")
    if args.points is not None:
        known = {name for sweep in SWEEPS.values() for name in sweep}
        unknown = sorted(set(args.points.split(",")) - known)
        if args.sweep == "table" or unknown:
            p.error(f"--points {args.points}: " + (f"unknown points {unknown}; known: {sorted(known)}" if unknown
                                                    else "goes with --sweep"))
        args.points = set(args.points.split(","))
    if args.images < args.batch_size:
        p.error(f"--images {args.images} is smaller than --batch-size {args.batch_size}")
    return args


def data_overrides(args, split="TRAIN"):
    return [f"config.DATA.{split}.DATASET_NAMES=[fashion_mnist]", f"config.DATA.{split}.DATA_PATHS=[{args.data}]"]


def run(cmd, log: Path) -> None:
    started = time.time()
    with open(log, "a") as f:
        f.write(f"$ {' '.join(map(str, cmd))}\n")
        f.flush()
        proc = subprocess.run([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, cwd=log.parent)
    if proc.returncode != 0:
        raise SystemExit(f"failed (exit {proc.returncode}) after {time.time() - started:.0f} s; see {log}")


def pretrain(args, name: str, overrides, out: Path) -> Path:
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / "model_final_checkpoint_phase0.torch"
    if not final.exists():
        batch = next((int(o.split("=")[1]) for o in overrides if "BATCHSIZE_PER_REPLICA" in o), args.batch_size)
        images = args.images - args.images % batch
        lr = [] if any("param_schedulers" in o for o in overrides) else lr_overrides(BASE_LR * batch / BASE_BATCH)
        cmd = [sys.executable, LAUNCHER, "config=pretrain/aasae/quickstart", *data_overrides(args),
               f"config.DATA.TRAIN.DATA_LIMIT={images}", f"config.DATA.TRAIN.BATCHSIZE_PER_REPLICA={batch}",
               "config.OPTIMIZER.num_epochs=1", "config.CHECKPOINT.CHECKPOINT_ITER_FREQUENCY=50",
               "config.AASAE.METRICS.IMAGE_FREQUENCY=0", f"config.CHECKPOINT.DIR={folder}", *lr, *overrides]
        started = time.time()
        run(cmd, folder / "run.log")
        (folder / "pretrain_seconds.txt").write_text(f"{time.time() - started:.0f}\n")
    return final


def evaluate(args, name: str, out: Path, checkpoint: Path = None) -> dict:
    result = out / f"{name}.eval.json"
    if not result.exists():
        source = ["--checkpoint", checkpoint] if checkpoint else ["--random-init"]
        cmd = [sys.executable, EVALUATE, *source, "--data", f"fashion_mnist:{args.data}", "--output", result,
               f"config.DATA.TRAIN.DATA_LIMIT={args.fit}", f"config.CHECKPOINT.DIR={out / 'eval'}"]
        run(cmd, out / "eval.log")
    return json.loads(result.read_text())


def pixel_baseline(args, out: Path) -> dict:
    """Linear probe and kNN on the flattened normalised target images (what the trunk sees at test time)."""
    result = out / "raw_pixels.eval.json"
    if result.exists():
        return json.loads(result.read_text())
    import torch

    import vissl_aasae  # noqa: F401
    from vissl_aasae.evaluation.features import split_loader
    from vissl_aasae.evaluation.frozen_trunk import eval_settings
    from vissl_aasae.evaluation.knn import knn_accuracy
    from vissl_aasae.evaluation.linear_probe import linear_probe_accuracy
    from vissl_aasae.launcher import compose

    _, config = compose(["config=benchmark/aasae/knn/quickstart", *data_overrides(args, "TRAIN"),
                         *data_overrides(args, "TEST"), f"config.DATA.TRAIN.DATA_LIMIT={args.fit}",
                         f"config.CHECKPOINT.DIR={out / 'eval'}"])
    started = time.time()

    def pixels(split):
        xs, ys = [], []
        for images, labels in split_loader(config, split):
            xs.append(images.flatten(1))
            ys.append(labels)
        return torch.cat(xs), torch.cat(ys).long()

    train_x, train_y = pixels("TRAIN")
    test_x, test_y = pixels("TEST")
    results = {"feature": "pixels", "feature_dim": int(train_x.shape[1]), "n_train": len(train_y), "n_test": len(test_y)}
    results.update({f"linear_{k}": v for k, v in linear_probe_accuracy(
        train_x, train_y, test_x, test_y, eval_settings(config)["LINEAR_PROBE"]).items()})
    nn_cfg = config.NEAREST_NEIGHBOR
    results.update({f"knn_{k}": v for k, v in knn_accuracy(
        train_x, train_y, test_x, test_y, k=int(nn_cfg.TOPK), temperature=float(nn_cfg.SIGMA),
        normalize=bool(nn_cfg.L2_NORM_FEATS)).items()})
    results["seconds"] = round(time.time() - started, 1)
    result.write_text(json.dumps(results, indent=1))
    return results


def view_similarity(args, name: str, out: Path) -> dict:
    png = out / f"fig5_{name}.png"
    log = out / name / "view_similarity.txt"
    if not png.exists():
        cmd = [sys.executable, SIMILARITY, "--checkpoint", out / name, "--data", args.data,
               "--data-format", "fashion_mnist", "--examples", 10, "--views", 5, "--output", png]
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=out)
        if proc.returncode != 0:
            raise SystemExit(f"view similarity of {name} failed:\n{proc.stderr[-2000:]}")
        log.write_text(proc.stdout)
    means = {}
    for line in log.read_text().splitlines():
        if "mean cosine similarity:" in line:
            means[line.split("-example")[0]] = float(line.rsplit(":", 1)[1])
    return {"figure": png.name, "same_example_cos": means.get("same"), "different_example_cos": means.get("different"),
            "summary": f"same-example mean cosine similarity {means.get('same')}, different-example {means.get('different')}"}


def row(name: str, r: dict, extra: str = "") -> str:
    return f"| {name} | {r['linear_top1']:.2f} | {r['knn_top1']:.2f} | {extra} |"


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    lines = [f"Fashion-MNIST, ResNet-18 (CIFAR stem, 32 px), {args.images} images seen in pretraining, "
             f"batch {args.batch_size}; probe fitted on {args.fit} train images, top-1 % on the 10000 test images.", ""]

    def save():
        results_file.write_text(json.dumps(results, indent=1, sort_keys=True))

    if args.sweep == "table":
        lines += ["| model | linear top-1 | kNN top-1 | pretraining |", "|---|---|---|---|"]
        for variant in args.variants.split(","):
            ckpt = pretrain(args, variant, [f"+config/pretrain/aasae/variant={variant}"], out)
            results[variant] = evaluate(args, variant, out, ckpt)
            seconds = (out / variant / "pretrain_seconds.txt").read_text().strip() if (out / variant / "pretrain_seconds.txt").exists() else "?"
            results[variant]["pretrain_seconds"] = seconds
            save()
            lines.append(row(variant.upper(), results[variant], f"{seconds} s"))
        if not args.no_baselines:
            results["random_init"] = evaluate(args, "random_init", out)
            results["raw_pixels"] = pixel_baseline(args, out)
            save()
            lines.append(row("random-init trunk", results["random_init"], "none"))
            lines.append(row("raw pixels (3072-d)", results["raw_pixels"], "none"))
        if not args.no_figures:
            for variant in ("aasae", "vae"):
                if (out / variant / "model_final_checkpoint_phase0.torch").exists():
                    results[f"fig5_{variant}"] = view_similarity(args, variant, out)
                    save()
                    lines.append(f"\nFig. 5 ({variant}): {results[f'fig5_{variant}']['figure']}: "
                                 f"{results[f'fig5_{variant}']['summary']}")
    else:
        for sweep in (SWEEPS if args.sweep == "all" else [args.sweep]):
            lines += ["", f"Sweep {sweep} (AASAE):", "", "| setting | linear top-1 | kNN top-1 | pretraining |", "|---|---|---|---|"]
            for name, overrides in SWEEPS[sweep].items():
                if args.points is not None and name not in args.points:
                    continue
                base = is_base_point(sweep, name, args.batch_size)
                key = "aasae" if base else f"sweep_{name}"
                ckpt = pretrain(args, key, ["+config/pretrain/aasae/variant=aasae", *([] if base else overrides)], out)
                results[key] = results.get(key, {}) | evaluate(args, key, out, ckpt) | ({} if base else {"overrides": overrides})
                save()
                seconds = out / key / "pretrain_seconds.txt"
                lines.append(row(f"{name} (the AASAE row)" if base else name, results[key],
                                 seconds.read_text().strip() + " s" if seconds.exists() else ""))
    table = "\n".join(lines) + "\n"
    with open(out / "table.md", "a") as f:
        f.write(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
