#!/usr/bin/env python
"""Export the trunk of a VISSL checkpoint to torchvision or Detectron2 weights.

    python tools/aasae_export.py --input checkpoints/quickstart/model_final_checkpoint_phase1.torch \
        --output rn18_cifar.pth                     # + rn18_cifar.pth.json: how to build the model
    python tools/aasae_export.py --format detectron2 --input CKPT --output r50.pkl   # ResNet-50, 7x7 stem

A 7x7 stem is 'stl10' (no max-pool) or 'imagenet'; it is read from the train_config.yaml VISSL
writes beside the checkpoint, else pass --stem. See vissl_aasae/interop/torchvision_resnet.py.
"""
import argparse
import json
import sys

import vissl_aasae  # noqa: F401  (plugin registrations and compatibility patches)
from vissl_aasae.interop.export import FORMATS, export_checkpoint
from vissl_aasae.models.resnet_spec import STEMS


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--input", required=True, help="VISSL checkpoint (.torch) or trunk state dict")
    parser.add_argument("--output", required=True, help="file to write (.pth for torchvision, .pkl for detectron2)")
    parser.add_argument("--format", default="torchvision", choices=FORMATS)
    parser.add_argument("--stem", choices=sorted(STEMS), help="torchvision: the trunk's stem, when not recorded")
    args = parser.parse_args(argv)
    try:
        summary = export_checkpoint(args.input, args.output, fmt=args.format, stem=args.stem)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
