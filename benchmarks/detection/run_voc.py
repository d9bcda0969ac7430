#!/usr/bin/env python
"""PASCAL VOC07+12 detection transfer: fine-tune a Faster R-CNN R50-C4 from a VISSL trunk with Detectron2.

Example (the paper's protocol, 8 GPUs)::

    python benchmarks/detection/run_voc.py --voc-root /data/VOCdevkit \\
        --checkpoint checkpoints/model_final_checkpoint_phase799.torch --num-gpus 8 --output-dir runs/voc

--voc-root holds VOC2007/ and VOC2012/ (Annotations/*.xml, JPEGImages/*.jpg, ImageSets/Main/*.txt).
The trunk is converted to ``OUTPUT_DIR/backbone_detectron2.pkl``; the runner writes which model keys
the weights did not fill (``weights_load.json``) and the final AP/AP50/AP75 (``voc_results.json``).
Needs detectron2 (scripts/install_detectron2.sh).
"""

import argparse
import json
import logging
import os
import sys

from vissl_aasae.compat import apply_detectron2_patches

apply_detectron2_patches()  # before anything imports detectron2 (spawned workers re-run this too)

import detectron2.utils.comm as comm  # noqa: E402
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.data.datasets.pascal_voc import register_pascal_voc  # noqa: E402
from detectron2.engine import DefaultTrainer, default_setup, launch  # noqa: E402
from detectron2.evaluation import PascalVOCDetectionEvaluator  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from vissl_aasae.checkpoints import load_pickle  # noqa: E402
from vissl_aasae.cli.arguments import check_output  # noqa: E402
from vissl_aasae.detection.convert import convert_file, width_multiplier_of_weights  # noqa: E402

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "voc07_12_r50_c4.yaml")
BACKBONE_PARTS = ("stem.", "res2.", "res3.", "res4.", "res5.")
DEFAULT_OUTPUT = "runs/voc07_12_r50_c4"
VOC_LAYOUT = "each with Annotations/<id>.xml, JPEGImages/<id>.jpg and ImageSets/Main/<split>.txt"
RESULTS_FILE = "voc_results.json"
WEIGHTS_REPORT_FILE = "weights_load.json"
LOGGER_NAME = "vissl_aasae.detection"
logger = logging.getLogger(LOGGER_NAME)


def register_voc(voc_root: str, dataset_names) -> None:
    """(Re-)register ``voc_{year}_{split}`` data sets from ``voc_root/VOC{year}`` with detectron2's loader."""
    for name in dict.fromkeys(dataset_names):
        parts = name.split("_")
        if len(parts) != 3 or parts[0] != "voc":
            raise ValueError(f"data set {name!r} is not of the form voc_<year>_<split>")
        _, year, split = parts
        dirname = os.path.join(voc_root, f"VOC{year}")
        split_file = os.path.join(dirname, "ImageSets", "Main", f"{split}.txt")
        if not os.path.isfile(split_file):
            raise FileNotFoundError(f"{name}: no {split_file}")
        # detectron2 registers these names at import time under ./datasets: replace them.
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        register_pascal_voc(name, dirname, split, int(year))


class WeightsLoadReport(DetectionCheckpointer):
    """A DetectionCheckpointer that keeps what loading left out (missing, unexpected, wrong shape) and
    reads ``.pkl`` weights without running code from them (Detectron2 would ``pickle.load`` them)."""

    incompatible = None

    def _load_file(self, filename):
        if not filename.endswith(".pkl"):
            return super()._load_file(filename)
        data = load_pickle(filename, what="MODEL.WEIGHTS")
        if "model" in data and "__author__" in data:  # the Detectron2 model-zoo layout (ours too)
            return data
        data = data.get("blobs", data)  # Caffe2 / Detectron1 layout, as DetectionCheckpointer reads it
        data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
        return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}

    def _load_model(self, checkpoint):
        self.incompatible = super()._load_model(checkpoint)
        return self.incompatible

    def summary(self, weights: str) -> dict:
        model_keys = list(self.model.state_dict())
        if self.incompatible is None:  # no weights file: everything starts from scratch
            missing, unexpected, wrong_shapes = model_keys, [], []
        else:
            missing = list(self.incompatible.missing_keys)
            unexpected = list(self.incompatible.unexpected_keys)
            wrong_shapes = [
                [key, list(ckpt_shape), list(model_shape)]
                for key, ckpt_shape, model_shape in self.incompatible.incorrect_shapes
            ]
        return {
            "weights": weights,
            "model_keys": len(model_keys),
            "not_loaded": missing,
            "not_loaded_backbone": [k for k in missing if is_backbone_key(k)],
            "unexpected": unexpected,
            "incorrect_shapes": wrong_shapes,
        }


def is_backbone_key(key: str) -> bool:
    """Whether a model key belongs to the pretrained ResNet (stem, res2-res4 in the backbone, res5 in the ROI head)."""
    return any(f".{part}" in f".{key}" for part in BACKBONE_PARTS)


class VOCTrainer(DefaultTrainer):
    """DefaultTrainer with the PASCAL VOC evaluator and a report of the pretrained weights' load."""

    weights_report = None

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return PascalVOCDetectionEvaluator(dataset_name)

    def resume_or_load(self, resume=True):
        if resume and self.checkpointer.has_checkpoint():
            return super().resume_or_load(resume=True)
        loader = WeightsLoadReport(self.checkpointer.model)
        loader.load(self.cfg.MODEL.WEIGHTS, checkpointables=[])
        self.weights_report = loader.summary(self.cfg.MODEL.WEIGHTS)
        self.start_iter = 0


def build_cfg(args):
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(list(args.derived_opts) + list(args.opts))
    if args.train_sets:
        cfg.DATASETS.TRAIN = tuple(args.train_sets)
    if args.test_sets:
        cfg.DATASETS.TEST = tuple(args.test_sets)
    if args.ims_per_batch:
        cfg.SOLVER.IMS_PER_BATCH = args.ims_per_batch
    if args.max_iter:
        # a shorter (or longer) schedule keeps its LR steps at the same fractions of training
        scale = args.max_iter / cfg.SOLVER.MAX_ITER
        steps = {int(round(s * scale)) for s in cfg.SOLVER.STEPS}
        cfg.SOLVER.STEPS = tuple(sorted(s for s in steps if 0 < s < args.max_iter))
        cfg.SOLVER.MAX_ITER = args.max_iter
    if args.cpu:
        cfg.MODEL.DEVICE = "cpu"
        if cfg.MODEL.RESNETS.NORM == "SyncBN":
            cfg.MODEL.RESNETS.NORM = "BN"  # nothing to synchronise in one CPU process
    cfg.OUTPUT_DIR = args.output_dir
    cfg.freeze()
    return cfg


def _write_json(cfg, name: str, data: dict) -> str:
    path = os.path.join(cfg.OUTPUT_DIR, name)
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
    return path


def main(args):
    cfg = build_cfg(args)
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name=LOGGER_NAME, abbrev_name="voc")
    register_voc(args.voc_root, cfg.DATASETS.TRAIN + cfg.DATASETS.TEST)
    trainer = VOCTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    report = trainer.weights_report
    if report is not None and comm.is_main_process():
        _write_json(cfg, WEIGHTS_REPORT_FILE, report)
        logger.info(
            "weights %s: %d of %d model keys not loaded; backbone keys not loaded: %s",
            report["weights"],
            len(report["not_loaded"]),
            report["model_keys"],
            report["not_loaded_backbone"] or "none",
        )
    trainer.train()
    results = getattr(trainer, "_last_eval_results", None)  # set by DefaultTrainer's final EvalHook
    if results is None:
        results = VOCTrainer.test(cfg, trainer.model)
    if not comm.is_main_process():
        return None
    bbox = {k: float(results["bbox"][k]) for k in ("AP", "AP50", "AP75")}
    summary = dict(
        bbox,
        max_iter=cfg.SOLVER.MAX_ITER,
        ims_per_batch=cfg.SOLVER.IMS_PER_BATCH,
        weights=cfg.MODEL.WEIGHTS,
        weights_load=report,
    )
    path = _write_json(cfg, RESULTS_FILE, summary)
    print(
        "VOC07 test: AP %.2f  AP50 %.2f  AP75 %.2f  (%s)" % (bbox["AP"], bbox["AP50"], bbox["AP75"], path), flush=True
    )
    return summary


def voc_datasets(args):
    """The data sets a run reads: --train-sets/--test-sets, else the config file's DATASETS."""
    train, test = args.train_sets, args.test_sets
    if not (train and test):
        cfg = get_cfg()
        cfg.merge_from_file(args.config_file)
        train, test = train or list(cfg.DATASETS.TRAIN), test or list(cfg.DATASETS.TEST)
    return list(dict.fromkeys(list(train) + list(test)))


def check_voc_root(voc_root: str, dataset_names) -> None:
    """ValueError (one line: the folder, what it lacks, what it should hold) unless ``voc_root`` holds every
    file of ``dataset_names`` that detectron2's loader will read; run before any work."""
    years = []
    for name in dataset_names:
        parts = name.split("_")
        if len(parts) != 3 or parts[0] != "voc" or not parts[1].isdigit():
            raise ValueError(f"data set {name!r} is not of the form voc_<year>_<split> (--train-sets, --test-sets)")
        years += [] if f"VOC{parts[1]}/" in years else [f"VOC{parts[1]}/"]
    layout = (
        f"it should be the VOCdevkit folder holding {' and '.join(years)}, {VOC_LAYOUT} "
        f"(data sets of this run: {', '.join(dataset_names)}; --train-sets/--test-sets choose others)"
    )
    if not os.path.isdir(voc_root):
        raise ValueError(f"--voc-root {voc_root!r} is not a folder: {layout}")
    lacking, missing_images = [], []
    for name in dataset_names:
        _, year, split = name.split("_")
        folder = f"VOC{year}"
        if not os.path.isdir(os.path.join(voc_root, folder)):
            lacking += [] if f"{folder}/" in lacking else [f"{folder}/"]
            continue
        split_file = os.path.join(folder, "ImageSets", "Main", f"{split}.txt")
        for needed in (split_file, os.path.join(folder, "Annotations"), os.path.join(folder, "JPEGImages")):
            if not os.path.exists(os.path.join(voc_root, needed)) and needed not in lacking:
                lacking.append(needed)
        if split_file in lacking:
            continue
        with open(os.path.join(voc_root, split_file)) as f:
            ids = [line.strip() for line in f if line.strip()]
        if not ids:
            lacking.append(f"{split_file} (empty)")
        for file_id in ids:
            for sub, ext in (("Annotations", "xml"), ("JPEGImages", "jpg")):
                path = os.path.join(folder, sub, f"{file_id}.{ext}")
                if not os.path.isfile(os.path.join(voc_root, path)):
                    missing_images.append(path)
    if lacking:
        raise ValueError(f"--voc-root {voc_root!r} lacks {', '.join(lacking)}: {layout}")
    if missing_images:
        raise ValueError(
            f"--voc-root {voc_root!r}: {len(missing_images)} files listed by the split files are missing, "
            f"e.g. {missing_images[0]}"
        )


def check_inputs(args) -> None:
    """The VOC folder and the output folder, checked before any work (weights conversion, detectron2)."""
    check_voc_root(args.voc_root, voc_datasets(args))
    default = args.output_dir is None
    args.output_dir = check_output(
        DEFAULT_OUTPUT if default else args.output_dir, "--output-dir", folder=True, create_parents=default
    )


def _names(text: str):
    return [name for name in text.split(",") if name]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--voc-root", required=True, help="folder with VOC2007/ and VOC2012/")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="VISSL checkpoint (or trunk state dict) to convert")
    source.add_argument("--weights", help="Detectron2 weights already converted (.pkl)")
    parser.add_argument("--config-file", default=DEFAULT_CONFIG)
    parser.add_argument("--output-dir", default=None, help=f"where the run writes (default: {DEFAULT_OUTPUT})")
    parser.add_argument("--num-gpus", type=int, default=1, help="GPUs on this machine (detectron2 launch)")
    parser.add_argument("--num-machines", type=int, default=1)
    parser.add_argument("--machine-rank", type=int, default=0)
    parser.add_argument("--dist-url", default="auto")
    parser.add_argument("--cpu", action="store_true", help="train on CPU (one process, BN instead of SyncBN)")
    parser.add_argument("--max-iter", type=int, help="iterations (LR steps scale along)")
    parser.add_argument("--ims-per-batch", type=int, help="images per batch, over all GPUs")
    parser.add_argument(
        "--train-sets", type=_names, help="comma-separated; default: the config's voc_2007_trainval,voc_2012_trainval"
    )
    parser.add_argument("--test-sets", type=_names, help="comma-separated; default: the config's voc_2007_test")
    parser.add_argument("--resume", action="store_true", help="resume from the last checkpoint in --output-dir")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = parser.parse_args(argv)
    if args.cpu and args.num_gpus * args.num_machines != 1:
        parser.error("--cpu runs in one process: use --num-gpus 1")
    return args


def prepare_weights(args) -> None:
    """Convert --checkpoint (once, before workers start) and derive config options from the weights."""
    os.makedirs(args.output_dir, exist_ok=True)
    if args.checkpoint:
        args.weights = os.path.join(args.output_dir, "backbone_detectron2.pkl")
        convert_file(args.checkpoint, args.weights)
    width = width_multiplier_of_weights(load_pickle(args.weights, what="--weights"))
    args.derived_opts = [
        "MODEL.WEIGHTS",
        os.path.abspath(args.weights),
        "MODEL.RESNETS.STEM_OUT_CHANNELS",
        64 * width,
        "MODEL.RESNETS.RES2_OUT_CHANNELS",
        256 * width,
        "MODEL.RESNETS.WIDTH_PER_GROUP",
        64 * width,
    ]


def cli(argv=None):
    args = parse_args(argv)
    try:
        check_inputs(args)
        prepare_weights(args)
    except (ValueError, FileNotFoundError) as err:  # a VOC folder, output, checkpoint or weights file unusable
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    summary = launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
    return summary


if __name__ == "__main__":
    cli(sys.argv[1:])
