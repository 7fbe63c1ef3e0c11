from pathlib import Path

import numpy as np
import pytest

from phasediff.data.mnist import load_idx_dataset
from phasediff.denoisers import load
from phasediff.errors import PhasediffError
from phasediff.metrics import bootstrap_frechet, frechet_distance, nearest_neighbour_ratios, quality

JUDGE = Path(__file__).parents[1] / "checkpoints" / "mnist" / "classifier"


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((200000, 3))
    b = 0.5 + 2.0 * rng.standard_normal((200000, 3))
    # |mu_a - mu_b|^2 + Tr(I + 4 I - 2 * 2 I) = 3 * 0.25 + 3 * 1
    assert frechet_distance(a, b) == pytest.approx(3.75, rel=0.01)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_bootstrap_interval_brackets_the_estimate():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2000, 4)), 0.3 + rng.standard_normal((2000, 4))
    fd, lo, hi, plug_in = bootstrap_frechet(a, b, rounds=40)
    assert lo < fd < hi < 0.5 and fd < plug_in  # 4 * 0.09 = 0.36, the plug-in biased upward
    assert fd == pytest.approx(0.36, abs=0.05)


def test_nearest_neighbour_ratio_flags_copies():
    rng = np.random.default_rng(2)
    training = rng.random((300, 1, 5, 5))
    copies = training[:10] + 1e-4 * rng.standard_normal((10, 1, 5, 5))
    fresh = rng.random((10, 1, 5, 5))
    assert np.all(nearest_neighbour_ratios(copies, training, chunk=64) < 0.05)
    assert np.all(nearest_neighbour_ratios(fresh, training, chunk=64) > 0.5)


def _mnist_test():
    try:
        return load_idx_dataset("mnist", "test")
    except PhasediffError:
        pytest.skip("MNIST not installed")


def test_committed_judge_scores_real_digits_as_real():
    images, labels, _ = _mnist_test()
    judge = load(JUDGE)
    real = images[:2000, None].astype(np.float32) / 255
    reference = images[5000:7000, None].astype(np.float32) / 255
    report = quality(judge, real, reference, rounds=10)
    assert report.confidence > 0.95 and report.frechet_low <= report.frechet <= report.frechet_high
    assert report.frechet < report.frechet_plug_in < 1.5
    assert all(0.05 < f < 0.15 for f in report.class_fractions)
    noise = np.random.default_rng(3).random((500, 1, 28, 28)).astype(np.float32)
    assert quality(judge, noise, reference, rounds=5).frechet > 10 * max(report.frechet_plug_in, 0.1)
