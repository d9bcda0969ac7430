"""Evaluate a frozen trunk from its features: kNN and/or a linear probe, in one process.

Shared by the ``aasae_feature_eval`` engine (configs ``benchmark/aasae/knn/*`` run by the launcher)
and by ``benchmarks/evaluate.py`` (the CPU path).  The model comes from VISSL's ``build_model`` on
the config's ``MODEL`` (feature-extractor trunk, no head needed) and its trunk from
``MODEL.WEIGHTS_INIT`` through :mod:`vissl_aasae.evaluation.trunk_weights` (checked, then
VISSL's loader); features of ``DATA.TRAIN`` fit the classifiers, ``DATA.TEST`` is reported.

Settings: ``config.NEAREST_NEIGHBOR`` (VISSL's keys: ``TOPK``, ``SIGMA`` the vote temperature,
``L2_NORM_FEATS`` for cosine similarity) and ``config.AASAE_EVAL``: ``METHODS`` (``knn``,
``linear_probe``), ``LINEAR_PROBE`` (see :mod:`vissl_aasae.evaluation.linear_probe`),
``RESULTS_FILE`` (JSON written in ``CHECKPOINT.DIR`` unless absolute).
"""

import json
import logging
import os
import sys
import time
from typing import Dict

import torch
from vissl.models import build_model

from vissl_aasae.checkpoints import atomic_write
from vissl_aasae.config_check import check_npz_file
from vissl_aasae.data.aasae_array import FORMATS, load_arrays
from vissl_aasae.errors import ConfigError
from vissl_aasae.evaluation.features import extract_features, split_loader, trunk_feature_name
from vissl_aasae.evaluation.knn import knn_accuracy
from vissl_aasae.evaluation.linear_probe import linear_probe_accuracy, probe_settings
from vissl_aasae.evaluation.trunk_weights import load_trunk_weights
from vissl_aasae.progress import format_duration

METHODS = ("knn", "linear_probe")


def eval_settings(config) -> Dict:
    settings = dict(config.get("AASAE_EVAL") or {})
    methods = list(settings.get("METHODS") or ["knn"])
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"AASAE_EVAL.METHODS entry {m!r} is not a method; known: {list(METHODS)}")
    settings["METHODS"] = methods
    settings.setdefault("RESULTS_FILE", "feature_eval.json")
    settings["LINEAR_PROBE"] = dict(settings.get("LINEAR_PROBE") or {})
    return settings


def eval_device(config) -> torch.device:
    if config.MACHINE.DEVICE == "gpu":
        if not torch.cuda.is_available():
            raise ValueError("MACHINE.DEVICE=gpu but no CUDA device is available; set config.MACHINE.DEVICE=cpu")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def build_eval_model(config, random_init: bool = False):
    """VISSL's model for ``config.MODEL``; its trunk from ``MODEL.WEIGHTS_INIT.PARAMS_FILE`` unless ``random_init``."""
    torch.manual_seed(int(config.SEED_VALUE))
    model = build_model(config.MODEL, config.OPTIMIZER)
    if not random_init:
        if not config.MODEL.WEIGHTS_INIT.get("PARAMS_FILE"):
            raise ValueError("MODEL.WEIGHTS_INIT.PARAMS_FILE is empty: give a checkpoint (or ask for a random init)")
        load_trunk_weights(config, model)
    return model


def _stage(text: str, show: bool) -> None:
    """A progress line of the evaluation on stderr (only when ``show``)."""
    if show:
        print(text, file=sys.stderr, flush=True)


def evaluate_frozen_trunk(config, random_init: bool = False, device: torch.device = None, progress=False) -> Dict:
    """Extract TRAIN/TEST features of the frozen trunk and run ``AASAE_EVAL.METHODS``; returns the results.

    ``progress``: lines on stderr while it works (feature extraction n/N images at most every few
    seconds, each classifier's start and end with its time)."""
    settings = eval_settings(config)
    device = device or eval_device(config)
    started = time.time()
    model = build_eval_model(config, random_init)
    feature = trunk_feature_name(config)
    train_x, train_y = extract_features(
        model.trunk, split_loader(config, "TRAIN"), feature, device, progress="features (train)" if progress else None
    )
    test_x, test_y = extract_features(
        model.trunk, split_loader(config, "TEST"), feature, device, progress="features (test)" if progress else None
    )
    results = {
        "checkpoint": None if random_init else config.MODEL.WEIGHTS_INIT.PARAMS_FILE,
        "random_init": bool(random_init),
        "feature": feature,
        "feature_dim": int(train_x.shape[1]),
        "n_train": int(len(train_y)),
        "n_test": int(len(test_y)),
    }
    if "linear_probe" in settings["METHODS"]:
        probe = probe_settings(settings["LINEAR_PROBE"])
        schedule = f"L-BFGS, C={probe.c:g}" if probe.solver == "lbfgs" else f"SGD, {probe.epochs} epochs"
        _stage(f"linear probe: fitting on {len(train_y)} x {train_x.shape[1]} features ({schedule}) ...", progress)
        began = time.monotonic()
        acc = linear_probe_accuracy(train_x, train_y, test_x, test_y, settings["LINEAR_PROBE"])
        results.update({f"linear_{k}": v for k, v in acc.items()})
        _stage(f"linear probe: done in {format_duration(time.monotonic() - began)}", progress)
    if "knn" in settings["METHODS"]:
        _stage(
            f"kNN (k={config.NEAREST_NEIGHBOR.TOPK}): {len(test_y)} test images against {len(train_y)} ...", progress
        )
        began = time.monotonic()
        nn_cfg = config.NEAREST_NEIGHBOR
        on = device if device.type == "cuda" else torch.device("cpu")
        acc = knn_accuracy(
            train_x.to(on),
            train_y.to(on),
            test_x.to(on),
            test_y.to(on),
            k=int(nn_cfg.TOPK),
            temperature=float(nn_cfg.SIGMA),
            normalize=bool(nn_cfg.L2_NORM_FEATS),
        )
        results.update({"knn_k": int(nn_cfg.TOPK), "knn_temperature": float(nn_cfg.SIGMA)})
        results.update({f"knn_{k}": v for k, v in acc.items()})
        _stage(f"kNN: done in {format_duration(time.monotonic() - began)}", progress)
    results["seconds"] = round(time.time() - started, 1)
    return results


def summary_line(results: Dict) -> str:
    """``linear top-1 = 78.40%  knn(k=20) top-1 = 75.10%  (n_train=5000, n_test=1000, checkpoint=...)``"""
    parts = []
    if "linear_top1" in results:
        parts.append(f"linear top-1 = {results['linear_top1']:.2f}%")
    if "knn_top1" in results:
        parts.append(f"knn(k={results['knn_k']}) top-1 = {results['knn_top1']:.2f}%")
    source = "random init" if results["random_init"] else results["checkpoint"]
    return "  ".join(parts) + f"  (n_train={results['n_train']}, n_test={results['n_test']}, checkpoint={source})"


def results_path(config, path: str = None) -> str:
    path = path or eval_settings(config)["RESULTS_FILE"]
    return path if os.path.isabs(path) else os.path.join(config.CHECKPOINT.DIR, path)


def save_results(results: Dict, path: str) -> str:
    """The results as JSON, written to a temporary file and renamed (never a partial file)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: json.dump(results, f, indent=2), mode="w")
    logging.info(f"feature evaluation results written to {path}")
    return path


def data_overrides(fmt: str, path: str, what: str):
    """Hydra overrides that point both splits of an evaluation config at an ``aasae_array`` data set
    (``fmt`` one of its formats, ``path`` its file or folder; ``npz`` + ``embedded``: the shipped
    subset), checked now so that a wrong path is one line, not a traceback in the data loader."""
    if fmt not in FORMATS:
        raise ConfigError(f"{what}: expected embedded or <format>:<path> with format in {list(FORMATS)}")
    if path != "embedded":
        path = os.path.abspath(os.path.expanduser(path))
        if not os.path.exists(path):
            raise ConfigError(f"{what}: {path} does not exist")
    if fmt == "npz":
        check_npz_file(path, what)
    else:
        for split in ("train", "test"):
            try:
                load_arrays(fmt, path, split)
            except (ValueError, OSError, EOFError, KeyError) as err:
                raise ConfigError(f"{what}: {' '.join(str(err).split())}") from None
    overrides = []
    for split in ("TRAIN", "TEST"):
        overrides += [
            f"config.DATA.{split}.DATA_SOURCES=[aasae_array]",
            f"config.DATA.{split}.LABEL_SOURCES=[torchvision_dataset]",
            f"config.DATA.{split}.DATASET_NAMES=[{fmt}]",
            f"config.DATA.{split}.DATA_PATHS=[{path}]",
        ]
    return overrides
