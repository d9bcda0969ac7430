"""The plugin's command line: the same flag names everywhere, ``--help`` at once.

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
``--num-workers``, ``--data-format``) are still accepted.  This module parses the arguments
(:mod:`.arguments`: the shared flags and the output checks) and imports nothing heavy: what each
command does is :mod:`.commands`, which loads the plugin, imported once the arguments are parsed, so
``--help`` answers at once and shows every default.  Bad input ends with one ``error: ...`` line and
exit status 2.  ``tools/*.py`` and ``benchmarks/evaluate.py`` are thin wrappers over these functions.
"""

import sys
from typing import Callable, List

from vissl_aasae.cli.arguments import (
    add_checkpoint,
    add_data,
    add_device,
    add_output,
    add_overrides,
    add_workers,
    parser_for,
)
from vissl_aasae.errors import EXIT_BAD_INPUT
from vissl_aasae.usage import train_usage


def _commands():
    """:mod:`vissl_aasae.cli.commands`, which loads torch, VISSL and the plugin (seconds)."""
    from vissl_aasae.cli import commands  # deferred: --help and bad arguments answer at once, without torch

    return commands


def run(command: Callable) -> int:
    """``command(commands)`` with :mod:`.commands` loaded; a bad input (ValueError, FileNotFoundError) is
    one ``error:`` line, exit 2."""
    try:
        return command(_commands())
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {' '.join(str(err).split()) if chr(10) not in str(err)[:300] else err}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _argv(argv):
    return list(sys.argv[1:] if argv is None else argv)


# --------------------------------------------------------------------------- aasae-train
def train_main(argv: List[str] = None) -> int:
    """The launcher (:func:`vissl_aasae.launcher.main`, which owns the usage and the ``config=`` check)."""
    argv = _argv(argv)
    if any(a in ("-h", "--help") for a in argv):
        print(train_usage("aasae-train"))
        return 0
    return _commands().train(argv)


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
    args.overrides = overrides
    return run(lambda commands: commands.evaluate(args))


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
    return run(lambda commands: commands.export_trunk(args))


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
    return run(lambda commands: commands.import_lightning(args))


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
    return run(lambda commands: commands.extract(args))


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
    return run(lambda commands: commands.view_similarity_figure(args))


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
    return run(lambda commands: commands.density(args))
