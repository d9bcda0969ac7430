#!/usr/bin/env python
"""Evaluate a pretrained AASAE trunk on CPU: linear probe and kNN on frozen features, one line + JSON.

    python benchmarks/evaluate.py --checkpoint checkpoints/quickstart/checkpoint.torch
    python benchmarks/evaluate.py --random-init                       # the same trunk, untrained
    python benchmarks/evaluate.py --checkpoint ... --data fashion_mnist:/usr/share/datasets/fashion-mnist

Prints e.g. ``linear top-1 = 78.40%  knn(k=20) top-1 = 75.10%  (n_train=5000, n_test=1000, checkpoint=...)``
and writes the numbers as JSON (``--output``; default ``CHECKPOINT.DIR`` of the config /
``quickstart_eval[_random_init].json``).

What runs: the config ``benchmark/aasae/knn/quickstart`` (``--config`` for another one, any Hydra
overrides after the options) is composed as the launcher composes it; VISSL's ``build_model`` builds
the trunk, whose weights come from the checkpoint through VISSL's loader after a key-by-key check
(a trunk that does not match fails naming the keys); features ``h`` (pooled last stage) of the train
split (default: the 5000 embedded Fashion-MNIST train images) and the test split (the 1000 embedded
test images) are extracted once with the test transform.  Then

- linear: ``nn.Linear`` on the standardised features, SGD Nesterov 0.9, LR 0.1 x batch/256 with cosine
  decay, batch 256, 90 epochs, no weight decay (``AASAE_EVAL.LINEAR_PROBE``);
- kNN: cosine similarity, k = ``NEAREST_NEIGHBOR.TOPK`` (20), votes weighted by exp(sim / 0.07).

``--data`` takes ``embedded`` (default), ``fashion_mnist:<folder of IDX .gz files>``, ``npz:<file>``,
``cifar10:<folder>`` or ``stl10:<folder>`` (the ``aasae_array`` formats; train split fits, test split
is reported).
"""
import argparse
import logging
import os
import sys

import vissl_aasae  # noqa: F401  (patches and registrations)
from vissl_aasae.config_check import ConfigError, check_npz_file
from vissl_aasae.evaluation.frozen_trunk import evaluate_frozen_trunk, save_results, summary_line
from vissl_aasae.launcher import compose

DEFAULT_CONFIG = "benchmark/aasae/knn/quickstart"
DATA_FORMATS = ("embedded", "fashion_mnist", "npz", "cifar10", "stl10")


def data_overrides(spec: str):
    """Hydra overrides that point both splits of the config at ``spec`` (``format:path`` or ``embedded``)."""
    fmt, _, path = spec.partition(":")
    if fmt not in DATA_FORMATS or (fmt != "embedded" and not path):
        raise ConfigError(
            f"--data {spec!r}: expected embedded or <format>:<path> with format in {list(DATA_FORMATS[1:])}"
        )
    name, path = ("npz", "embedded") if fmt == "embedded" else (fmt, os.path.abspath(os.path.expanduser(path)))
    if path != "embedded" and not os.path.exists(path):
        raise ConfigError(f"--data {spec!r}: {path} does not exist")
    if name == "npz":
        check_npz_file(path, f"--data {spec!r}")
    else:
        from vissl_aasae.data.aasae_array import load_arrays

        for split in ("train", "test"):  # a clear line now rather than a traceback in the data loader
            try:
                load_arrays(name, path, split)
            except (ValueError, OSError, EOFError, KeyError) as err:
                raise ConfigError(f"--data {spec!r}: {' '.join(str(err).split())}") from None
    overrides = []
    for split in ("TRAIN", "TEST"):
        overrides += [
            f"config.DATA.{split}.DATA_SOURCES=[aasae_array]",
            f"config.DATA.{split}.LABEL_SOURCES=[torchvision_dataset]",
            f"config.DATA.{split}.DATASET_NAMES=[{name}]",
            f"config.DATA.{split}.DATA_PATHS=[{path}]",
        ]
    return overrides


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Linear probe and kNN of a frozen AASAE trunk on CPU.",
        epilog="Further arguments are Hydra overrides of the config, e.g. config.NEAREST_NEIGHBOR.TOPK=200",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a VISSL checkpoint of this plugin (model_*.torch, checkpoint.torch)")
    source.add_argument("--random-init", action="store_true", help="evaluate the randomly initialised trunk")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"evaluation config (default {DEFAULT_CONFIG})")
    parser.add_argument(
        "--data", default=None,
        help="embedded (default) | fashion_mnist:<folder> | npz:<file> | cifar10:<folder> | stl10:<folder>",
    )
    parser.add_argument("--output", default=None, help="JSON file for the results")
    parser.add_argument("--verbose", action="store_true", help="log VISSL's progress")
    return parser.parse_known_args(argv)


def main(argv=None) -> int:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"unknown arguments {bad} (Hydra overrides look like config.KEY=VALUE)")
        full = [f"config={args.config}", "config.MACHINE.DEVICE=cpu", "config.DISTRIBUTED.BACKEND=gloo"]
        if args.data:
            full += data_overrides(args.data)
        if args.checkpoint:
            if not os.path.isfile(args.checkpoint):
                raise ConfigError(f"--checkpoint {args.checkpoint!r} does not exist")
            full.append(f"config.MODEL.WEIGHTS_INIT.PARAMS_FILE={os.path.abspath(args.checkpoint)}")
        _, config = compose(full + overrides)
        results = evaluate_frozen_trunk(config, random_init=args.random_init)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    results["config"] = args.config
    results["data"] = args.data or "config"
    output = args.output
    if output is None:
        stem = os.path.splitext(config.AASAE_EVAL.get("RESULTS_FILE") or "feature_eval.json")[0]
        output = os.path.join(config.CHECKPOINT.DIR, stem + ("_random_init" if args.random_init else "") + ".json")
    save_results(results, output)
    print(summary_line(results) + f"  -> {output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
