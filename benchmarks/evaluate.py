#!/usr/bin/env python
"""Evaluate a pretrained AASAE trunk on CPU: linear probe and kNN on frozen features (``aasae-eval``).

    python benchmarks/evaluate.py --checkpoint checkpoints/quickstart/model_final_checkpoint_phase1.torch
    python benchmarks/evaluate.py --random-init                       # the same trunk, untrained
    python benchmarks/evaluate.py --checkpoint ... --data fashion_mnist:/usr/share/datasets/fashion-mnist

Prints e.g. ``linear top-1 = 78.40%  knn(k=20) top-1 = 75.10%  (n_train=5000, n_test=1000, checkpoint=...)``
and writes the numbers as JSON. See ``aasae-eval --help`` (vissl_aasae.cli.eval_main) for every option.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # vissl_aasae from a checkout

from vissl_aasae.cli import eval_main as main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
