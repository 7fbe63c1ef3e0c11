"""Analytic denoisers: posterior means that need no training, on the path x_t = (1 - t) x_0 + t z.

- `EmpiricalDenoiser`: the exact E[x_0 | x_t] when x_0 is drawn uniformly from the training images;
- `PatchPosteriorDenoiser`: Kamb & Ganguli's local score machines, the same posterior computed per pixel
  from the (2r + 1)^2 patch around it, with candidate patches from the same location (LS) or from every
  location (ELS);
- `WienerDenoiser` / `LocalWienerDenoiser`: the exact posterior mean for Gaussian data, from the whole
  image or from the neighbourhood of radius r of each pixel.

All are ``torch.nn.Module``s with ``forward(x_t, t, label=None)`` (label ignored) and ``radius``. They work
in float64 by default. Softmax weights are streamed over chunks of candidates with a running
log-normaliser (`RunningMean`), so the answer does not depend on how candidates or queries are batched.
t may be 0: it is clamped to ``T_MIN``, where the posterior means have reached their t -> 0 limits (the
nearest training image or patch; the projection onto the support of the covariance).

Precision: a logit is computed as a dot product of size K (the candidate length), with a rounding error of
about eps K / t^2 nats; in float64 that is negligible, in float32 (``dtype=torch.float32``, about twice as
fast) it reaches ~1% weight error near t = 0.03 for whole 28 x 28 images.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from phasediff.denoisers.base import check_inputs
from phasediff.errors import PhasediffError
from phasediff.paths import noised_variance, signal_scale

T_MIN = 1e-6  # t is clamped to at least this (t = 0 is allowed), so nothing divides by zero
LOGIT_BLOCK = 2**19  # logits per streamed block when chunk is None: keeps a block in the L2 cache


def _train_images(images, dtype: torch.dtype) -> Tensor:
    images = torch.as_tensor(images)
    if images.ndim != 4 or images.shape[0] < 1 or min(images.shape) < 1:
        raise PhasediffError(f"training images must have shape (N, C, H, W) with N >= 1, got {tuple(images.shape)}")
    images = images.to(dtype)
    if not bool(torch.isfinite(images).all()):
        raise PhasediffError("training images contain NaN or infinite values")
    return images


def _inputs(x_t: Tensor, t, shape: tuple[int, ...] | None, like: Tensor) -> tuple[Tensor, Tensor]:
    """(x_t, t) checked by `check_inputs` (x_t of shape (B, *shape), any (B, C, H, W) if shape is None) and
    finite, in the dtype and on the device of ``like``; t clamped below at T_MIN."""
    t = check_inputs(x_t, t, shape, like)
    if not bool(torch.isfinite(x_t).all()):
        raise PhasediffError("x_t contains NaN or infinite values")
    return x_t.to(device=like.device, dtype=like.dtype), t.clamp(min=T_MIN)


def _radius(radius, height: int, width: int) -> int:
    if isinstance(radius, bool) or not isinstance(radius, int) or not 0 <= radius <= max(height, width) - 1:
        raise PhasediffError(f"radius must be an integer in 0..{max(height, width) - 1} for {height}x{width} "
                             f"images, got {radius!r}")
    return radius


def _check_chunk(chunk: int | None) -> int | None:
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise PhasediffError(f"chunk must be a positive integer or None, got {chunk!r}")
    return chunk


def _chunk(chunk: int | None, logits_per_item: int) -> int:
    """Items per streamed block: ``chunk``, or enough for about LOGIT_BLOCK logits."""
    return chunk or max(1, LOGIT_BLOCK // logits_per_item)


def _logit_coefficients(t: Tensor) -> tuple[Tensor, Tensor]:
    """Per-query factors (a / t^2, -a^2 / (2 t^2)), a = 1 - t.

    -|y - a x|^2 / (2 t^2) = (a y.x - a^2 |x|^2 / 2) / t^2 - |y|^2 / (2 t^2); the last term is the same for
    every candidate and cancels in the softmax, so a logit is one dot product [y a/t^2, -a^2/(2t^2)].[x, |x|^2].
    """
    a = signal_scale(t)
    return a / t**2, -(a**2) / (2 * t**2)


def _patch_index(shape: tuple[int, int, int], radius: int) -> Tensor:
    """(P, C (2r + 1)^2) flat indices (c, h, w) of the patch of radius r around each pixel, in the order
    (c, dy, dx); positions outside the image point to index C H W."""
    channels, height, width = shape
    step = torch.arange(-radius, radius + 1)
    rows = torch.arange(height).reshape(-1, 1, 1, 1, 1) + step.reshape(1, 1, 1, -1, 1)  # (H, 1, 1, dy, 1)
    cols = torch.arange(width).reshape(1, -1, 1, 1, 1) + step.reshape(1, 1, 1, 1, -1)  # (1, W, 1, 1, dx)
    chans = torch.arange(channels).reshape(1, 1, -1, 1, 1)
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    flat = torch.where(inside, chans * height * width + rows * width + cols, channels * height * width)
    return flat.reshape(height * width, -1)


class _Scratch:
    """``out=`` tensors of changing shapes carved from one reused buffer; None (a fresh result) when
    ``reuse`` is off, as autograd keeps what it saved and refuses ``out=``."""

    def __init__(self, like: Tensor, reuse: bool):
        self.like, self.reuse, self.data = like, reuse, None

    def __call__(self, *shape: int) -> Tensor | None:
        size = math.prod(shape)
        if not self.reuse:
            return None
        if self.data is None or len(self.data) < size:
            self.data = self.like.new_empty(size)
        return self.data[:size].view(shape)


class RunningMean:
    """Exact softmax average streamed over blocks of candidates, for every row of queries q:

        mean = sum_i e^{l_i} v_i / sum_i e^{l_i},   l_i - shift = [q, -shift] . [c_i, 1].

    ``add(cand, values)`` takes candidate columns (..., K + 2, n) whose last row is ones, and their values
    (..., n, V + 1) whose last column is ones, so the last column of sum_i e^{l_i - m} [v_i, 1] is the
    normaliser. The state is acc = sum_i e^{l_i - m} [v_i, 1] over the blocks so far, with m, a constant
    for autograd, moved after every block to the running log-normaliser (so acc[-1] = 1 in value): exact,
    whatever the blocks. A block is first tried with the shift m folded into the matrix product (no pass
    for a maximum); if that overflows (a candidate beats all earlier ones by ~700 nats in float64, ~88 in
    float32, as happens at small t), it is redone with its own maximum subtracted, and so are the later
    blocks. The mean does not depend on the constant shifts, so gradients are exact. Shifted logits are
    clamped below at log(smallest normal) + 1 (-707 in float64) before the exp: weights under ~1e-307 of
    the largest become ~1e-307 instead of 0 (a negligible change), and exp stays on its fast path (its
    underflowing and subnormal results, common at small t, are 50-200x slower on CPU).
    """

    def __init__(self, query: Tensor, reuse: bool):
        """query (..., R, K + 1); ``reuse``: keep the logits in one buffer (only without gradients)."""
        self.query = torch.cat([query, query.new_zeros(query.shape[:-1] + (1,))], -1)
        self.scratch = _Scratch(query, reuse)
        self.m: Tensor | None = None
        self.acc: Tensor | None = None
        self.lazy = True
        self.floor = math.log(torch.finfo(query.dtype).tiny) + 1

    def _logits(self, cand: Tensor, shift: Tensor) -> Tensor:
        self.query[..., -1] = -shift
        return torch.matmul(self.query, cand, out=self.scratch(*self.query.shape[:-1], cand.shape[-1]))

    def add(self, cand: Tensor, values: Tensor) -> None:
        if self.m is not None and self.lazy:
            part = self._logits(cand, self.m).clamp_min_(self.floor).exp_() @ values
            if bool(torch.isfinite(part).all()):
                return self._merge(part, self.m)
            self.lazy = False
        logits = self._logits(cand, self.query.new_zeros(self.query.shape[:-1]))
        top = logits.detach().amax(-1)
        self._merge(logits.sub_(top.unsqueeze(-1)).clamp_min_(self.floor).exp_() @ values, top)

    def _merge(self, part: Tensor, shift: Tensor) -> None:
        """Add part = sum e^{l_i - shift} [v_i, 1] to the state and renormalise."""
        if self.m is None:
            acc, m = part, shift
        else:
            m = torch.maximum(self.m, shift)
            acc = self.acc * torch.exp(self.m - m).unsqueeze(-1) + part * torch.exp(shift - m).unsqueeze(-1)
        norm = acc[..., -1:].detach()  # a constant like m, so every block keeps the weights e^{l - m}
        self.acc = acc / norm
        self.m = m + norm.squeeze(-1).log()

    def mean(self) -> Tensor:
        return self.acc[..., :-1] / self.acc[..., -1:]


def _reuse(query: Tensor) -> bool:
    return not (torch.is_grad_enabled() and query.requires_grad)


class EmpiricalDenoiser(nn.Module):
    """Exact posterior mean when x_0 is uniform over the N training images x_i:

        x0_hat = sum_i w_i x_i,   w_i = softmax_i(-|x_t - (1 - t) x_i|^2 / (2 t^2)).

    Two matrix products per chunk of training images; cost 2 B N (2 D + 3) flops for B queries of D
    values. At t -> 0 it returns the nearest training image.
    """

    radius = None

    def __init__(self, train_images, chunk: int | None = None, dtype: torch.dtype = torch.float64):
        super().__init__()
        images = _train_images(train_images, dtype)
        flat = images.flatten(1)
        ones = torch.ones(len(flat), 1, dtype=dtype)
        # rows [|x_i|^2, x_i, 1]: all of it gives the logits, the last D + 1 columns the weighted sums
        self.register_buffer("table", torch.cat([flat.square().sum(1, keepdim=True), flat, ones], 1))
        self.image_shape = tuple(images.shape[1:])
        self.chunk = _check_chunk(chunk)

    def forward(self, x_t: Tensor, t, label=None) -> Tensor:
        y, t = _inputs(x_t, t, self.image_shape, self.table)
        y = y.flatten(1)
        scale, offset = _logit_coefficients(t)
        query = torch.cat([offset[:, None], y * scale[:, None]], 1)
        mean = RunningMean(query, _reuse(query))
        for block in self.table.split(_chunk(self.chunk, len(y))):
            mean.add(block.T, block[:, 1:])
        return mean.mean().reshape(x_t.shape).to(device=x_t.device, dtype=x_t.dtype)


class PatchPosteriorDenoiser(nn.Module):
    """Local score machine of radius r (Kamb & Ganguli): each pixel p is the posterior mean of the centre
    pixel of candidate patches, weighted by the query patch P_p(x_t) of side 2r + 1:

        x0_hat[p] = sum_c w_c centre(c),   w_c = softmax_c(-|P_p(x_t) - (1 - t) c|^2 / (2 t^2)),

    with candidates c = P_p(x_i) for ``locations="same"`` (LS: the same location in every training image)
    or c = P_p'(x_i) for every location p' (``"all"``, ELS: translation-equivariant). Patches are zero-padded
    at the border, alike for queries and candidates; each patch holds all C channels and the output at p
    gets all channels of the centre. The output at p depends only on P_p(x_t): strictly local, radius r.
    If r >= max(H, W) - 1, every patch holds the whole image and "same" equals `EmpiricalDenoiser`.

    Candidates are gathered from a table of rows over the training images (pixels, a zero row, patch
    norms |P_p(x_i)|^2, a ones row: (D + P + 2) N values, about 2x the images in float64) into a block
    (K + 2 rows: norm, patch, ones) per pixel row and ``chunk`` images, at a cost of about 1 / (2B) of the
    matrix products. Cost per call, K = C (2r + 1)^2, P = H W: "same" 2 B P N (K + C + 3) flops, with W B
    chunk logits at a time; "all" 2 B P (P N) (K + C + 3) flops, P times more.
    """

    def __init__(self, train_images, radius: int, locations: str = "same", chunk: int | None = None,
                 dtype: torch.dtype = torch.float64):
        super().__init__()
        images = _train_images(train_images, dtype)
        n, channels, height, width = images.shape
        self.radius = _radius(radius, height, width)
        if locations not in ("same", "all"):
            raise PhasediffError(f"locations must be 'same' or 'all', got {locations!r}")
        self.locations = locations
        self.chunk = _check_chunk(chunk)
        self.image_shape = (channels, height, width)
        pixels, dim, side = height * width, channels * height * width, 2 * self.radius + 1
        patch = _patch_index(self.image_shape, self.radius)
        centre = torch.arange(channels) * side**2 + side**2 // 2
        keep = torch.ones(patch.shape[1], dtype=torch.bool)
        keep[centre] = False
        patch = torch.cat([patch[:, keep], patch[:, centre]], 1)  # the C centre values last
        sums = F.avg_pool2d(images.square().sum(1, keepdim=True), side, 1, self.radius, divisor_override=1)
        ones, zeros = torch.ones(1, n, dtype=dtype), torch.zeros(1, n, dtype=dtype)
        rows = torch.cat([images.reshape(n, dim).T, zeros, sums.reshape(n, pixels).T, ones])
        index = torch.cat([dim + 1 + torch.arange(pixels)[:, None], patch, torch.full((pixels, 1), len(rows) - 1)], 1)
        self.register_buffer("rows", rows)  # (D + P + 2, N)
        self.register_buffer("patch_index", patch)  # (P, K) into the pixels, D: outside
        self.register_buffer("index", index)  # (P, K + 2) rows of a candidate: norm, patch, ones

    def extra_repr(self) -> str:
        return f"radius={self.radius}, locations={self.locations!r}, train={self.rows.shape[1]}"

    def forward(self, x_t: Tensor, t, label=None) -> Tensor:
        x, t = _inputs(x_t, t, self.image_shape, self.rows)
        x = x.flatten(1)
        batch, pixels = len(x), len(self.index)
        scale, offset = _logit_coefficients(t)
        patches = F.pad(x, (0, 1))[:, self.patch_index] * scale[:, None, None]  # (B, P, K)
        query = torch.cat([offset[:, None, None].expand(batch, pixels, 1), patches], -1)
        out = self._same(query) if self.locations == "same" else self._all(query)  # (B, C, P)
        return out.reshape(x_t.shape).to(device=x_t.device, dtype=x_t.dtype)

    def _blocks(self, index: Tensor, chunk: int, scratch: _Scratch):
        """Candidate blocks (len(index), n) of ``chunk`` training images: rows ``index`` of the table."""
        train = self.rows.shape[1]
        for start in range(0, train, chunk):
            block = self.rows[:, start:start + chunk]
            yield torch.index_select(block, 0, index, out=scratch(len(index), block.shape[1]))

    def _same(self, query: Tensor) -> Tensor:
        """One stream per pixel row: bmm over its W pixels of (B, K + 2) @ (K + 2, chunk)."""
        batch, (channels, height, width) = len(query), self.image_shape
        query, reuse = query.transpose(0, 1), _reuse(query)  # (P, B, K + 1)
        chunk, scratch = _chunk(self.chunk, width * batch), _Scratch(self.rows, reuse)
        out = []
        for h in range(height):
            pixels = slice(h * width, (h + 1) * width)
            mean = RunningMean(query[pixels], reuse)
            for cand in self._blocks(self.index[pixels].reshape(-1), chunk, scratch):
                cand = cand.view(width, self.index.shape[1], -1)
                mean.add(cand, cand[:, -channels - 1:].transpose(1, 2))
            out.append(mean.mean())  # (W, B, C)
        return torch.cat(out).permute(1, 2, 0)

    def _all(self, query: Tensor) -> Tensor:
        """Streams of query rows (b, p) against the patches of every location of ``chunk`` images."""
        batch, channels, pixels = len(query), self.image_shape[0], len(self.index)
        query, reuse = query.reshape(batch * pixels, -1), _reuse(query)
        chunk = self.chunk or max(1, LOGIT_BLOCK // pixels**2)
        rows = max(1, LOGIT_BLOCK // (pixels * chunk))
        scratch = _Scratch(self.rows, reuse)
        out = []
        for start in range(0, len(query), rows):
            mean = RunningMean(query[start:start + rows], reuse)
            for cand in self._blocks(self.index.T.reshape(-1), chunk, scratch):
                cand = cand.view(self.index.shape[1], -1)  # columns (p', i)
                mean.add(cand, cand[-channels - 1:].T)
            out.append(mean.mean())
        return torch.cat(out).reshape(batch, pixels, channels).transpose(1, 2)


def _gaussian(mean, covariance) -> tuple[Tensor, Tensor]:
    """Validated float64 mean (D,) and symmetrised covariance (D, D)."""
    mean = torch.as_tensor(mean, dtype=torch.float64)
    covariance = torch.as_tensor(covariance, dtype=torch.float64)
    if mean.ndim != 1 or covariance.shape != (len(mean), len(mean)) or len(mean) < 1:
        raise PhasediffError(f"need mean (D,) and covariance (D, D), got {tuple(mean.shape)} and "
                             f"{tuple(covariance.shape)}")
    if not bool(torch.isfinite(mean).all() & torch.isfinite(covariance).all()):
        raise PhasediffError("mean and covariance must be finite")
    scale = float(covariance.abs().max()) or 1.0
    if not torch.allclose(covariance, covariance.T, rtol=0, atol=1e-8 * scale):
        raise PhasediffError("covariance must be symmetric")
    return mean, (covariance + covariance.T) / 2


def _moments(train_images) -> tuple[Tensor, Tensor, tuple[int, ...]]:
    """Mean and covariance (divided by N: the moments of the empirical distribution) of flattened images."""
    images = _train_images(train_images, torch.float64)
    flat = images.flatten(1)
    mean = flat.mean(0)
    centred = flat - mean
    return mean, centred.T @ centred / len(flat), tuple(images.shape[1:])


def _eigh(covariance: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues (rounding errors below 0 clipped) and eigenvectors of covariance matrices (batched)."""
    values, vectors = torch.linalg.eigh(covariance)
    if bool((values.amin(-1) < -1e-8 * values.amax(-1).clamp(min=1e-300)).any()):
        raise PhasediffError("covariance must be positive semi-definite")
    return values.clamp(min=0), vectors


def _gain(values: Tensor, t: Tensor) -> Tensor:
    """Spectral Wiener gain (1 - t) l / ((1 - t)^2 l + t^2) of eigenvalues l (..., n) at times t (B, 1...)."""
    return signal_scale(t) * values / noised_variance(values, t)


def velocity_gain(values: Tensor, t: Tensor) -> Tensor:
    """(1 - gain) / t = (t - (1 - t) l) / ((1 - t)^2 l + t^2): the Wiener velocity's spectral gain, finite at
    t = 0 and for l = 0 (the denominator floored at 1e-12)."""
    return (t - signal_scale(t) * values) / noised_variance(values, t).clamp_min(1e-12)


def spectral_filter(x: Tensor, mean: Tensor, vectors: Tensor, gain: Tensor, t: Tensor) -> Tensor:
    """V diag(gain) V^T (x - (1 - t) mu) for flat x (B, D), t (B, 1): the product both Wiener forms share."""
    return ((x - signal_scale(t) * mean) @ vectors * gain) @ vectors.T


class WienerDenoiser(nn.Module):
    """Exact posterior mean for Gaussian data x_0 ~ N(mu, S) (the best linear denoiser for any data):

        x0_hat = mu + (1 - t) S ((1 - t)^2 S + t^2 I)^{-1} (x_t - (1 - t) mu)
               = mu + V diag((1 - t) l / ((1 - t)^2 l + t^2)) V^T (x_t - (1 - t) mu),   S = V diag(l) V^T.

    S is diagonalised once, so every t (and a different t per batch element) costs two products with V.
    """

    radius = None

    def __init__(self, mean, covariance, image_shape: tuple[int, ...] | None = None):
        super().__init__()
        mean, covariance = _gaussian(mean, covariance)
        if image_shape is not None and math.prod(image_shape) != len(mean):
            raise PhasediffError(f"image shape {tuple(image_shape)} does not hold {len(mean)} values")
        self.image_shape = None if image_shape is None else tuple(image_shape)
        values, vectors = _eigh(covariance)
        self.register_buffer("mean", mean)
        self.register_buffer("eigenvalues", values)
        self.register_buffer("eigenvectors", vectors)

    @classmethod
    def fit(cls, train_images) -> WienerDenoiser:
        """Wiener denoiser of the training images' mean and covariance."""
        mean, covariance, shape = _moments(train_images)
        return cls(mean, covariance, shape)

    def forward(self, x_t: Tensor, t, label=None) -> Tensor:
        x, t = _inputs(x_t, t, self.image_shape, self.mean)
        x, t = x.flatten(1), t[:, None]
        if x.shape[1] != len(self.mean):
            raise PhasediffError(f"x_t holds {x.shape[1]} values per image, the Wiener model {len(self.mean)}")
        out = self.mean + spectral_filter(x, self.mean, self.eigenvectors, _gain(self.eigenvalues, t), t)
        return out.reshape(x_t.shape).to(device=x_t.device, dtype=x_t.dtype)


class LocalWienerDenoiser(nn.Module):
    """Linear MMSE estimate of each pixel p (all channels) from x_t on its neighbourhood N(p) only, all
    channels of the pixels within Chebyshev distance r of p, clipped at the border:

        x0_hat[p] = mu_p + (1 - t) S_{p,N} ((1 - t)^2 S_NN + t^2 I)^{-1} (x_t[N] - (1 - t) mu_N).

    Since p lies in N(p), with S_NN = U diag(l) U^T this is mu_p + U_p diag(gain(l)) U^T (x_t[N] - (1 - t)
    mu_N) (U_p: the rows of p), so each block is diagonalised once and any t is two small products.
    Neighbourhoods are padded to the largest size with an index to a zero entry (variance 0, gain 0).
    Memory P n^2 for n = C (2r + 1)^2: meant for small r; r >= max(H, W) - 1 equals `WienerDenoiser`.
    """

    def __init__(self, mean, covariance, image_shape: tuple[int, int, int], radius: int):
        super().__init__()
        mean, covariance = _gaussian(mean, covariance)
        if len(image_shape) != 3 or math.prod(image_shape) != len(mean):
            raise PhasediffError(f"image shape (C, H, W) {tuple(image_shape)} does not hold {len(mean)} values")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.radius = _radius(radius, *self.image_shape[1:])
        index, centre = self._neighbourhoods()
        padded = F.pad(covariance, (0, 1, 0, 1))  # index dim: the zero entry
        values, vectors = _eigh(padded[index[:, :, None], index[:, None, :]])
        self.register_buffer("mean", mean)
        self.register_buffer("index", index)
        self.register_buffer("eigenvalues", values)  # (P, n)
        self.register_buffer("eigenvectors", vectors)  # (P, n, n)
        self.register_buffer("centre_rows", vectors[torch.arange(len(index))[:, None], centre])  # (P, C, n)
        self.register_buffer("padded_mean", F.pad(mean, (0, 1)))

    @classmethod
    def fit(cls, train_images, radius: int) -> LocalWienerDenoiser:
        """Local Wiener denoiser of the training images' mean and covariance."""
        mean, covariance, shape = _moments(train_images)
        return cls(mean, covariance, shape, radius)

    def extra_repr(self) -> str:
        return f"radius={self.radius}, image_shape={self.image_shape}"

    def _neighbourhoods(self) -> tuple[Tensor, Tensor]:
        """Flat indices (P, n) of each pixel's clipped neighbourhood (padded with index D, the zero entry),
        and where its C centre values sit in that list (P, C)."""
        (channels, height, width), dim = self.image_shape, math.prod(self.image_shape)
        patch = _patch_index(self.image_shape, self.radius)
        order = torch.argsort((patch == dim).to(torch.int8), dim=1, stable=True)
        index = patch.gather(1, order)[:, : int((patch < dim).sum(1).max())]
        targets = torch.arange(height * width)[:, None] + torch.arange(channels)[None] * height * width
        centre = (index[:, None, :] == targets[:, :, None]).to(torch.int8).argmax(-1)
        return index, centre

    def forward(self, x_t: Tensor, t, label=None) -> Tensor:
        x, t = _inputs(x_t, t, self.image_shape, self.mean)
        x = x.flatten(1)
        channels = self.image_shape[0]
        pixels = len(self.index)
        centred = F.pad(x, (0, 1))[:, self.index] - signal_scale(t)[:, None, None] * self.padded_mean[self.index]
        out = x.new_empty(len(x), pixels, channels)
        for time in torch.unique(t):
            rows = t == time
            gain = (self.centre_rows * _gain(self.eigenvalues, time)[:, None, :]) @ self.eigenvectors.transpose(1, 2)
            out[rows] = torch.einsum("pcj,bpj->bpc", gain, centred[rows])
        out = out.transpose(1, 2).reshape(len(x), -1) + self.mean
        return out.reshape(x_t.shape).to(device=x_t.device, dtype=x_t.dtype)
