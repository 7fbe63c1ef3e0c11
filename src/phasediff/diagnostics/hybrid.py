"""A hybrid denoiser: the global network inside chosen time windows, a local one everywhere else.

    D_hybrid(x_t, t) = D_global(x_t, t)  if t lies in one of the windows [a_k, b_k],
                       D_local(x_t, t)   otherwise,

decided per sample, so every sampler runs it unchanged. The paper's schedule "local-global-local" with
window [0.2, 0.5] is ``Hybrid(local, global, [(0.2, 0.5)])``; all-global is ``[(0, 1)]``, all-local ``[]``.
The hybrid counts how many images each model has denoised (network function evaluations). The cheap
model may also be a `WienerLocalDenoiser` (global only through its linear part).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from phasediff.errors import PhasediffError

Window = tuple[float, float]


def local_radius(model) -> int | None:
    """The radius of a hybrid's cheap model: its own for a strictly local denoiser, its local correction's
    for a Wiener + local one; None for anything else (a global model)."""
    from phasediff.denoisers.wiener_local import WienerLocalDenoiser

    return model.local.radius if isinstance(model, WienerLocalDenoiser) else getattr(model, "radius", None)


def check_windows(windows: Sequence[Sequence[float]]) -> list[Window]:
    """Sorted, validated windows: 0 <= a <= b <= 1 and no two overlap."""
    out = []
    for window in windows:
        if len(window) != 2:
            raise PhasediffError(f"a window is a pair (t_lo, t_hi), got {window!r}")
        lo, hi = float(window[0]), float(window[1])
        if not 0.0 <= lo <= hi <= 1.0:
            raise PhasediffError(f"a window needs 0 <= t_lo <= t_hi <= 1, got [{lo}, {hi}]")
        out.append((lo, hi))
    out.sort()
    for (_, hi), (lo, _) in zip(out, out[1:]):
        if lo <= hi:
            raise PhasediffError(f"windows overlap: {out}")
    return out


def parse_window(text: str) -> list[Window]:
    """'A:B' or 'A:B,C:D' -> [(A, B), (C, D)]; 'none' -> [] (all local); 'all' -> [(0, 1)] (all global)."""
    text = text.strip().lower()
    if text == "none":
        return []
    if text == "all":
        return [(0.0, 1.0)]
    try:
        windows = [tuple(float(v) for v in part.split(":")) for part in text.split(",")]
    except ValueError:
        raise PhasediffError(f"--window must look like 0.2:0.5 (or auto, all, none), got {text!r}") from None
    if any(len(w) != 2 for w in windows):
        raise PhasediffError(f"--window must look like 0.2:0.5 (or auto, all, none), got {text!r}")
    return check_windows(windows)


def global_steps(windows: Sequence[Window], times: Sequence[float]) -> int:
    """How many of the evaluation times fall inside a window (so run the global model)."""
    return sum(any(lo <= t <= hi for lo, hi in windows) for t in times)


class Hybrid(nn.Module):
    """Dispatch on t between a local denoiser (unconditional) and a global one (which gets the label, if any);
    the result has radius None (global)."""

    radius = None

    def __init__(self, local, global_, windows: Sequence[Sequence[float]]):
        super().__init__()
        self.local, self.global_ = local, global_
        self.windows = check_windows(windows)
        self.evaluations = {"local": 0, "global": 0}

    def extra_repr(self) -> str:
        return f"windows={self.windows}"

    def inside(self, t: Tensor) -> Tensor:
        """Boolean mask: which times use the global model."""
        mask = torch.zeros_like(t, dtype=torch.bool)
        for lo, hi in self.windows:
            mask |= (t >= lo) & (t <= hi)
        return mask

    def forward(self, x_t: Tensor, t, label: Tensor | None = None) -> Tensor:
        t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device)
        t = t.expand(len(x_t)) if t.ndim == 0 else t
        inside = self.inside(t)
        n_global = int(inside.sum())
        self.evaluations["global"] += n_global
        self.evaluations["local"] += len(x_t) - n_global
        if n_global == len(x_t):
            return self.global_(x_t, t, label)
        if n_global == 0:
            return self.local(x_t, t)
        out = torch.empty_like(x_t)
        out[inside] = self.global_(x_t[inside], t[inside], None if label is None else label[inside])
        out[~inside] = self.local(x_t[~inside], t[~inside])
        return out
