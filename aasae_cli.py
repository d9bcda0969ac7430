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


# the files a training run keeps in its folder: no tool overwrites them
RUN_RECORD = (
    "train_config.yaml",
    "checkpoint.torch",
    "aasae_run.lock",
    "log.txt",
    "metrics.json",
    "aasae_metrics.json",
)


def _run_folder(folder: str) -> bool:
    """Whether ``folder`` holds a training run: its config record, its lock or its checkpoints."""
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    return any(n in RUN_RECORD[:3] or (n.startswith("model_") and n.endswith(".torch")) for n in names)


def parent_of(path: str) -> str:
    return os.path.dirname(os.path.abspath(path))


def _writable(folder: str) -> bool:
    """Whether a file can be created in ``folder`` (tried: permission bits say nothing to root or on a
    read-only file system); the probe file is removed at once."""
    import tempfile

    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        fd, probe = tempfile.mkstemp(prefix=".aasae_write_check", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.remove(probe)
    return True


def check_output(
    path: str, what: str = "--output", folder: bool = False, reads=(), create_parents: bool = False
) -> str:
    """The absolute path of an output, checked before any work, or ValueError naming ``what`` and the path.

    A file output must not be an existing folder, an input of the command (``reads``) or a file of a
    training run's record (its config, checkpoints, lock or logs in a folder that holds a run); its
    folder must exist (unless ``create_parents``: a default path, created later) and be writable.  A
    folder output (``folder``) must not be a file; it is created later, inside a folder that exists
    (every missing level for ``create_parents``) and is writable.  Every tool checks its outputs
    with this, so that a wrong path is one line before the work, not a traceback after it."""
    given = str(path)
    path = os.path.abspath(os.path.expanduser(given))
    label = f"{what} {given!r}"
    if folder:
        if os.path.exists(path) and not os.path.isdir(path):
            raise ValueError(f"{label} is a file; give a folder (it is created if missing)")
        if os.path.isdir(path):
            if not _writable(path):
                raise ValueError(f"{label}: folder {path!r} is not writable")
            return path
    else:
        if os.path.isdir(path):
            raise ValueError(f"{label} is a folder; give a file name (in it or elsewhere)")
        for item in reads:
            if item and os.path.exists(path) and os.path.exists(str(item)) and os.path.samefile(str(item), path):
                raise ValueError(f"{label} is the file this command reads; give another file name")
        name = os.path.basename(path)
        if os.path.exists(path) and (name in RUN_RECORD or name.endswith(".torch")) and _run_folder(parent_of(path)):
            raise ValueError(f"{label} is part of the training run in {parent_of(path)!r}; it is never overwritten")
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        if not create_parents:
            if os.path.exists(parent):
                raise ValueError(f"{label}: {parent!r} is a file, not a folder")
            raise ValueError(f"{label}: folder {parent!r} does not exist (create it first)")
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise ValueError(f"{label}: {parent!r} is a file, not a folder")
    if not _writable(parent):
        raise ValueError(f"{label}: folder {parent!r} is not writable")
    return path


def checkpoint_file(path: str, what: str = "--checkpoint") -> str:
    """A checkpoint file from a file or a run folder, as every tool resolves it
    (:func:`vissl_aasae.checkpoints.resolve`: the folder's ``checkpoint.torch``, else its newest
    ``model_*phase*.torch``)."""
    from vissl_aasae.checkpoints import resolve

    try:
        return os.path.abspath(resolve(path))
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{what}: {err}") from None


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
    if not any(a.startswith("config=") for a in argv):  # Hydra would list VISSL's one test config
        from vissl_aasae.launcher import _config_listing

        print(TRAIN_HELP.splitlines()[0], file=sys.stderr)
        print(
            f"error: no config given: add config=NAME, e.g. config=pretrain/aasae/quickstart. {_config_listing()}",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_BAD_INPUT
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
    source.add_argument(
        "--checkpoint",
        "--input",
        dest="checkpoint",
        help="a VISSL checkpoint of this plugin, its run folder, or a trunk state dict (model_zoo/*.pth, aasae-export)",
    )
    source.add_argument("--random-init", action="store_true", help="evaluate the randomly initialised trunk")
    parser.add_argument("--config", default="benchmark/aasae/knn/quickstart", help="evaluation config")
    add_data(parser, default=None)
    add_output(parser, help="JSON file for the results (default: in the config's CHECKPOINT.DIR)")
    parser.add_argument("--verbose", action="store_true", help="log VISSL's progress")
    args, overrides = parser.parse_known_args(_argv(argv))

    def body():
        import logging

        from vissl_aasae.errors import ConfigError

        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"unknown arguments {bad} (Hydra overrides look like config.KEY=VALUE)")
        checkpoint = checkpoint_file(args.checkpoint) if args.checkpoint else None
        output = check_output(args.output, reads=[checkpoint]) if args.output else None

        from vissl_aasae.evaluation.frozen_trunk import (
            data_overrides,
            evaluate_frozen_trunk,
            save_results,
            summary_line,
        )
        from vissl_aasae.launcher import compose

        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
        full = [f"config={args.config}", "config.MACHINE.DEVICE=cpu", "config.DISTRIBUTED.BACKEND=gloo"]
        if args.data:
            fmt, path = split_data(args.data, args.data_format)
            full += data_overrides(fmt, path, f"--data {args.data!r}")
        if checkpoint:
            full.append(f"config.MODEL.WEIGHTS_INIT.PARAMS_FILE={checkpoint}")
        _, config = compose(full + overrides)
        if output is None:  # the default: a file in the config's CHECKPOINT.DIR (created)
            stem = os.path.splitext(config.AASAE_EVAL.get("RESULTS_FILE") or "feature_eval.json")[0]
            default = os.path.join(config.CHECKPOINT.DIR, stem + ("_random_init" if args.random_init else "") + ".json")
            output = check_output(default, "the results file (default; --output sets it)", create_parents=True)
        results = evaluate_frozen_trunk(config, random_init=args.random_init, progress=True)
        results["config"], results["data"] = args.config, args.data or "config"
        save_results(results, output)
        print(summary_line(results) + f"  -> {output}", flush=True)
        return 0

    return run(body)


# --------------------------------------------------------------------------- aasae-export
def export_main(argv: List[str] = None) -> int:
    parser = parser_for(
        "aasae-export",
        "Export the trunk of a VISSL checkpoint to torchvision (.pth + .json) or Detectron2 (.pkl) weights.",
        epilog="A 7x7 stem is stl10 (no max-pool) or imagenet: read from the run's train_config.yaml, else --stem.",
    )
    add_checkpoint(parser, help="VISSL checkpoint (.torch, or its run folder) or trunk state dict")
    add_output(parser, required=True, help="file to write (.pth for torchvision, .pkl for detectron2)")
    parser.add_argument("--format", default="torchvision", choices=("torchvision", "detectron2"))
    parser.add_argument("--stem", choices=("cifar", "stl10", "imagenet"), default=None, help="when not recorded")
    args = parser.parse_args(_argv(argv))

    def body():
        checkpoint = checkpoint_file(args.checkpoint)
        output = check_output(args.output, reads=[checkpoint])
        if args.format == "torchvision":  # the .json beside it, how to build the model
            check_output(args.output + ".json", reads=[checkpoint])

        from vissl_aasae.interop.export import export_checkpoint

        summary = export_checkpoint(checkpoint, output, fmt=args.format, stem=args.stem)
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

        check_output(args.output, reads=[args.checkpoint])

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
    add_checkpoint(
        parser, required=False, help="VISSL checkpoint (file or run folder) or trunk state dict; omit for a random init"
    )
    add_output(parser, required=True, help="folder for <split>_{features,labels,indices}.npy and .json")
    parser.add_argument("--split", default="test", choices=("train", "test", "TRAIN", "TEST"))
    add_device(parser)
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    add_workers(parser)
    parser.add_argument("--feature", default="flatten", help="trunk feature: flatten (pooled h), res5, res4...")
    add_overrides(parser, nargs="+")
    args = parser.parse_args(_argv(argv))

    def body():
        checkpoint = checkpoint_file(args.checkpoint) if args.checkpoint else None
        output = check_output(args.output, folder=True)

        from vissl_aasae.interop.feature_extraction import extract_features
        from vissl_aasae.launcher import compose

        _, config = compose(args.overrides)
        summary = extract_features(
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


def _model_and_images(args, output_for=None):
    """(checkpoint, config, images, model, output): ``output_for(checkpoint)`` checks the output path
    before the config, the data and the model are read."""
    from pathlib import Path

    checkpoint = Path(checkpoint_file(args.checkpoint))
    output = output_for(checkpoint) if output_for else None

    from vissl_aasae.visualize.checkpoint import load_model, load_run_config
    from vissl_aasae.visualize.data import open_images

    config = load_run_config(checkpoint, args.config, args.overrides)
    fmt, path = split_data(args.data, args.data_format)
    images = open_images(config, path, None if path == "embedded" and fmt == "npz" else fmt, args.split)
    model = load_model(config, checkpoint, args.device)
    print(f"checkpoint {checkpoint}, data {images.name}: {len(images)} images", flush=True)
    return checkpoint, config, images, model, output


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
        if args.num_samples < 1:
            raise ValueError(f"--num-samples {args.num_samples} must be a positive integer")

        def result_file(checkpoint):
            return check_output(args.output, reads=[checkpoint]) if args.output else None

        _, config, images, model, output = _model_and_images(args, result_file)

        from vissl_aasae.checkpoints import atomic_write
        from vissl_aasae.visualize.data import view_transform
        from vissl_aasae.visualize.density import evaluate_density

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
            atomic_write(output, lambda f: f.write(text), mode="w")
        return 0

    return run(body)
