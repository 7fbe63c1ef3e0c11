"""One entry point for the CMI I_t(A:C|B_r) on a (t, r) grid, whatever the estimator."""

from __future__ import annotations

import time

import numpy as np

from phasediff.data.dataset import Dataset
from phasediff.errors import PhasediffError
from phasediff.info.exact import DEFAULT_MC_SAMPLES, exact_cmi
from phasediff.info.gaussian import DEFAULT_RIDGE, empirical_gaussian_cmi
from phasediff.info.result import CMIResult
from phasediff.paths import check_times
from phasediff.regions import Tripartition, tripartition

ESTIMATORS = ("exact", "gaussian", "neural", "mine")


def flat_partitions(shape: tuple[int, int, int], parts: list[Tripartition]) -> list[tuple[np.ndarray, ...]]:
    """(A, B, C) masks over the flattened (C, H, W) pixels; every channel of a site belongs to its region."""
    return [tuple(np.broadcast_to(m, shape).ravel() for m in (p.A, p.B, p.C)) for p in parts]


def measure_cmi(data, ts, rs, estimator: str = "gaussian", site=None, patch: int = 1,
                n_samples: int = DEFAULT_MC_SAMPLES, ridge: float = DEFAULT_RIDGE, seed: int = 0,
                neural=None, mine=None) -> CMIResult:
    """I_t(A:C|B_r) for every t in ``ts`` and r in ``rs``.

    ``data`` is a `Dataset` (any estimator; ``exact`` uses its model) or an exact model (``exact`` only).
    ``neural`` holds the `NeuralSettings` of the neural estimator and ``mine`` the `MineSettings` of MINE
    (default settings if None).
    """
    if estimator not in ESTIMATORS:
        raise PhasediffError(f"unknown estimator {estimator!r} (choose from {', '.join(ESTIMATORS)})")
    ts = [float(t) for t in np.atleast_1d(check_times(ts))]
    rs = [int(r) for r in rs]
    is_dataset = isinstance(data, Dataset)
    model = data.model if is_dataset else data
    shape = tuple(data.shape)
    source = data.source if is_dataset else model.describe()
    parts = [tripartition(shape[1:], r, site, patch) for r in rs]
    flat = flat_partitions(shape, parts)
    start = time.perf_counter()
    details: dict = {}
    if estimator == "exact":
        if model is None:
            raise PhasediffError(f"the exact estimator needs a synthetic model (grf, gmrf, gmm2, gmm); {source} has none")
        values, stderr = exact_cmi(model, ts, flat, n_samples=n_samples, seed=seed)
        if stderr is not None:
            details["monte_carlo_samples"] = n_samples
    elif not is_dataset:
        raise PhasediffError(f"the {estimator} estimator needs images, not only a model")
    elif estimator == "neural":
        from phasediff.info.neural import NeuralSettings, neural_cmi

        values, stderr, found = neural_cmi(data, ts, rs, parts[0].site, patch, neural or NeuralSettings(), seed=seed)
        details.update(found)
    elif estimator == "mine":
        from phasediff.info.mine import MineSettings, mine_cmi

        values, stderr, found = mine_cmi(data, ts, rs, parts[0].site, patch, mine or MineSettings(), seed=seed)
        details.update(found)
    else:
        values, stderr = empirical_gaussian_cmi(data.images, ts, flat, ridge=ridge, seed=seed)
        details.update(ridge=ridge, images=len(data), stderr_method="delete-one-block jackknife")
    return CMIResult(
        t=ts, r=rs, cmi=np.asarray(values), stderr=None if stderr is None else np.asarray(stderr),
        estimator=estimator, dataset=source, site=parts[0].site, patch=patch,
        region_sizes=[p.sizes() for p in parts], seconds=time.perf_counter() - start, details=details,
    )
