"""The "exact" estimator: the CMI of a synthetic model computed from its closed form.

Gaussian fields (grf, gmrf): the log-det formula on the exact covariance. The two-component mixture
(gmm2): the Gauss-Hermite closed form. Fitted Gaussian mixtures (gmm): exact log-densities averaged by
Monte Carlo, with a standard error.
"""

from __future__ import annotations

import numpy as np

from phasediff.data.fields import GaussianField
from phasediff.data.gmm2 import TwoComponentMixture
from phasediff.errors import PhasediffError
from phasediff.info.gaussian import gaussian_cmi_grid

DEFAULT_MC_SAMPLES = 4000


def exact_cmi(model, ts, partitions, n_samples: int = DEFAULT_MC_SAMPLES, seed: int = 0):
    """(values (T, R), stderr (T, R) or None) for flat-mask (A, B, C) triples."""
    if isinstance(model, GaussianField):
        return gaussian_cmi_grid(model.covariance, ts, partitions), None
    if isinstance(model, TwoComponentMixture):
        columns = [model.cmi(ts, int(A.sum()), int(B.sum()), int(C.sum())) for A, B, C in partitions]
        return np.stack(columns, axis=1), None
    from phasediff.data.mixture import GaussianMixture

    if isinstance(model, GaussianMixture):
        from phasediff.info.mixture_cmi import mixture_cmi_grid

        return mixture_cmi_grid(model, ts, partitions, n_samples, np.random.default_rng(seed))
    raise PhasediffError("the exact estimator serves grf, gmrf, gmm2 and gmm models only")
