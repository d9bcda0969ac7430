#!/usr/bin/env python
"""Trunk features of a data set split as .npy (N x D float32, labels, indices), on CPU or GPU.

    python tools/aasae_extract_features.py --checkpoint checkpoints/quickstart/checkpoint.torch \
        --output-dir features/ --split test config=pretrain/aasae/quickstart
    python tools/aasae_extract_features.py --checkpoint C.torch --output-dir F --split train --device cuda \
        config=pretrain/aasae/cifar10 config.DATA.TRAIN.DATA_PATHS=[/data/cifar10]

The data source, DATA_LIMIT and evaluation transform (AASAEViews' 'original' list) come from the
config; a split without DATA_SOURCES reads DATA.TRAIN's sources. Writes <split>_features.npy,
<split>_labels.npy, <split>_indices.npy and <split>_features.json in data set order.
"""
import argparse
import json
import sys

import vissl_aasae  # noqa: F401  (plugin registrations and compatibility patches)
from vissl_aasae.config_check import ConfigError
from vissl_aasae.interop.feature_extraction import DEVICES, extract_features
from vissl_aasae.launcher import compose


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--checkpoint", help="VISSL checkpoint or trunk state dict; omit for a random-init baseline")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--split", default="test", choices=["train", "test", "TRAIN", "TEST"])
    parser.add_argument("--device", default="cpu", choices=DEVICES)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--feature", default="flatten", help="trunk feature: flatten (pooled h, default), res5, res4...")
    parser.add_argument("overrides", nargs="+", help="Hydra overrides, starting with config=...")
    args = parser.parse_args(argv)
    try:
        _, config = compose(args.overrides)
        summary = extract_features(
            config,
            args.checkpoint,
            args.output_dir,
            split=args.split,
            device=args.device,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            feature=args.feature,
        )
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({k: summary[k] for k in ("split", "feature", "shape", "device", "files")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
