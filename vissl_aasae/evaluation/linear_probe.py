"""A linear classifier trained on precomputed frozen features (the CPU stand-in for VISSL's linear benchmark).

The linear benchmark configs (``benchmark/aasae/linear/*``) train ``nn.Linear`` on the frozen trunk
through VISSL's trainer, with the protocol's random crops and flips, which takes GPU hours.  For
small data on a CPU the same classifier is trained here on features extracted once with the test
transform (no augmentation): SGD with Nesterov momentum, LR ``LR * BATCH_SIZE / 256`` with cosine
decay to 0 per step, no weight decay by default, as in the SimCLR protocol.  With ``STANDARDIZE``
the features are shifted and scaled per dimension by their training-set mean and standard
deviation first (what a BatchNorm before the classifier would learn; the decision rule stays
linear in the trunk's features).  Settings come from ``config.AASAE_EVAL.LINEAR_PROBE``.

``SOLVER: lbfgs`` instead fits a multinomial logistic regression to convergence, full batch, with
an L2 penalty on the weights as scikit-learn's ``LogisticRegression(C=C)`` has it (mean
cross-entropy + ``|W|^2 / (2 C n)``): the usual probe when only a few labelled images exist (the
low-label probes of benchmarks/fashion_mnist_study.py), where a fixed SGD schedule would stop far
from the optimum.
"""

import math
from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

from vissl_aasae.evaluation.knn import topk_accuracy
from vissl_aasae.settings import LinearProbeSettings


def probe_settings(overrides=None) -> LinearProbeSettings:
    """``AASAE_EVAL.LINEAR_PROBE`` as typed settings, from a mapping of its keys (or the settings)."""
    if isinstance(overrides, LinearProbeSettings):
        return overrides
    return LinearProbeSettings.from_mapping(overrides or {})


def train_linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, num_classes: int, settings=None):
    """Fit ``nn.Linear`` on (train_x, train_y); returns (classifier, mean, std) for :func:`probe_scores`."""
    s = probe_settings(settings)
    generator = torch.Generator().manual_seed(s.seed)
    if s.standardize:
        mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    else:
        mean, std = torch.zeros(train_x.shape[1]), torch.ones(train_x.shape[1])
    x = (train_x - mean) / std
    classifier = nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():  # a seeded init, independent of the global RNG
        bound = 1.0 / math.sqrt(x.shape[1])
        classifier.weight.uniform_(-bound, bound, generator=generator)
        classifier.bias.uniform_(-bound, bound, generator=generator)
    if s.solver == "lbfgs":
        _fit_lbfgs(classifier, x, train_y, s.c, s.max_iter)
        return classifier, mean, std
    batch = s.batch_size
    lr = s.lr * batch / 256
    optimizer = torch.optim.SGD(
        classifier.parameters(),
        lr=lr,
        momentum=s.momentum,
        nesterov=s.nesterov,
        weight_decay=s.weight_decay,
    )
    steps_per_epoch = max(1, math.ceil(len(x) / batch))
    total = s.epochs * steps_per_epoch
    step = 0
    for _ in range(s.epochs):
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


def _fit_lbfgs(classifier: nn.Linear, x: torch.Tensor, y: torch.Tensor, c: float, max_iter: int) -> None:
    """Multinomial logistic regression to convergence: mean CE + |W|^2 / (2 C n), L-BFGS, full batch."""
    if c <= 0:
        raise ValueError(f"AASAE_EVAL.LINEAR_PROBE.C={c} must be > 0")
    x, y = x.double(), y.long()
    classifier.double()
    optimizer = torch.optim.LBFGS(
        classifier.parameters(),
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-7,
        tolerance_change=1e-10,
        history_size=20,
        line_search_fn="strong_wolfe",
    )
    penalty = 1.0 / (2.0 * c * len(x))

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(classifier(x), y) + penalty * classifier.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    classifier.float()


@torch.no_grad()
def probe_scores(classifier, mean, std, features: torch.Tensor) -> torch.Tensor:
    return classifier((features - mean) / std)


def linear_probe_accuracy(train_x, train_y, test_x, test_y, settings=None) -> Dict[str, float]:
    """Top-1/top-5 (%) on (test_x, test_y) of a linear classifier trained on (train_x, train_y)."""
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    classifier, mean, std = train_linear_probe(train_x, train_y, num_classes, settings)
    return topk_accuracy(probe_scores(classifier, mean, std, test_x), test_y)
