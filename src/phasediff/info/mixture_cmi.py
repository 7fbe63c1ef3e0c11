"""Conditional mutual information of a Gaussian mixture along the noise path, exact up to Monte Carlo.

I_t(A:C|B) = E_{x ~ p_t} [log p_t(x_A | x_BC) - log p_t(x_A | x_B)]
           = E_{x ~ p_t} [log p_t(x_ABC) - log p_t(x_BC) - log p_t(x_AB) + log p_t(x_B)]   (log p(x_B) = 0 if B is empty).
Every log-density is exact (mixture marginals); the only error is the Monte Carlo one, reported as
the standard error std / sqrt(n) of the per-sample integrand.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from phasediff.data.mixture import GaussianMixture, check_count, check_time, flatten_region
from phasediff.errors import PhasediffError
from phasediff.paths import add_noise


def mixture_cmi(model: GaussianMixture, t: float, A: Any, B: Any, C: Any, n_samples: int,
                rng: Any) -> tuple[float, float]:
    """(I_t(A:C|B), standard error) by Monte Carlo over n_samples draws of p_t; masks over (H, W) or flat D."""
    values, stderrs = mixture_cmi_grid(model, [t], [(A, B, C)], n_samples, rng)
    return float(values[0, 0]), float(stderrs[0, 0])


def mixture_cmi_grid(model: GaussianMixture, ts: Sequence[float], partitions: Sequence[tuple[Any, Any, Any]],
                     n_samples: int, rng: Any) -> tuple[np.ndarray, np.ndarray]:
    """I_t(A:C|B) and standard errors, both (len(ts), len(partitions)), for every t and (A, B, C) triple.

    One draw (x_0, z) serves every t (x_t = (1 - t) x_0 + t z is a sample of p_t) and every partition:
    common random numbers, so the curves are smooth in t and r. Each distinct region's log-density
    (e.g. the shared log p_t(x_ABC)) is computed once per t.
    """
    times = [check_time(t) for t in ts]
    if not times:
        raise PhasediffError("mixture_cmi_grid: no times given")
    regions, coefficients = _integrand_terms(model.shape, partitions)
    n = check_count(n_samples, "n_samples", 2)
    rng = np.random.default_rng(rng)
    x0, _ = model.draw(n, rng)
    z = rng.standard_normal(x0.shape)
    values = np.empty((len(times), len(coefficients)))
    stderrs = np.empty_like(values)
    for i, t in enumerate(times):
        integrand = model.noised(t).log_densities(add_noise(x0, t, z), regions) @ coefficients.T
        values[i] = integrand.mean(0)
        stderrs[i] = integrand.std(0, ddof=1) / np.sqrt(n)
    return values, stderrs


def _integrand_terms(shape: tuple[int, int, int], partitions: Sequence[tuple[Any, Any, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct non-empty regions (M, D) and a coefficient matrix (P, M) such that, per sample,
    integrand_p = sum_m coef[p, m] log p(x_{region m}) = log p(x_ABC) - log p(x_BC) - log p(x_AB) + log p(x_B)."""
    if len(partitions) == 0:
        raise PhasediffError("mixture_cmi: no (A, B, C) partitions given")
    index: dict[bytes, int] = {}
    regions: list[np.ndarray] = []
    rows: list[dict[int, float]] = []
    for triple in partitions:
        if len(triple) != 3:
            raise PhasediffError("mixture_cmi: each partition must be an (A, B, C) triple of masks")
        a, b, c = (flatten_region(m, shape) for m in triple)
        if not a.any():
            raise PhasediffError("mixture_cmi: region A is empty")
        if (a & b).any() or (a & c).any() or (b & c).any():
            raise PhasediffError("mixture_cmi: regions A, B and C must be disjoint")
        row: dict[int, float] = {}
        for region, sign in ((a | b | c, 1.0), (b | c, -1.0), (a | b, -1.0), (b, 1.0)):
            if region.any():
                m = index.setdefault(region.tobytes(), len(regions))
                if m == len(regions):
                    regions.append(region)
                row[m] = row.get(m, 0.0) + sign
        rows.append(row)
    coefficients = np.zeros((len(rows), len(regions)))
    for p, row in enumerate(rows):
        for m, value in row.items():
            coefficients[p, m] = value
    return np.stack(regions), coefficients
