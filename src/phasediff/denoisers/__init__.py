"""Denoisers: one protocol ``D(x_t, t, label=None) -> x0_hat`` with ``radius`` (int, or None for global).

- `targets`: conversions between x0, noise and velocity predictions;
- `base`: the protocol, the network base class, `build(config)`;
- `local`: strictly local CNN of radius r; `unet`: global U-Net;
- `analytic`: training-free denoisers (empirical posterior mean, local patch posterior, Wiener, local Wiener);
- `checkpoint`: `save` / `load` of safetensors weights with a JSON sidecar.
"""

from __future__ import annotations

from phasediff.denoisers.analytic import (EmpiricalDenoiser, LocalWienerDenoiser, PatchPosteriorDenoiser,
                                          WienerDenoiser)
from phasediff.denoisers.base import Denoiser, NetworkDenoiser, build
from phasediff.denoisers.checkpoint import load, read_info, save
from phasediff.denoisers.local import LocalDenoiser, valid_output_mask
from phasediff.denoisers.targets import KINDS, convert, target, to_x0
from phasediff.denoisers.unet import UNet

__all__ = ["KINDS", "Denoiser", "EmpiricalDenoiser", "LocalDenoiser", "LocalWienerDenoiser", "PatchPosteriorDenoiser",
           "WienerDenoiser", "NetworkDenoiser", "UNet", "build", "convert", "load",
           "read_info", "save", "target", "to_x0", "valid_output_mask"]
