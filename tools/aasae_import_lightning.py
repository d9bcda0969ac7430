#!/usr/bin/env python
"""Import an AAVAE authors' PyTorch Lightning checkpoint into a VISSL checkpoint of this plugin.

    python tools/aasae_import_lightning.py --input epoch=3199.ckpt --output aavae_cifar10.torch
    python tools/aasae_import_lightning.py --input X.ckpt --output Y.torch --decoder if_compatible \
        config=pretrain/aasae/cifar10 config.MODEL.AASAE.LATENT_DIM=128

The model is the config given (default: the one for the checkpoint's hyper_parameters.dataset)
with the architecture in its hyper_parameters. The encoder and projection must map exactly;
--decoder require|if_compatible|skip says what to do when the decoder does not (see
vissl_aasae/interop/lightning_import.py). The output loads with
config.MODEL.WEIGHTS_INIT.PARAMS_FILE=Y.torch, and into tools/aasae_extract_features.py.
"""
import argparse
import json
import sys
import warnings

import vissl_aasae  # noqa: F401  (plugin registrations and compatibility patches)
from vissl_aasae.interop.lightning_import import DECODER_POLICIES, import_lightning_file


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--input", required=True, help="the authors' Lightning checkpoint (.ckpt)")
    parser.add_argument("--output", required=True, help="VISSL checkpoint to write (.torch)")
    parser.add_argument("--decoder", default="require", choices=DECODER_POLICIES)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides: config=... config.KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = import_lightning_file(args.input, args.output, args.overrides, decoder=args.decoder)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    print(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
