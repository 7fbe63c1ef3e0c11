"""Denoisers built from denoisers: every composite is itself a denoiser ``D(x_t, t, label=None) -> x0_hat``
with a ``radius``, so samplers and diagnostics take it unchanged and composites nest.

- `Piecewise([(t_lo, t_hi, D_1), ...], default)`: D_k runs for the samples whose t lies in [t_lo, t_hi]
  (the first piece listed wins where two share an end), ``default`` for the rest; decided per sample.
- `Guided(model, scale)`: classifier-free guidance, x0 = x0(none) + scale (x0(label) - x0(none)).
- `Conditioned(model, label)` fixes the label; `Unconditional(model)` drops it.

The paper's hybrid sampler is ``Piecewise([(0.2, 0.5, global_)], default=Unconditional(local))``; the class
label only inside [0.4, 0.5] is ``Piecewise([(0.4, 0.5, Guided(g, 3.0))], default=Unconditional(g))``; a guided
hybrid is ``Piecewise([(0.1, 0.9, Guided(g, 2.0))], default=Unconditional(local))``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from phasediff.denoisers.base import check_inputs
from phasediff.errors import PhasediffError

Window = tuple[float, float]


def check_windows(windows: Sequence[Sequence[float]], disjoint: bool = True) -> list[Window]:
    """Validated windows (t_lo, t_hi) with 0 <= t_lo <= t_hi <= 1, in the given order; with ``disjoint``,
    no two may share a point (sorted); otherwise only a shared end is allowed."""
    out = []
    for window in windows:
        if len(window) != 2:
            raise PhasediffError(f"a window is a pair (t_lo, t_hi), got {window!r}")
        lo, hi = float(window[0]), float(window[1])
        if not 0.0 <= lo <= hi <= 1.0:
            raise PhasediffError(f"a window needs 0 <= t_lo <= t_hi <= 1, got [{lo}, {hi}]")
        out.append((lo, hi))
    ordered = sorted(out)
    for (_, hi), (lo, _) in zip(ordered, ordered[1:]):
        if lo < hi or (disjoint and lo == hi):
            raise PhasediffError(f"windows overlap: {ordered}")
    return ordered if disjoint else out


def _modules(members: Sequence) -> nn.ModuleList:
    """The members that are modules, so that ``.to(device)`` and ``.eval()`` reach them."""
    unique = {id(m): m for m in members if isinstance(m, nn.Module)}
    return nn.ModuleList(unique.values())


def _radius_of(members: Sequence) -> int | None:
    """The largest member radius; None (global) if any member is global."""
    radii = [getattr(m, "radius", None) for m in members]
    return None if any(r is None for r in radii) else max(radii)


class Piecewise(nn.Module):
    """D(x_t, t) = D_k(x_t, t) for the first piece k with t_lo <= t <= t_hi, ``default`` otherwise.

    Pieces may share an end but not overlap. ``names`` (optional, {name: member}) labels the members in
    ``evaluations``, the number of images each member has denoised; unnamed members are called by their
    position ("piece 0", ...) and "default". Labels are passed to every member: wrap a member that must not
    see them in `Unconditional`.
    """

    def __init__(self, pieces: Sequence[tuple[float, float, object]], default,
                 names: Mapping[str, object] | None = None):
        super().__init__()
        windows = check_windows([(lo, hi) for lo, hi, _ in pieces], disjoint=False)
        self.pieces = [(lo, hi, member) for (lo, hi), (_, _, member) in zip(windows, pieces)]
        self.default = default
        members = [member for _, _, member in self.pieces] + [default]
        self.members = _modules(members)
        self.radius = _radius_of(members)
        label_of = {id(member): name for name, member in (names or {}).items()}
        self.names = [label_of.get(id(m), f"piece {i}") for i, (_, _, m) in enumerate(self.pieces)]
        self.names.append(label_of.get(id(default), "default"))
        self.evaluations = dict.fromkeys(self.names, 0)

    def extra_repr(self) -> str:
        return ", ".join(f"[{lo:g}, {hi:g}]: {name}" for (lo, hi, _), name in zip(self.pieces, self.names)) \
            + f", otherwise: {self.names[-1]}"

    def choose(self, t: Tensor) -> Tensor:
        """(B,) index of the member that runs at each time: its piece, or len(pieces) for the default."""
        choice = torch.full(t.shape, len(self.pieces), dtype=torch.long, device=t.device)
        for k in reversed(range(len(self.pieces))):  # the first piece listed wins at a shared end
            lo, hi, _ = self.pieces[k]
            choice[(t >= lo) & (t <= hi)] = k
        return choice

    def forward(self, x_t: Tensor, t, label: Tensor | None = None) -> Tensor:
        t = check_inputs(x_t, t)
        choice = self.choose(t)
        members = [member for _, _, member in self.pieces] + [self.default]
        out = None
        for k in torch.unique(choice).tolist():
            rows = choice == k
            count = int(rows.sum())
            self.evaluations[self.names[k]] += count
            if count == len(x_t):  # the whole batch: no gather, the member's own batching
                return members[k](x_t, t, label)
            if out is None:
                out = torch.empty_like(x_t)
            out[rows] = members[k](x_t[rows], t[rows], None if label is None else label[rows])
        return out


class Guided(nn.Module):
    """Classifier-free guidance: x0 = x0(x_t, t) + scale (x0(x_t, t, label) - x0(x_t, t)); scale 1 is the
    conditional model, 0 the unconditional one; without a label, the unconditional answer."""

    def __init__(self, model, scale: float):
        super().__init__()
        if getattr(model, "num_classes", None) is None:
            raise PhasediffError("guidance needs a class-conditional network")
        if not math.isfinite(float(scale)):
            raise PhasediffError(f"the guidance scale must be a finite number, got {scale}")
        self.model, self.scale = model, float(scale)
        self.radius = getattr(model, "radius", None)
        self.num_classes = model.num_classes

    def extra_repr(self) -> str:
        return f"scale={self.scale:g}"

    def forward(self, x_t: Tensor, t, label: Tensor | None = None) -> Tensor:
        uncond = self.model(x_t, t, None)
        if label is None:
            return uncond
        return uncond + self.scale * (self.model(x_t, t, label) - uncond)


class Conditioned(nn.Module):
    """The model with its label fixed to ``label`` for every sample (the incoming label is ignored)."""

    def __init__(self, model, label: int):
        super().__init__()
        classes = getattr(model, "num_classes", None)
        if classes is None or not 0 <= int(label) < classes:
            raise PhasediffError(f"label {label} needs a conditional model with that class")
        self.model, self.label = model, int(label)
        self.radius = getattr(model, "radius", None)
        self.num_classes = classes

    def extra_repr(self) -> str:
        return f"label={self.label}"

    def forward(self, x_t: Tensor, t, label: Tensor | None = None) -> Tensor:
        fixed = torch.full((len(x_t),), self.label, dtype=torch.long, device=x_t.device)
        return self.model(x_t, t, fixed)


class Unconditional(nn.Module):
    """The model without a label: every sample gets the null label (the model's "no label")."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.radius = getattr(model, "radius", None)

    def forward(self, x_t: Tensor, t, label: Tensor | None = None) -> Tensor:
        return self.model(x_t, t, None)
