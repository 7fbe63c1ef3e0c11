"""The local-attention probe: self-attention restricted to tokens within Chebyshev radius r on the token grid,
switched on only for the samples whose t lies in a time window, and the gradient test of a receptive field.

Geometry. A patch transformer cuts the image into p x p patches, one token each, on an h x w grid (row-major).
Only attention mixes tokens: the patch embedding, norms, MLPs and the final projection act on one token at a
time. A layer masked to radius r_l lets a token see the tokens within Chebyshev distance r_l, so a stack of
masked layers sees exactly the Minkowski sum of the squares:

    token receptive field  R = r_1 + ... + r_N     (every layer at r: N r, not r),
    pixel receptive field  (R + 1) p - 1           (a pixel sees its own patch and the patches R tokens away).

The probe of the concurrence paper masks every layer at r, which makes the model local at N r, not r;
`strict_radii` spreads a wanted R over the layers instead. `measured_radius` measures what a model sees.

Mechanism. `LocalAttentionProbe.on(model)` wraps the processor of each image self-attention layer once; the
wrappers stay inert (the original processor, untouched) until `restricted(radii, grid, selected)` tells them,
for the duration of one model call, which radius each layer has and which samples are masked. They hand the
original processor an additive mask (-inf outside the radius), so the attention itself is the model's own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from phasediff.errors import PhasediffError

Grid = tuple[int, int]


def chebyshev_mask(grid: Grid, radius: int, device=None) -> Tensor:
    """(N, N) bool over the N = h w tokens of the grid (row-major): True where max(|i - i'|, |j - j'|) <= radius."""
    h, w = grid
    rows = torch.arange(h, device=device).repeat_interleave(w)
    cols = torch.arange(w, device=device).repeat(h)
    return ((rows[:, None] - rows[None]).abs() <= radius) & ((cols[:, None] - cols[None]).abs() <= radius)


def strict_radii(radius: int, layers: int) -> list[int]:
    """Per-layer radii that sum to ``radius`` (as even as possible, the first layers one larger): with them a
    stack of ``layers`` masked attention layers has token receptive field exactly ``radius``."""
    if radius < 0 or layers < 1:
        raise PhasediffError(f"need radius >= 0 and layers >= 1, got {radius}, {layers}")
    return [radius // layers + (k < radius % layers) for k in range(layers)]


def check_radii(radii: int | Sequence[int], layers: int) -> list[int]:
    """One radius per attention layer: an int (every layer the same) or a sequence of ``layers`` ints >= 0."""
    radii = [radii] * layers if isinstance(radii, int) else radii
    if not isinstance(radii, Sequence) or len(radii) != layers or any(not isinstance(r, int) or r < 0 for r in radii):
        raise PhasediffError(f"radii must be an int >= 0 or {layers} of them (one per attention layer), got {radii}")
    return list(radii)


def pixel_radius(token_radius: int, patch: int) -> int:
    """(R + 1) p - 1: the Chebyshev radius in pixels of a model whose tokens (p x p patches) see R tokens away."""
    return (token_radius + 1) * patch - 1


class MaskedProcessor:
    """An attention processor that calls ``base``, adding -inf to the scores of the query-key pairs farther apart
    than the layer's radius for the selected samples, while its probe is restricted; ``base`` unchanged otherwise."""

    def __init__(self, base: Callable, probe: LocalAttentionProbe, layer: int):
        self.base, self.probe, self.layer = base, probe, layer

    def __call__(self, attn, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, **kwargs) -> Tensor:
        mask = self.probe.mask(self.layer, hidden_states)
        if mask is not None:
            if encoder_hidden_states is not None or attention_mask is not None:
                raise PhasediffError("local attention masks self-attention only; this layer got a context or a mask")
            attention_mask = mask
        return self.base(attn, hidden_states, encoder_hidden_states, attention_mask=attention_mask, **kwargs)


class LocalAttentionProbe:
    """The masked processors of one model's image self-attention layers, and the state of the current call."""

    def __init__(self, layers: Sequence[nn.Module]):
        self.layers = list(layers)
        self.radii: list[int] | None = None
        self.grid: Grid | None = None
        self.selected: Tensor | None = None
        for k, layer in enumerate(self.layers):
            layer.set_processor(MaskedProcessor(layer.get_processor(), self, k))

    @classmethod
    def on(cls, model: nn.Module) -> LocalAttentionProbe:
        """The probe of a DiT-style transformer (self-attention ``attn1`` in ``transformer_blocks``), installed on
        first use and shared by every later caller."""
        blocks = getattr(model, "transformer_blocks", None)
        layers = [block.attn1 for block in blocks or () if getattr(block, "attn1", None) is not None]
        if not layers or getattr(getattr(model, "config", None), "patch_size", None) is None:
            raise PhasediffError(f"local attention needs a patch transformer with self-attention layers "
                                 f"(transformer_blocks[i].attn1, as in DiT); {type(model).__name__} has none")
        processor = layers[0].get_processor()
        return processor.probe if isinstance(processor, MaskedProcessor) else cls(layers)

    @contextmanager
    def restricted(self, radii: Sequence[int], grid: Grid, selected: Tensor):
        """For the calls inside: layer k sees radius radii[k] on the h x w token grid, for the samples where the
        (B,) bool ``selected`` is True."""
        self.radii, self.grid, self.selected = check_radii(list(radii), len(self.layers)), grid, selected
        try:
            yield self
        finally:
            self.radii = self.grid = self.selected = None

    def mask(self, layer: int, hidden_states: Tensor) -> Tensor | None:
        """(B, N, N) additive mask of the layer for the current call (0 inside the radius or for samples not
        selected, -inf outside), or None when no sample is masked."""
        if self.radii is None or not bool(self.selected.any()):
            return None
        h, w = self.grid
        if hidden_states.ndim != 3 or hidden_states.shape[:2] != (len(self.selected), h * w):
            raise PhasediffError(f"layer {layer} got hidden states {tuple(hidden_states.shape)}, not "
                                 f"({len(self.selected)}, {h * w}, .) for a {h} x {w} token grid")
        outside = ~chebyshev_mask(self.grid, self.radii[layer], hidden_states.device)
        block = self.selected.to(hidden_states.device)[:, None, None] & outside
        return torch.zeros(block.shape, dtype=hidden_states.dtype, device=hidden_states.device).masked_fill(
            block, float("-inf"))


def measured_radius(denoiser: Callable, x: Tensor, t: float, centre: tuple[int, int], cell: int = 1,
                    label: Tensor | None = None) -> int:
    """Gradient test of the receptive field: the largest Chebyshev distance, in cells of side ``cell`` (1:
    pixels, p: tokens), from the cell ``centre`` (row, col) to an input cell on which the output inside the
    centre cell depends, i.e. where d output[centre cell] / d x is nonzero. ``x`` is one image (1, C, H, W)."""
    if x.ndim != 4 or x.shape[0] != 1 or x.shape[-2] % cell or x.shape[-1] % cell:
        raise PhasediffError(f"x must be one image (1, C, H, W) with H and W multiples of {cell}, got {tuple(x.shape)}")
    h, w = x.shape[-2] // cell, x.shape[-1] // cell
    row, col = centre
    if not (0 <= row < h and 0 <= col < w):
        raise PhasediffError(f"centre {centre} lies outside the {h} x {w} grid of cells")
    x = x.detach().clone().requires_grad_(True)
    out = denoiser(x, t, label)
    out[0, :, row * cell:(row + 1) * cell, col * cell:(col + 1) * cell].sum().backward()
    seen = x.grad[0].abs().sum(0).reshape(h, cell, w, cell).sum((1, 3)) != 0
    if not bool(seen.any()):
        raise PhasediffError("the output at the centre does not depend on the input at all")
    rows, cols = torch.nonzero(seen, as_tuple=True)
    return int(torch.maximum((rows - row).abs(), (cols - col).abs()).max())
