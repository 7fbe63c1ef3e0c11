"""Sample quality without downloads, judged by a classifier the project trains itself.

- Frechet distance in the classifier's penultimate features:
  FD = |mu_1 - mu_2|^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2}), bootstrap bias-corrected, with an interval;
- mean top-class confidence and the class histogram of the samples;
- memorisation: for each sample the ratio d_1 / d_2 of the distances to its nearest and second-nearest
  training images; a ratio below 1/3 marks a copy (Yoon et al. 2023);
- `frechet_ratio`: FD(samples) / FD(baseline) with a paired bootstrap interval.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import linalg
from threadpoolctl import threadpool_limits

from phasediff.errors import PhasediffError

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


@dataclass(frozen=True)
class FrechetReference:
    """A fixed feature set's mean, covariance and covariance root, computed once for many distances to it."""

    mean: np.ndarray
    cov: np.ndarray
    root: np.ndarray

    @classmethod
    def of(cls, features: np.ndarray) -> "FrechetReference":
        cov = np.cov(features, rowvar=False)
        values, vectors = linalg.eigh(cov)
        return cls(features.mean(0), cov, (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T)

    def distance(self, features: np.ndarray) -> float:
        """|mu - mu_ref|^2 + Tr(S + S_ref - 2 (S S_ref)^{1/2}). With Y = (X - mu) R / sqrt(n - 1), R = S_ref^{1/2},
        Tr (S S_ref)^{1/2} = sum sqrt eig(Y^T Y) = sum sqrt eig(Y Y^T), of whichever is smaller (n or F square):
        symmetric, and stable for a singular S."""
        mu = features.mean(0)
        centred = (features - mu) / np.sqrt(len(features) - 1)
        y = centred @ self.root
        gram = y @ y.T if len(y) < y.shape[1] else y.T @ y
        trace_root = np.sqrt(np.clip(linalg.eigvalsh(gram), 0, None)).sum()
        return float(((mu - self.mean) ** 2).sum() + (centred**2).sum() + np.trace(self.cov) - 2.0 * trace_root)


def one_blas_thread():
    """A context with BLAS on one thread: the bootstrap's many F x F products and eigenvalue problems (F = 128)
    run about 2x faster on one thread than on two."""
    return threadpool_limits(1, user_api="blas")


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2}) of two feature sets."""
    return FrechetReference.of(features_b).distance(features_a)


def bootstrap_frechet(features: np.ndarray, reference: np.ndarray, rounds: int = 50, seed: int = 0,
                      level: float = 0.95) -> tuple[float, float, float, float]:
    """(bias-corrected FD, interval low, interval high, plug-in FD) by the bootstrap over the samples.

    The plug-in FD is biased upward by finite samples (O(features / n)), and a resampled set, with its
    duplicates, more so. The bootstrap estimates that bias: FD_bc = 2 FD - mean(FD*), with the basic interval
    [2 FD - q_hi, 2 FD - q_lo] (floored at 0). The reference set is the fixed yardstick and is not resampled.
    """
    rng, yardstick = np.random.default_rng(seed), FrechetReference.of(reference)
    with one_blas_thread():
        values = np.array([yardstick.distance(features[rng.integers(0, len(features), len(features))])
                           for _ in range(rounds)])
    alpha = (1 - level) / 2
    q_lo, q_hi = np.quantile(values, [alpha, 1 - alpha])
    plug_in = yardstick.distance(features)
    corrected = 2 * plug_in - values.mean()
    return float(max(0.0, corrected)), float(max(0.0, 2 * plug_in - q_hi)), float(max(0.0, 2 * plug_in - q_lo)), plug_in


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
    frechet_plug_in: float
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
    return quality_from_features(features, probs, reference_features, samples, training, rounds, seed)


def quality_from_features(features: np.ndarray, probs: np.ndarray, reference_features: np.ndarray, samples=None,
                          training=None, rounds: int = 50, seed: int = 0) -> QualityReport:
    """`quality` from the judge's outputs already computed (samples needed only for memorisation)."""
    fd, lo, hi, plug_in = bootstrap_frechet(features, reference_features, rounds=rounds, seed=seed)
    counts = np.bincount(probs.argmax(1), minlength=probs.shape[1])
    memorised = median = None
    if training is not None:
        ratios = nearest_neighbour_ratios(samples, training)
        memorised, median = float((ratios < MEMORISATION_RATIO).mean()), float(np.median(ratios))
    return QualityReport(
        n=len(features), frechet=fd, frechet_low=lo, frechet_high=hi, frechet_plug_in=plug_in, confidence=float(probs.max(1).mean()),
        class_fractions=(counts / counts.sum()).tolist(), memorised_fraction=memorised, median_nn_ratio=median,
    )


def frechet_ratio(features: np.ndarray, baseline: np.ndarray, reference: np.ndarray, rounds: int = 200,
                  seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """FD(features) / FD(baseline) against the reference, bias-corrected by a paired bootstrap (the same
    resampled indices in both sets): ratio = 2 R - mean(R*), with the basic interval [2 R - q_hi, 2 R - q_lo]
    (floored at 0), R the plug-in ratio. Resampled sets inflate a small FD more than a large one, so the draws
    R* are biased and a percentile interval can miss R itself."""
    if len(features) != len(baseline):
        raise PhasediffError("a paired Frechet ratio needs the same number of samples in both sets")
    rng, yardstick = np.random.default_rng(seed), FrechetReference.of(reference)
    plug_in = yardstick.distance(features) / yardstick.distance(baseline)
    draws = []
    with one_blas_thread():
        for _ in range(rounds):
            idx = rng.integers(0, len(features), len(features))
            draws.append(yardstick.distance(features[idx]) / yardstick.distance(baseline[idx]))
    q_lo, q_hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return {"ratio": float(max(0.0, 2 * plug_in - np.mean(draws))), "low": float(max(0.0, 2 * plug_in - q_hi)),
            "high": float(max(0.0, 2 * plug_in - q_lo)), "plug_in": float(plug_in)}
