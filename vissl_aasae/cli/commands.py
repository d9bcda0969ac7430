"""What each command of the command line does, once :mod:`vissl_aasae.cli` has parsed its arguments.

Each function takes the parsed arguments, checks its outputs before any work (:func:`check_output`),
and calls the plugin through its modules (``frozen_trunk.evaluate_frozen_trunk``, ...), looked up when
the command runs.  Importing this module loads torch, VISSL and the plugin.
"""

import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import List

from vissl_aasae import checkpoints, config_compose, launcher
from vissl_aasae.cli.arguments import check_output, split_data
from vissl_aasae.errors import ConfigError
from vissl_aasae.evaluation import frozen_trunk
from vissl_aasae.interop import export, feature_extraction, lightning_import
from vissl_aasae.visualize import checkpoint as visual_checkpoint
from vissl_aasae.visualize.data import open_images, view_transform
from vissl_aasae.visualize.density import evaluate_density
from vissl_aasae.visualize.view_similarity import plot, view_similarity


def checkpoint_file(path: str, what: str = "--checkpoint") -> str:
    """A checkpoint file from a file or a run folder, as every tool resolves it
    (:func:`vissl_aasae.checkpoints.resolve`: the folder's ``checkpoint.torch``, else its newest
    ``model_*phase*.torch``)."""
    try:
        return os.path.abspath(checkpoints.resolve(path))
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{what}: {err}") from None


def train(argv: List[str]) -> int:
    return launcher.main(argv, prog="aasae-train")


def evaluate(args) -> int:
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise ConfigError(f"unknown arguments {bad} (Hydra overrides look like config.KEY=VALUE)")
    checkpoint = checkpoint_file(args.checkpoint) if args.checkpoint else None
    output = check_output(args.output, reads=[checkpoint]) if args.output else None
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    full = [f"config={args.config}", "config.MACHINE.DEVICE=cpu", "config.DISTRIBUTED.BACKEND=gloo"]
    if args.data:
        fmt, path = split_data(args.data, args.data_format)
        full += frozen_trunk.data_overrides(fmt, path, f"--data {args.data!r}")
    if checkpoint:
        full.append(f"config.MODEL.WEIGHTS_INIT.PARAMS_FILE={checkpoint}")
    _, config = config_compose.compose(full + args.overrides)
    if output is None:  # the default: a file in the config's CHECKPOINT.DIR (created)
        stem = os.path.splitext(config.AASAE_EVAL.get("RESULTS_FILE") or "feature_eval.json")[0]
        default = os.path.join(config.CHECKPOINT.DIR, stem + ("_random_init" if args.random_init else "") + ".json")
        output = check_output(default, "the results file (default; --output sets it)", create_parents=True)
    results = frozen_trunk.evaluate_frozen_trunk(config, random_init=args.random_init, progress=True)
    results["config"], results["data"] = args.config, args.data or "config"
    frozen_trunk.save_results(results, output)
    print(frozen_trunk.summary_line(results) + f"  -> {output}", flush=True)
    return 0


def export_trunk(args) -> int:
    checkpoint = checkpoint_file(args.checkpoint)
    output = check_output(args.output, reads=[checkpoint])
    if args.format == "torchvision":  # the .json beside it, how to build the model
        check_output(args.output + ".json", reads=[checkpoint])
    summary = export.export_checkpoint(checkpoint, output, fmt=args.format, stem=args.stem)
    print(json.dumps(summary, indent=2))
    return 0


def import_lightning(args) -> int:
    check_output(args.output, reads=[args.checkpoint])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = lightning_import.import_lightning_file(
            args.checkpoint, args.output, args.overrides, decoder=args.decoder
        )
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    print(json.dumps(report, indent=2, default=str))
    return 0


def extract(args) -> int:
    checkpoint = checkpoint_file(args.checkpoint) if args.checkpoint else None
    output = check_output(args.output, folder=True)
    _, config = config_compose.compose(args.overrides)
    summary = feature_extraction.extract_features(
        config,
        checkpoint,
        output,
        split=args.split,
        device=args.device,
        batch_size=args.batch_size,
        num_workers=args.workers,
        feature=args.feature,
        progress=True,
    )
    print(json.dumps({k: summary[k] for k in ("split", "feature", "shape", "device", "files")}, indent=2))
    return 0


def _model_and_images(args, output_for=None):
    """(checkpoint, config, images, model, output): ``output_for(checkpoint)`` checks the output path
    before the config, the data and the model are read."""
    checkpoint = Path(checkpoint_file(args.checkpoint))
    output = output_for(checkpoint) if output_for else None
    config = visual_checkpoint.load_run_config(checkpoint, args.config, args.overrides)
    fmt, path = split_data(args.data, args.data_format)
    images = open_images(config, path, None if path == "embedded" and fmt == "npz" else fmt, args.split)
    model = visual_checkpoint.load_model(config, checkpoint, args.device)
    print(f"checkpoint {checkpoint}, data {images.name}: {len(images)} images", flush=True)
    return checkpoint, config, images, model, output


def _warn_skipped(skipped) -> None:
    if skipped:
        shown = "; ".join(skipped[:5]) + (f"; ... and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        print(f"warning: {len(skipped)} unreadable images skipped: {shown}", file=sys.stderr, flush=True)


def view_similarity_figure(args) -> int:
    def figure(checkpoint):
        if args.output:
            return Path(check_output(args.output, reads=[checkpoint]))
        default = checkpoint.parent / "view_similarity.png"
        return Path(check_output(default, "the figure (default; --output sets it)", reads=[checkpoint]))

    checkpoint, config, images, model, output = _model_and_images(args, figure)
    result = view_similarity(
        model,
        images,
        view_transform(config, "augmented"),
        args.examples,
        args.views,
        args.seed,
        args.representation,
        device=args.device,
    )
    _warn_skipped(result.skipped)
    plot(result, output, title=f"{checkpoint.parent.name}/{checkpoint.name}, representation {args.representation}")
    print(f"same-example mean cosine similarity: {result.same_mean:.4f}")
    print(f"different-example mean cosine similarity: {result.different_mean:.4f}")
    print(f"figure ({args.examples} examples x {args.views} views): {output}", flush=True)
    return 0


def density(args) -> int:
    if args.num_samples < 1:
        raise ValueError(f"--num-samples {args.num_samples} must be a positive integer")

    def result_file(checkpoint):
        return check_output(args.output, reads=[checkpoint]) if args.output else None

    _, config, images, model, output = _model_and_images(args, result_file)
    result = evaluate_density(
        model,
        images,
        view_transform(config, "original"),
        args.num_samples,
        args.batch_size,
        args.limit,
        args.seed,
        args.device,
        args.workers,
    )
    _warn_skipped(result.skipped)
    print(result.line(), flush=True)
    if output:
        text = json.dumps(vars(result) | {"data": images.name}) + "\n"
        checkpoints.atomic_write(output, lambda f: f.write(text), mode="w")
    return 0
