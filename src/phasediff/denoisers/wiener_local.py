"""A cheap denoiser that is global only where it is linear: the Wiener denoiser plus a strictly local network.

    v(x_t, t) = v_W(x_t, t) + f_r(x_t, t),       x0_hat = x_t - t v,

with v_W the velocity of the Wiener (Gaussian posterior mean) denoiser of the training images' moments
mu, S = V diag(l) V^T, in a form that stays finite at t = 0 and for l = 0,

    v_W = (x_t - W(x_t, t)) / t = V diag((t - (1 - t) l) / ((1 - t)^2 l + t^2)) V^T (x_t - (1 - t) mu) - mu,

and f_r a `LocalDenoiser` of radius r trained on what the linear part leaves: the ordinary velocity loss
on the sum. The long-range, Gaussian part of the data's correlations (what makes a strictly local model
fail near noise) costs two products with V (2 D^2 multiply-adds per image, D = C H W; 2.5 MFLOP for
28 x 28, under 1% of the U-Net), and only the nonlinear remainder is local. Whole images only (no crops:
the linear part needs them); the linear part always runs in float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from phasediff.denoisers.analytic import _eigh, _moments, spectral_filter, velocity_gain
from phasediff.denoisers.base import NetworkDenoiser, image_shape
from phasediff.denoisers.local import LocalDenoiser
from phasediff.errors import PhasediffError


class WienerPlusLocalDenoiser(NetworkDenoiser):
    """Wiener denoiser of the training moments plus a strictly local correction of radius ``radius``."""

    arch = "wiener-local"
    radius = None  # the sum sees the whole image; `local.radius` is the correction's

    def __init__(self, radius: int, image_size: int | Sequence[int], channels: int = 1, width: int = 64,
                 depth_1x1: int = 1, position_channels: bool = False, prediction: str = "v",
                 num_classes: int | None = None, label_dropout: float = 0.1):
        super().__init__(channels=channels, prediction=prediction, num_classes=num_classes,
                         label_dropout=label_dropout, radius=radius, image_size=image_size, width=width,
                         depth_1x1=depth_1x1, position_channels=position_channels)
        if prediction != "v":
            raise PhasediffError(f"the Wiener + local denoiser predicts the velocity v, not {prediction!r}")
        self.image_size = image_shape(image_size)
        self.position_channels = position_channels
        self.local = LocalDenoiser(radius, channels=channels, width=width, depth_1x1=depth_1x1,
                                   position_channels=position_channels,
                                   image_size=self.image_size if position_channels else None,
                                   num_classes=num_classes, label_dropout=label_dropout)
        size = channels * math.prod(self.image_size)
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("eigenvalues", torch.zeros(size))
        self.register_buffer("eigenvectors", torch.zeros(size, size))

    def fit_linear(self, train_images) -> WienerPlusLocalDenoiser:
        """Set the linear part to the Wiener denoiser of these images' mean and covariance."""
        mean, covariance, shape = _moments(train_images)
        if tuple(shape) != (self.channels, *self.image_size):
            raise PhasediffError(f"images of shape {tuple(shape)}, the denoiser is for "
                                 f"{(self.channels, *self.image_size)}")
        values, vectors = _eigh(covariance)
        self.mean.copy_(mean)
        self.eigenvalues.copy_(values)
        self.eigenvectors.copy_(vectors)
        return self

    def linear_velocity(self, x_t: Tensor, t: Tensor) -> Tensor:
        """v_W(x_t, t) in float32 (autocast off), shape of x_t."""
        with torch.autocast(x_t.device.type, enabled=False):
            x, t = x_t.float().flatten(1), t.float()[:, None]
            gain = velocity_gain(self.eigenvalues, t)
            return (spectral_filter(x, self.mean, self.eigenvectors, gain, t) - self.mean).reshape(x_t.shape)

    def predict(self, x_t: Tensor, t: Tensor, label: Tensor | None) -> Tensor:
        if tuple(x_t.shape[-2:]) != self.image_size:
            raise PhasediffError(f"the Wiener + local denoiser takes whole {self.image_size[0]} x "
                                 f"{self.image_size[1]} images, got {tuple(x_t.shape[-2:])}")
        local = self.local.predict(x_t, t, label)
        return local + self.linear_velocity(x_t, t).to(local.dtype)
