"""A Hugging Face diffusers model (DiT, SD3, a U-Net) as a denoiser of our protocol: x0_hat = D(x_t, t, label)
on x_t = (1 - t) x_0 + t z. Needs the optional extra: pip install 'phasediff[diffusers]'.

Parameterisations (the time conversions live in `paths`, the prediction conversions in `targets`):

- ``"vp-eps"`` (DiT, DDPM U-Nets): the model was trained on x = sqrt(alpha_bar_k) x_0 + sqrt(1 - alpha_bar_k) z
  over a discrete schedule alpha_bar_k, k = 0 .. K - 1 (default: DiT's, linear betas 1e-4 .. 0.02, K = 1000).
  It sees c x_t (c = `paths.vp_input_scale`, the same z) at the fractional timestep `paths.vp_timestep`(t),
  predicts z, and x0 = (x_t - t z) / (1 - t). Outside the table's times the timestep is clipped to its ends;
  ``t_max``, the time of its noisiest step (0.9937 for DiT), is where a sampler should start: at t = 1 an eps
  prediction says nothing about x_0 (the division by 1 - t blows up).
- ``"flow"`` (SD3): the model was trained on x = (1 - sigma) x_0 + sigma z, our path with sigma = t. It sees x_t
  at timestep N t (`paths.flow_timestep`), predicts v = z - x_0, and x0 = x_t - t v.

An output with twice the input channels (DiT's learned variance) is read as [prediction, variance]. Labels:
a DiT is class-conditional with null label ``num_classes`` (1000 for DiT-XL/2), given to samples without a
label; other models take a label only if ``num_classes`` is given. ``inputs`` are further keyword arguments of
every model call (SD3's ``encoder_hidden_states`` and ``pooled_projections``), a batch of one broadcast.

``radii`` (an int, or one per attention layer) turns on the local-attention probe of `local_attention` for
the samples whose t lies in ``window``: the token receptive field is then ``token_radius`` = sum(radii),
and ``radius`` (pixels) is (token_radius + 1) p - 1 where the window covers [0, 1] (None: global somewhere).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from phasediff import paths
from phasediff.adapters.local_attention import LocalAttentionProbe, check_radii, pixel_radius
from phasediff.denoisers.base import check_inputs
from phasediff.denoisers.compose import check_windows
from phasediff.denoisers.targets import to_x0
from phasediff.errors import PhasediffError

try:
    import diffusers
except ImportError:  # the optional extra is missing
    raise PhasediffError("the diffusers adapter needs diffusers: pip install 'phasediff[diffusers]'") from None

PARAMETERISATIONS = {"vp-eps": "eps", "flow": "v"}  # parameterisation -> our kind of the model's raw output


def _config(model: nn.Module, key: str) -> Any:
    value = getattr(getattr(model, "config", None), key, None)
    if value is None:
        raise PhasediffError(f"{type(model).__name__} has no config.{key}: not a diffusers model?")
    return value


def _dit_classes(model: nn.Module) -> int | None:
    """The number of classes of a DiT (its null label); None for other models."""
    if isinstance(model, diffusers.DiTTransformer2DModel):
        return int(model.config.num_embeds_ada_norm)
    return None


class DiffusersDenoiser(nn.Module):
    """D(x_t, t, label) -> x0_hat from a diffusers model of the given parameterisation (see the module docstring)."""

    def __init__(self, model: nn.Module, parameterisation: str, *, alpha_bars=None, num_train_timesteps: int = 1000,
                 num_classes: int | None = None, inputs: Mapping[str, Tensor] | None = None,
                 radii: int | Sequence[int] | None = None, window: Sequence[float] = (0.0, 1.0)):
        super().__init__()
        if parameterisation not in PARAMETERISATIONS:
            raise PhasediffError(f"parameterisation must be one of {', '.join(PARAMETERISATIONS)}, "
                                 f"got {parameterisation!r}")
        if parameterisation == "flow" and alpha_bars is not None:
            raise PhasediffError("alpha_bars belong to a VP schedule, not to a flow model")
        if num_train_timesteps < 1:
            raise PhasediffError(f"num_train_timesteps must be >= 1, got {num_train_timesteps}")
        self.model, self.parameterisation = model, parameterisation
        self.channels = int(_config(model, "in_channels"))
        self.alpha_bars = (paths.check_alpha_bars(paths.linear_beta_alpha_bars() if alpha_bars is None else alpha_bars)
                           if parameterisation == "vp-eps" else None)
        self.num_train_timesteps = num_train_timesteps
        self.t_max = 1.0 if self.alpha_bars is None else float(paths.time_from_vp_alpha_bar(self.alpha_bars[-1]))
        self.num_classes = _dit_classes(model) if num_classes is None else int(num_classes)
        self.inputs = dict(inputs or {})
        self.window = check_windows([window])[0]
        self.probe = None if radii is None else LocalAttentionProbe.on(model)
        self.radii = None if radii is None else check_radii(radii, len(self.probe.layers))
        self.patch = None if radii is None else int(_config(model, "patch_size"))
        self.token_radius = None if radii is None else sum(self.radii)
        self.radius = (pixel_radius(self.token_radius, self.patch)
                       if radii is not None and self.window == (0.0, 1.0) else None)

    def extra_repr(self) -> str:
        local = "" if self.radii is None else f", radii={self.radii}, window={self.window}"
        return f"{self.parameterisation}, classes={self.num_classes}{local}"

    def forward(self, x_t: Tensor, t: Tensor | float, label: Tensor | None = None) -> Tensor:
        """x0_hat for x_t of shape (B, C, H, W) at times t (float or (B,) tensor)."""
        t = check_inputs(x_t, t, (self.channels, None, None))
        kwargs = {**self._inputs(len(x_t), x_t.device), **self._labels(label, x_t)}
        x, timestep = self._model_time(x_t, t)
        dtype = self._dtype(x_t)  # the timestep stays float32 (float64 for a float64 model): fp16 rounds it
        clock = torch.float64 if dtype == torch.float64 else torch.float32
        with self._restricted(x_t, t):
            out = self.model(x.to(dtype), timestep=timestep.to(clock), return_dict=False, **kwargs)[0]
        return to_x0(self._prediction(out).to(x_t.dtype), PARAMETERISATIONS[self.parameterisation], x_t, t)

    def _model_time(self, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """The model's input and timestep for our (x_t, t): (c x_t, k(t)) for a VP model, (x_t, N t) for a flow."""
        if self.parameterisation == "flow":
            return x_t, paths.flow_timestep(t, self.num_train_timesteps)
        steps = paths.vp_timestep(t.detach().double().cpu().numpy(), self.alpha_bars)
        return x_t * paths.vp_input_scale(t).reshape(-1, 1, 1, 1), torch.as_tensor(steps, device=x_t.device)

    def _dtype(self, x_t: Tensor) -> torch.dtype:
        parameter = next(self.model.parameters(), None)
        return x_t.dtype if parameter is None else parameter.dtype

    def _inputs(self, batch: int, device) -> dict[str, Tensor]:
        """The extra inputs on the device, a batch of one broadcast to ``batch``."""
        out = {}
        for key, value in self.inputs.items():
            if value.shape[0] not in (1, batch):
                raise PhasediffError(f"input {key} has batch {value.shape[0]}; it must be 1 or {batch}")
            out[key] = value.to(device).expand(batch, *value.shape[1:])
        return out

    def _labels(self, label: Tensor | None, x_t: Tensor) -> dict[str, Tensor]:
        """{"class_labels": labels} for a class-conditional model (the null label where label is None)."""
        if self.num_classes is None:
            if label is not None:
                raise PhasediffError("this model is unconditional; it takes no label")
            return {}
        if label is None:
            return {"class_labels": torch.full((len(x_t),), self.num_classes, dtype=torch.long, device=x_t.device)}
        label = torch.as_tensor(label, dtype=torch.long, device=x_t.device)
        if label.shape != (len(x_t),):
            raise PhasediffError(f"label must have shape ({len(x_t)},), got {tuple(label.shape)}")
        if bool(((label < 0) | (label > self.num_classes)).any()):
            raise PhasediffError(f"labels must lie in 0..{self.num_classes - 1} (or {self.num_classes}: none)")
        return {"class_labels": label}

    def _restricted(self, x_t: Tensor, t: Tensor):
        """The local-attention probe for this call (samples with t in the window), or nothing."""
        if self.probe is None:
            return nullcontext()
        height, width = x_t.shape[-2:]
        if height % self.patch or width % self.patch:
            raise PhasediffError(f"the image ({height} x {width}) is not a whole number of {self.patch} x "
                                 f"{self.patch} patches")
        lo, hi = self.window
        return self.probe.restricted(self.radii, (height // self.patch, width // self.patch), (t >= lo) & (t <= hi))

    def _prediction(self, out: Tensor) -> Tensor:
        """The model's prediction: all of ``out``, or its first half when it also predicts a variance."""
        if out.shape[1] == 2 * self.channels:
            return out[:, : self.channels]
        if out.shape[1] != self.channels:
            raise PhasediffError(f"the model returned {out.shape[1]} channels for {self.channels} input channels")
        return out
