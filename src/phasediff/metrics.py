"""Sample quality without downloads, judged by a classifier the project trains itself.

- Frechet distance in the classifier's penultimate features:
  FD = |mu_1 - mu_2|^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2}), with a bootstrap interval over samples;
- mean top-class confidence and the class histogram of the samples;
- memorisation: for each sample the ratio d_1 / d_2 of the distances to its nearest and second-nearest
  training images; a ratio below 1/3 marks a copy (Yoon et al. 2023).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import linalg

MEMORISATION_RATIO = 1.0 / 3.0


@torch.no_grad()
def classify(classifier, images, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(penultimate features (N, F), class probabilities (N, K)) for images (N, C, H, W) in [0, 1]."""
    feats, probs = [], []
    for start in range(0, len(images), batch_size):
        x = torch.as_tensor(np.asarray(images[start : start + batch_size]), dtype=torch.float32)
        f, logits = classifier.features_and_logits(x)
        feats.append(f.double().numpy())
        probs.append(torch.softmax(logits.double(), dim=1).numpy())
    return np.concatenate(feats), np.concatenate(probs)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2}) of two feature sets."""
    mu_a, mu_b = features_a.mean(0), features_b.mean(0)
    cov_a, cov_b = np.cov(features_a, rowvar=False), np.cov(features_b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    root = root.real if np.iscomplexobj(root) else root
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2.0 * root))


def bootstrap_frechet(features: np.ndarray, reference: np.ndarray, rounds: int = 50, seed: int = 0,
                      level: float = 0.95) -> tuple[float, float, float]:
    """FD and a percentile bootstrap interval from resampling both feature sets."""
    rng = np.random.default_rng(seed)
    values = [frechet_distance(features[rng.integers(0, len(features), len(features))],
                               reference[rng.integers(0, len(reference), len(reference))]) for _ in range(rounds)]
    alpha = (1 - level) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha])
    return frechet_distance(features, reference), float(lo), float(hi)


@torch.no_grad()
def nearest_neighbour_ratios(samples, training, chunk: int = 10000) -> np.ndarray:
    """d_1 / d_2 for every sample: its distances to the nearest and second-nearest training images."""
    x = torch.as_tensor(np.asarray(samples), dtype=torch.float32).flatten(1)
    best = torch.full((len(x), 2), float("inf"))
    for start in range(0, len(training), chunk):
        ref = torch.as_tensor(np.asarray(training[start : start + chunk]), dtype=torch.float32).flatten(1)
        d = torch.cdist(x, ref)
        k = min(2, d.shape[1])
        best = torch.cat([best, d.topk(k, dim=1, largest=False).values], dim=1).topk(2, dim=1, largest=False).values
    return (best[:, 0] / best[:, 1].clamp_min(1e-12)).numpy()


@dataclass
class QualityReport:
    """Quality of a set of samples against a reference set (e.g. the test split)."""

    n: int
    frechet: float
    frechet_low: float
    frechet_high: float
    confidence: float
    class_fractions: list[float]
    memorised_fraction: float | None
    median_nn_ratio: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def quality(classifier, samples, reference, training=None, rounds: int = 50, seed: int = 0) -> QualityReport:
    """Frechet distance (with interval), confidence, class histogram and, given training images, memorisation."""
    features, probs = classify(classifier, samples)
    reference_features, _ = classify(classifier, reference)
    fd, lo, hi = bootstrap_frechet(features, reference_features, rounds=rounds, seed=seed)
    counts = np.bincount(probs.argmax(1), minlength=probs.shape[1])
    memorised = median = None
    if training is not None:
        ratios = nearest_neighbour_ratios(samples, training)
        memorised, median = float((ratios < MEMORISATION_RATIO).mean()), float(np.median(ratios))
    return QualityReport(
        n=len(samples), frechet=fd, frechet_low=lo, frechet_high=hi, confidence=float(probs.max(1).mean()),
        class_fractions=(counts / counts.sum()).tolist(), memorised_fraction=memorised, median_nn_ratio=median,
    )
