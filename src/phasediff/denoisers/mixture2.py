"""The exact posterior mean of the two-component mixture x_0 = s mu 1 + sigma g (`data.gmm2`), global or local.

Given s the pixels of x_t = a x_0 + t z (a = 1 - t) are independent N(a s mu, v), v = a^2 sigma^2 + t^2, so a
set R of pixels tells s only through its sum S_R: E[s | x_R] = tanh(a mu S_R / v), and

    E[x_0,i | x_R] = mu E[s | x_R] (1 - a^2 sigma^2 / v) + (a sigma^2 / v) x_t,i        (i in R).

With R the whole image this is the Bayes denoiser; with R the Chebyshev square of radius r around i (clipped
at the border) it is the best denoiser that sees only that square: a strictly local one, whose sign decision
is made by each pixel's neighbourhood alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from phasediff.denoisers.base import check_inputs
from phasediff.errors import PhasediffError
from phasediff.paths import noised_variance, signal_scale


class TwoComponentDenoiser(nn.Module):
    """E[x_0 | x_t on R] for `TwoComponentMixture(L, mu, sigma)`; ``radius`` None: R is the whole image."""

    def __init__(self, mu: float, sigma: float, radius: int | None = None):
        super().__init__()
        if not sigma > 0:
            raise PhasediffError(f"sigma must be > 0, got {sigma}")
        if radius is not None and (isinstance(radius, bool) or not isinstance(radius, int) or radius < 0):
            raise PhasediffError(f"radius must be an integer >= 0 or None, got {radius!r}")
        self.mu, self.sigma, self.radius = float(mu), float(sigma), radius

    @classmethod
    def of(cls, model, radius: int | None = None) -> TwoComponentDenoiser:
        """The denoiser of a `TwoComponentMixture`."""
        return cls(model.mu, model.sigma, radius)

    def extra_repr(self) -> str:
        return f"mu={self.mu:g}, sigma={self.sigma:g}, radius={self.radius}"

    def _sums(self, x: Tensor) -> Tensor:
        """S_R for every pixel: the whole image's sum, or the sum over its clipped (2r + 1)^2 square."""
        if self.radius is None:
            return x.sum(dim=(1, 2, 3), keepdim=True).expand_as(x)
        size = 2 * self.radius + 1
        return F.avg_pool2d(x, size, stride=1, padding=self.radius, count_include_pad=True) * size**2

    def forward(self, x_t: Tensor, t, label=None) -> Tensor:
        t = check_inputs(x_t, t)[:, None, None, None]
        a = signal_scale(t)
        v = noised_variance(self.sigma**2, t)
        sign = torch.tanh(a * self.mu * self._sums(x_t) / v)
        return self.mu * sign * (1 - a**2 * self.sigma**2 / v) + (a * self.sigma**2 / v) * x_t
