#!/usr/bin/env python
"""Export the trunk of a VISSL checkpoint to torchvision or Detectron2 weights (``aasae-export``).

    python tools/aasae_export.py --checkpoint checkpoints/quickstart/model_final_checkpoint_phase1.torch \
        --output rn18_cifar.pth                     # + rn18_cifar.pth.json: how to build the model
    python tools/aasae_export.py --format detectron2 --checkpoint CKPT --output r50.pkl   # ResNet-50, 7x7 stem
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # vissl_aasae from a checkout

from vissl_aasae.cli import export_main as main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
