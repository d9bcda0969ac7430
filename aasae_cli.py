"""The plugin's command line: one module, the same flag names everywhere, ``--help`` at once.

Console scripts (``pip install .`` or ``./setup.sh`` put them in the environment's ``bin``):

==========================  =================================================================
``aasae-train``             VISSL's launcher with the plugin (``config=... overrides``)
``aasae-eval``              linear probe and kNN of a frozen trunk on CPU, one line + JSON
``aasae-export``            a checkpoint's trunk as torchvision or Detectron2 weights
``aasae-import``            the AAVAE authors' Lightning checkpoint as a VISSL checkpoint
``aasae-features``          trunk features of a data split as ``.npy``
``aasae-density``           importance-sampled log p(x) and bits/dim
``aasae-view-similarity``   the paper's Fig. 5 (cosine similarities of augmented views)
==========================  =================================================================

Shared flags: ``--checkpoint`` (the file read), ``--output`` (what is written), ``--data``
(``embedded`` | ``<format>:<path>`` | an image folder), ``--workers``, ``--device``; trailing
``config.KEY=VALUE`` arguments are Hydra overrides.  Older spellings (``--input``, ``--output-dir``,
``--num-workers``, ``--data-format``) are still accepted.  This module imports nothing heavy at the
top: VISSL and torch load only once the arguments are parsed, so ``--help`` answers at once and
shows every default.  Bad input ends with one ``error: ...`` line and exit status 2.
``tools/*.py`` and ``benchmarks/evaluate.py`` are thin wrappers over these functions.
"""

import argparse
import json
import os
import sys
from typing import Callable, List, Optional

EXIT_BAD_INPUT = 2
DATA_FORMATS = ("cifar10", "stl10", "stl10_unlabeled", "fashion_mnist", "npz")
DATA_HELP = (
    "embedded (the Fashion-MNIST subset shipped with the plugin) | <format>:<path> with format one of "
    f"{', '.join(DATA_FORMATS)} | an image folder in ImageFolder layout (<root>/<class>/<image>, as training reads it)"
)


# --------------------------------------------------------------------------- shared pieces
def parser_for(prog: str, description: str, epilog: str = None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )


def add_checkpoint(parser, required=True, help="a VISSL checkpoint of this plugin (file, or its run folder)"):
    parser.add_argument("--checkpoint", "--input", dest="checkpoint", required=required, help=help)


def add_output(parser, required=False, help="what to write"):
    parser.add_argument("--output", "--output-dir", dest="output", required=required, help=help)


def add_workers(parser, default=0):
    parser.add_argument(
        "--workers",
        "--num-workers",
        dest="workers",
        type=int,
        default=default,
        help="DataLoader worker processes (0: load in this process)",
    )


def add_device(parser):
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where the model runs")


def add_data(parser, default="embedded"):
    parser.add_argument("--data", default=default, help=DATA_HELP)
    parser.add_argument("--data-format", default=None, help=argparse.SUPPRESS)  # older: --data PATH --data-format F


def add_overrides(parser, nargs="*"):
    parser.add_argument("overrides", nargs=nargs, help="Hydra overrides: config=NAME, config.KEY=VALUE")


def split_data(spec: str, data_format: Optional[str] = None):
    """(format or None, path) of a --data value: ``embedded``, ``<format>:<path>`` or a folder."""
    if data_format:
        return data_format, spec
    if spec == "embedded":
        return "npz", "embedded"
    fmt, sep, path = spec.partition(":")
    if sep and fmt in DATA_FORMATS:
        if not path:
            raise ValueError(f"--data {spec!r}: no path after '{fmt}:'")
        return fmt, path
    return None, spec


def run(body: Callable[[], int]) -> int:
    """Run a command body; a bad input (ValueError, FileNotFoundError) is one ``error:`` line, exit 2."""
    try:
        return body()
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {' '.join(str(err).split()) if chr(10) not in str(err)[:300] else err}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _argv(argv):
    return list(sys.argv[1:] if argv is None else argv)


# --------------------------------------------------------------------------- aasae-train
TRAIN_HELP = """usage: aasae-train config=NAME [config.KEY=VALUE ...] [node_id=N]

VISSL's run_distributed_engines with the plugin loaded in every process. NAME is a Hydra config,
e.g. pretrain/aasae/quickstart (2 epochs on the embedded images, CPU, minutes),
pretrain/aasae/{cifar10,stl10,imagenet}, benchmark/aasae/{linear,knn,semi_supervised}/...
Mix-ins: +config/pretrain/aasae/variant={aasae,ae,aaae,vae}, +config/pretrain/aasae/models=resnet50.
The console shows a short header, progress and the summary; the full config and VISSL's log go to
<CHECKPOINT.DIR>/log.txt (config.VERBOSE=True prints them too). Exit status: 0 done, 2 bad input
(one line), 3 diverged, 130 interrupted. See README.md."""


def train_main(argv: List[str] = None) -> int:
    argv = _argv(argv)
    if any(a in ("-h", "--help") for a in argv):
        print(TRAIN_HELP)
        return 0
    from vissl_aasae.launcher import main

    return main(argv)


# --------------------------------------------------------------------------- aasae-eval
def eval_main(argv: List[str] = None) -> int:
    parser = parser_for(
        "aasae-eval",
        "Linear probe and kNN of a frozen AASAE trunk on CPU: one line and a JSON file.",
        epilog="Further arguments are Hydra overrides of the config, e.g. config.NEAREST_NEIGHBOR.TOPK=200",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", "--input", dest="checkpoint", help="a VISSL checkpoint of this plugin")
    source.add_argument("--random-init", action="store_true", help="evaluate the randomly initialised trunk")
    parser.add_argument("--config", default="benchmark/aasae/knn/quickstart", help="evaluation config")
    add_data(parser, default=None)
    add_output(parser, help="JSON file for the results (default: in the config's CHECKPOINT.DIR)")
    parser.add_argument("--verbose", action="store_true", help="log VISSL's progress")
    args, overrides = parser.parse_known_args(_argv(argv))

    def body():
        import logging

        from vissl_aasae.config_check import ConfigError
        from vissl_aasae.evaluation.frozen_trunk import (
            data_overrides,
            evaluate_frozen_trunk,
            save_results,
            summary_line,
        )
        from vissl_aasae.launcher import compose

        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
        show_progress()
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"unknown arguments {bad} (Hydra overrides look like config.KEY=VALUE)")
        full = [f"config={args.config}", "config.MACHINE.DEVICE=cpu", "config.DISTRIBUTED.BACKEND=gloo"]
        if args.data:
            fmt, path = split_data(args.data, args.data_format)
            full += data_overrides(fmt, path, f"--data {args.data!r}")
        if args.checkpoint:
            if not os.path.isfile(args.checkpoint):
                raise ConfigError(f"--checkpoint {args.checkpoint!r} does not exist")
            full.append(f"config.MODEL.WEIGHTS_INIT.PARAMS_FILE={os.path.abspath(args.checkpoint)}")
        _, config = compose(full + overrides)
        results = evaluate_frozen_trunk(config, random_init=args.random_init)
        results["config"], results["data"] = args.config, args.data or "config"
        output = args.output
        if output is None:
            stem = os.path.splitext(config.AASAE_EVAL.get("RESULTS_FILE") or "feature_eval.json")[0]
            output = os.path.join(config.CHECKPOINT.DIR, stem + ("_random_init" if args.random_init else "") + ".json")
        save_results(results, output)
        print(summary_line(results) + f"  -> {output}", flush=True)
        return 0

    return run(body)


def show_progress() -> None:
    """Progress lines of long passes (feature extraction, density) on stderr."""
    import logging

    logger = logging.getLogger("vissl_aasae.progress")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


# --------------------------------------------------------------------------- aasae-export
def export_main(argv: List[str] = None) -> int:
    parser = parser_for(
        "aasae-export",
        "Export the trunk of a VISSL checkpoint to torchvision (.pth + .json) or Detectron2 (.pkl) weights.",
        epilog="A 7x7 stem is stl10 (no max-pool) or imagenet: read from the run's train_config.yaml, else --stem.",
    )
    add_checkpoint(parser, help="VISSL checkpoint (.torch) or trunk state dict")
    add_output(parser, required=True, help="file to write (.pth for torchvision, .pkl for detectron2)")
    parser.add_argument("--format", default="torchvision", choices=("torchvision", "detectron2"))
    parser.add_argument("--stem", choices=("cifar", "stl10", "imagenet"), default=None, help="when not recorded")
    args = parser.parse_args(_argv(argv))

    def body():
        from vissl_aasae.interop.export import export_checkpoint

        summary = export_checkpoint(args.checkpoint, args.output, fmt=args.format, stem=args.stem)
        print(json.dumps(summary, indent=2))
        return 0

    return run(body)


# --------------------------------------------------------------------------- aasae-import
def import_main(argv: List[str] = None) -> int:
    parser = parser_for(
        "aasae-import",
        "Import an AAVAE authors' PyTorch Lightning checkpoint into a VISSL checkpoint of this plugin.",
        epilog="The model is the config given (default: the one for the checkpoint's hyper_parameters.dataset) "
        "with the architecture in its hyper_parameters.",
    )
    add_checkpoint(parser, help="the authors' Lightning checkpoint (.ckpt)")
    add_output(parser, required=True, help="VISSL checkpoint to write (.torch)")
    parser.add_argument(
        "--decoder",
        default="require",
        choices=("require", "if_compatible", "skip"),
        help="when the decoder does not map: fail, keep a fresh one, or never import it",
    )
    add_overrides(parser)
    args = parser.parse_args(_argv(argv))

    def body():
        import warnings

        from vissl_aasae.interop.lightning_import import import_lightning_file

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = import_lightning_file(args.checkpoint, args.output, args.overrides, decoder=args.decoder)
        for warning in caught:
            print(f"warning: {warning.message}", file=sys.stderr)
        print(json.dumps(report, indent=2, default=str))
        return 0

    return run(body)


# --------------------------------------------------------------------------- aasae-features
def features_main(argv: List[str] = None) -> int:
    parser = parser_for(
        "aasae-features",
        "Trunk features of a data split as .npy (N x D float32, labels, indices), in data set order.",
        epilog="The data source, DATA_LIMIT and evaluation transform (AASAEViews' 'original' list) come from "
        "the config; a split without DATA_SOURCES reads DATA.TRAIN's sources.",
    )
    add_checkpoint(parser, required=False, help="VISSL checkpoint or trunk state dict; omit for a random init")
    add_output(parser, required=True, help="folder for <split>_{features,labels,indices}.npy and .json")
    parser.add_argument("--split", default="test", choices=("train", "test", "TRAIN", "TEST"))
    add_device(parser)
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    add_workers(parser)
    parser.add_argument("--feature", default="flatten", help="trunk feature: flatten (pooled h), res5, res4...")
    add_overrides(parser, nargs="+")
    args = parser.parse_args(_argv(argv))

    def body():
        from vissl_aasae.interop.feature_extraction import extract_features
        from vissl_aasae.launcher import compose

        show_progress()
        _, config = compose(args.overrides)
        summary = extract_features(
            config,
            args.checkpoint,
            args.output,
            split=args.split,
            device=args.device,
            batch_size=args.batch_size,
            num_workers=args.workers,
            feature=args.feature,
        )
        print(json.dumps({k: summary[k] for k in ("split", "feature", "shape", "device", "files")}, indent=2))
        return 0

    return run(body)


# --------------------------------------------------------------------------- aasae-density / view-similarity
def _visual_arguments(parser) -> None:
    add_checkpoint(parser, help="checkpoint file or checkpoint folder")
    parser.add_argument(
        "--config", default=None, help="training config name; default: the checkpoint folder's train_config.yaml"
    )
    add_data(parser)
    parser.add_argument("--split", default="test", choices=("train", "test"), help="split of array data")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling and augmentations")
    add_device(parser)
    add_overrides(parser)


def _model_and_images(args):
    from vissl_aasae.visualize.checkpoint import find_checkpoint, load_model, load_run_config
    from vissl_aasae.visualize.data import open_images

    checkpoint = find_checkpoint(args.checkpoint)
    config = load_run_config(checkpoint, args.config, args.overrides)
    fmt, path = split_data(args.data, args.data_format)
    images = open_images(config, path, None if path == "embedded" and fmt == "npz" else fmt, args.split)
    model = load_model(config, checkpoint, args.device)
    print(f"checkpoint {checkpoint}, data {images.name}: {len(images)} images", flush=True)
    return checkpoint, config, images, model


def _warn_skipped(skipped) -> None:
    if skipped:
        shown = "; ".join(skipped[:5]) + (f"; ... and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        print(f"warning: {len(skipped)} unreadable images skipped: {shown}", file=sys.stderr, flush=True)


def view_similarity_main(argv: List[str] = None) -> int:
    parser = parser_for(
        "aasae-view-similarity",
        "The paper's Fig. 5: cosine similarities of the representations of V augmented views of E examples, "
        "as a PNG, with the same- and different-example means.",
    )
    _visual_arguments(parser)
    parser.add_argument("--examples", type=int, default=10, help="E, examples drawn (seeded)")
    parser.add_argument("--views", type=int, default=5, help="V, augmented views of each")
    parser.add_argument(
        "--representation", default="h", choices=("h", "mu"), help="h: the trunk's pooled feature; mu: posterior mean"
    )
    add_output(parser, help="PNG path (default: <checkpoint folder>/view_similarity.png)")
    args = parser.parse_args(_argv(argv))

    def body():
        from pathlib import Path

        from vissl_aasae.visualize.data import view_transform
        from vissl_aasae.visualize.view_similarity import plot, view_similarity

        checkpoint, config, images, model = _model_and_images(args)
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
        output = Path(args.output) if args.output else checkpoint.parent / "view_similarity.png"
        plot(result, output, title=f"{checkpoint.parent.name}/{checkpoint.name}, representation {args.representation}")
        print(f"same-example mean cosine similarity: {result.same_mean:.4f}")
        print(f"different-example mean cosine similarity: {result.different_mean:.4f}")
        print(f"figure ({args.examples} examples x {args.views} views): {output}", flush=True)
        return 0

    return run(body)


def density_main(argv: List[str] = None) -> int:
    parser = parser_for(
        "aasae-density",
        "Importance-sampled log p(x) and bits/dim of a checkpoint on a data split. The defaults (k = 100 "
        "samples, every test image) cost about k forward passes of the whole split: ~1 h for the quickstart "
        "model on 2 CPU cores; --limit and -k make it minutes.",
    )
    _visual_arguments(parser)
    parser.add_argument("--num-samples", "-k", type=int, default=100, help="k importance samples per image")
    parser.add_argument("--batch-size", type=int, default=None, help="images per forward pass (default ~512/k)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N images only (default all)")
    add_workers(parser)
    add_output(parser, help="also write the result as JSON to this path")
    args = parser.parse_args(_argv(argv))

    def body():
        from pathlib import Path

        from vissl_aasae.visualize.data import view_transform
        from vissl_aasae.visualize.density import evaluate_density

        if args.num_samples < 1:
            raise ValueError(f"--num-samples {args.num_samples} must be a positive integer")
        _, config, images, model = _model_and_images(args)
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
        if args.output:
            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
            Path(args.output).write_text(json.dumps(vars(result) | {"data": images.name}) + "\n")
        return 0

    return run(body)
