"""A linear classifier trained on precomputed frozen features (the CPU stand-in for VISSL's linear benchmark).

The linear benchmark configs (``benchmark/aasae/linear/*``) train ``nn.Linear`` on the frozen trunk
through VISSL's trainer, with the protocol's random crops and flips, which takes GPU hours.  For
small data on a CPU the same classifier is trained here on features extracted once with the test
transform (no augmentation): SGD with Nesterov momentum, LR ``LR * BATCH_SIZE / 256`` with cosine
decay to 0 per step, no weight decay by default, as in the SimCLR protocol.  With ``STANDARDIZE``
the features are shifted and scaled per dimension by their training-set mean and standard
deviation first (what a BatchNorm before the classifier would learn; the decision rule stays
linear in the trunk's features).  Settings come from ``config.AASAE_EVAL.LINEAR_PROBE``.
"""
import math
from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

from vissl_aasae.evaluation.knn import topk_accuracy

DEFAULTS = {
    "EPOCHS": 90,
    "BATCH_SIZE": 256,
    "LR": 0.1,  # for a batch of 256, scaled linearly with BATCH_SIZE
    "MOMENTUM": 0.9,
    "NESTEROV": True,
    "WEIGHT_DECAY": 0.0,
    "STANDARDIZE": True,
    "SEED": 0,
}


def probe_settings(overrides=None) -> Dict:
    settings = dict(DEFAULTS)
    for key, value in (overrides or {}).items():
        if key not in DEFAULTS:
            raise ValueError(f"AASAE_EVAL.LINEAR_PROBE.{key} is not a setting; known: {sorted(DEFAULTS)}")
        settings[key] = value
    return settings


def train_linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, num_classes: int, settings=None):
    """Fit ``nn.Linear`` on (train_x, train_y); returns (classifier, mean, std) for :func:`probe_scores`."""
    s = probe_settings(settings)
    generator = torch.Generator().manual_seed(int(s["SEED"]))
    if s["STANDARDIZE"]:
        mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    else:
        mean, std = torch.zeros(train_x.shape[1]), torch.ones(train_x.shape[1])
    x = (train_x - mean) / std
    classifier = nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():  # a seeded init, independent of the global RNG
        bound = 1.0 / math.sqrt(x.shape[1])
        classifier.weight.uniform_(-bound, bound, generator=generator)
        classifier.bias.uniform_(-bound, bound, generator=generator)
    batch = int(s["BATCH_SIZE"])
    lr = float(s["LR"]) * batch / 256
    optimizer = torch.optim.SGD(
        classifier.parameters(), lr=lr, momentum=float(s["MOMENTUM"]), nesterov=bool(s["NESTEROV"]),
        weight_decay=float(s["WEIGHT_DECAY"]),
    )
    steps_per_epoch = max(1, math.ceil(len(x) / batch))
    total = int(s["EPOCHS"]) * steps_per_epoch
    step = 0
    for _ in range(int(s["EPOCHS"])):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch):
            idx = order[start : start + batch]
            for group in optimizer.param_groups:
                group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * step / total))
            loss = F.cross_entropy(classifier(x[idx]), train_y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
    return classifier, mean, std


@torch.no_grad()
def probe_scores(classifier, mean, std, features: torch.Tensor) -> torch.Tensor:
    return classifier((features - mean) / std)


def linear_probe_accuracy(train_x, train_y, test_x, test_y, settings=None) -> Dict[str, float]:
    """Top-1/top-5 (%) on (test_x, test_y) of a linear classifier trained on (train_x, train_y)."""
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    classifier, mean, std = train_linear_probe(train_x, train_y, num_classes, settings)
    return topk_accuracy(probe_scores(classifier, mean, std, test_x), test_y)
