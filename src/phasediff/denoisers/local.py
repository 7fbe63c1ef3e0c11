"""A strictly local denoiser: the output at a pixel depends only on inputs within Chebyshev distance r.

Architecture (pre-activation residual stack on a width-``width`` feature map)::

    h = stem_1x1([x_t, positions?])
    repeat r times:  h = h + mix_1x1^depth( FiLM_t( conv_3x3(h) ) )      (SiLU before every 1x1)
    out = head_1x1(SiLU(h))

Why it is local: each 3x3 convolution grows the receptive field by one pixel in every direction; the
1x1 convolutions, SiLU and the residual additions grow it by nothing; FiLM (h * (1 + scale) + shift, with
scale and shift from an MLP of a sinusoidal embedding of t and the label) is the same at every pixel; zero
padding puts a constant outside the image, not another pixel. With ``periodic`` (data on a torus, such as the
Ising model) the padding wraps around instead, and the square is measured in the torus's distance. There is no normalisation, pooling or
attention over space. So the receptive field is exactly the (2r + 1) x (2r + 1) square, clipped at the
border. Position channels ((y, x) of the pixel in the full image) are functions of the pixel itself, so a
position-aware model is just as local.

Training on crops: an output sees its full true context when it is at least r pixels from every crop
edge that is not also an image border; `valid_output_mask` marks those outputs for the loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from phasediff.denoisers.base import ConditionEmbedding, NetworkDenoiser, image_shape
from phasediff.errors import PhasediffError


def _valid_1d(start: int, length: int, full: int, radius: int) -> Tensor:
    i = torch.arange(length)
    return ((i >= radius) | (start == 0)) & ((i < length - radius) | (start + length == full))


def valid_output_mask(crop_box: Sequence[int], image_size: int | Sequence[int], radius: int) -> Tensor:
    """(h, w) bool mask of the outputs of a crop that see exactly what they would see in the full image.

    crop_box = (y0, x0, h, w) in image coordinates. Along y, row i is valid when its context rows
    y0 + i - r .. y0 + i + r that lie inside the image all lie inside the crop: i >= r or y0 = 0, and
    i < h - r or y0 + h = H. Likewise along x; the square context makes the mask the product of both.
    """
    y0, x0, h, w = (int(v) for v in crop_box)
    H, W = image_shape(image_size)
    if min(y0, x0) < 0 or min(h, w) < 1 or y0 + h > H or x0 + w > W:
        raise PhasediffError(f"crop {tuple(crop_box)} does not fit in a {H} x {W} image")
    return _valid_1d(y0, h, H, radius)[:, None] & _valid_1d(x0, w, W, radius)[None, :]


class _Block(nn.Module):
    """conv_3x3 -> FiLM(emb) -> (SiLU -> conv_1x1) x depth; the residual is added by the caller."""

    def __init__(self, width: int, embed_dim: int, depth_1x1: int, periodic: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1, padding_mode="circular" if periodic else "zeros")
        self.film = nn.Linear(embed_dim, 2 * width)
        self.mix = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in range(depth_1x1))

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        u = self.conv(h) * (1 + scale) + shift
        for conv in self.mix:
            u = conv(F.silu(u))
        return u


class LocalDenoiser(NetworkDenoiser):
    """Denoiser of receptive-field radius ``radius`` (exactly ``radius`` 3x3 convolutions); ``periodic``: the
    image is a torus (circular padding)."""

    arch = "local"

    def __init__(self, radius: int, channels: int = 1, width: int = 64, depth_1x1: int = 1,
                 position_channels: bool = False, image_size: int | Sequence[int] | None = None,
                 prediction: str = "v", num_classes: int | None = None, label_dropout: float = 0.1,
                 periodic: bool = False):
        super().__init__(channels=channels, prediction=prediction, num_classes=num_classes,
                         label_dropout=label_dropout, radius=radius, width=width, depth_1x1=depth_1x1,
                         position_channels=position_channels, image_size=image_size,
                         **({"periodic": True} if periodic else {}))
        if not isinstance(radius, int) or radius < 1:
            raise PhasediffError(f"radius must be an int >= 1, got {radius!r}")
        if width < 1 or depth_1x1 < 0:
            raise PhasediffError(f"width must be >= 1 and depth_1x1 >= 0, got {width} and {depth_1x1}")
        if position_channels and image_size is None:
            raise PhasediffError("a denoiser with position channels needs the full image_size")
        if periodic and position_channels:
            raise PhasediffError("a periodic (torus) denoiser has no positions: drop position_channels")
        self.radius = radius
        self.periodic = periodic
        self.position_channels = position_channels
        self.image_size = None if image_size is None else image_shape(image_size)
        embed_dim = 2 * width
        self.embed = ConditionEmbedding(embed_dim, num_classes)
        self.stem = nn.Conv2d(channels + (2 if position_channels else 0), width, 1)
        self.blocks = nn.ModuleList(_Block(width, embed_dim, depth_1x1, periodic) for _ in range(radius))
        self.head = nn.Conv2d(width, channels, 1)

    def predict(self, x_t: Tensor, t: Tensor, label: Tensor | None,
                origin: Sequence[int] | Tensor | None = None) -> Tensor:
        """Raw output; ``origin`` = (y0, x0), or a (B, 2) tensor, is the image position of the crop's top-left."""
        h = x_t
        if self.position_channels:
            h = torch.cat([h, self._positions(x_t, origin)], dim=1)
        h = self.stem(h)
        emb = F.silu(self.embed(t, label))
        for block in self.blocks:
            h = h + block(h, emb)
        return self.head(F.silu(h))

    def _positions(self, x_t: Tensor, origin: Sequence[int] | Tensor | None) -> Tensor:
        """(B, 2, h, w) channels (y, x) of each pixel in the full image, 2 (coord + 0.5) / size - 1 in (-1, 1)."""
        B, _, h, w = x_t.shape
        H, W = self.image_size
        if origin is None and (h, w) != (H, W):
            raise PhasediffError(f"input is {h} x {w}, not the full {H} x {W} image: pass origin=(y0, x0)")
        origin = torch.as_tensor((0, 0) if origin is None else origin, dtype=torch.long, device=x_t.device)
        origin = origin.expand(B, 2) if origin.shape == (2,) else origin
        if origin.shape != (B, 2):
            raise PhasediffError(f"origin must be (y0, x0) or a ({B}, 2) tensor, got shape {tuple(origin.shape)}")
        y0, x0 = origin[:, 0], origin[:, 1]
        if bool(((y0 < 0) | (x0 < 0) | (y0 + h > H) | (x0 + w > W)).any()):
            raise PhasediffError(f"a {h} x {w} crop at these origins does not fit in the {H} x {W} image")
        ys = 2 * (y0[:, None] + torch.arange(h, device=x_t.device) + 0.5) / H - 1
        xs = 2 * (x0[:, None] + torch.arange(w, device=x_t.device) + 0.5) / W - 1
        return torch.stack([ys[:, :, None].expand(B, h, w), xs[:, None, :].expand(B, h, w)], dim=1).to(x_t.dtype)
