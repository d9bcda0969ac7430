"""Weighted k-nearest-neighbour classification of features (the usual SSL kNN protocol).

Cosine similarity (features L2-normalised when ``normalize``), the ``k`` most similar training
features vote for their labels with weight ``exp(similarity / temperature)`` (Wu et al. 2018, as in
VISSL's ``nearest_neighbor_test``); the class with the largest summed weight wins.  Runs on
whatever device the tensors are on, in chunks of test rows.
"""

from typing import Dict

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_predict_scores(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    k: int,
    temperature: float,
    num_classes: int,
    normalize: bool = True,
    chunk: int = 1024,
) -> torch.Tensor:
    """Per-class vote weights (N_test x num_classes)."""
    if k < 1:
        raise ValueError(f"k={k}: the number of neighbours must be >= 1")
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0")
    k = min(k, len(train_features))
    if normalize:
        train_features = F.normalize(train_features, dim=1)
        test_features = F.normalize(test_features, dim=1)
    scores = []
    for start in range(0, len(test_features), chunk):
        similarity = test_features[start : start + chunk] @ train_features.T
        top_sim, top_idx = similarity.topk(k, dim=1)
        votes = torch.zeros(len(top_idx), num_classes, dtype=similarity.dtype, device=similarity.device)
        votes.scatter_add_(1, train_labels[top_idx], (top_sim / temperature).exp())
        scores.append(votes)
    return torch.cat(scores)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> Dict[str, float]:
    """``{"top1": %, "top5": %}`` (a k above the number of classes is left out)."""
    result = {}
    ranked = scores.argsort(dim=1, descending=True)
    for k in ks:
        if k <= scores.shape[1]:
            hit = (ranked[:, :k] == labels.view(-1, 1)).any(dim=1)
            result[f"top{k}"] = 100.0 * hit.float().mean().item()
    return result


def knn_accuracy(train_features, train_labels, test_features, test_labels, k=20, temperature=0.07, normalize=True):
    """Top-1/top-5 (%) of the weighted kNN classifier fitted on (train_features, train_labels)."""
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    scores = knn_predict_scores(train_features, train_labels, test_features, k, temperature, num_classes, normalize)
    return topk_accuracy(scores, test_labels)
