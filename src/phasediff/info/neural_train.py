"""Training of the neural CMI network: the held-out cross-entropy of x_t,A given every radius at once.

Loss of one image at time t: the mean over radii r = 0..D and elements i of A of
E_z[-log p_t(x_t,A_i | context of radius r, x_t,A_<i)] (quadrature over the element's own noise; fresh noise
on every other pixel at every step). t is 0 for a fraction ZERO_T_FRACTION of the images (the discrete
cross-entropy of a categorical head) and stratified uniform on (0, 1] for the rest. With site pooling
(NetConfig.pool) each training image is read at a random site near A; validation is at A alone. AdamW with a short
warm-up and a cosine decay (over the steps, or over the time budget when that ends first); the validation
cross-entropy (fixed images, t grid and noise) is checked every ``eval_every`` steps and the best weights
are kept; training stops after ``patience`` checks without gain.

Specialisation (``specialise``): a copy of the trained network is trained further at one t alone
(``specialise`` steps at ``specialise_lr``, validation at that t), which sharpens what the amortised network
learns slowly at each t: the posterior given a wide context, whose cross-entropy excess grows with r.
A specialisation runs all its steps (no early stopping): it starts from a network that is already good at
that t, so its fresh optimiser first loses ground that it only wins back once the learning rate decays.
With ``specialise_chain`` the measured t are taken from the largest down, each copy starting from the
previous one, so the low t, where the context matters most, inherit every specialisation above them; a link
that ends no better than the amortised network at its t (the previous copy may have unlearned a context that
matters again at lower t) or that memorises the training images is retrained from it (neural.cross_entropies).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from phasediff.info.neural_density import expected_nll, hermite_rule
from phasediff.info.neural_net import translate
from phasediff.paths import add_noise, noised_variance, signal_scale
from phasediff.precision import autocast, check_precision
from phasediff.progress import progress

ZERO_T_FRACTION = 1 / 16
TRAIN_NODES = 12  # Gauss-Hermite nodes for the training loss (evaluation uses more)
VAL_TIMES = np.linspace(0.0, 1.0, 11)[:-1]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (part of the cache key)."""

    epochs: float = 12.0
    batch: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: float = 0.03
    eval_every: int = 200
    patience: int = 6
    budget: float | None = None  # seconds; a hard stop that makes the result depend on the machine's speed
    precision: str = "fp32"  # "bf16": autocast for the training passes (validation and test stay in fp32)
    specialise: int = 0  # steps of further training at each measured t alone (0: the amortised network only)
    specialise_lr: float = 1e-3
    specialise_chain: bool = False  # start each t's specialisation from the one at the next larger t

    def __post_init__(self):
        """Real-valued settings as floats, so that epochs=4 and epochs=4.0 share a cache key."""
        for name in ("epochs", "lr", "weight_decay", "warmup", "specialise_lr"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.budget is not None:
            object.__setattr__(self, "budget", float(self.budget))

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Standardiser:
    """x_t -> (x_t - (1 - t) mu) / sqrt((1 - t)^2 sigma^2 + t^2): unit scale at every t for the network input."""

    mu: float
    sigma: float

    def __call__(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.reshape((-1,) + (1,) * (xt.dim() - 1))
        return (xt - signal_scale(t) * self.mu) / torch.sqrt(noised_variance(self.sigma**2, t))


def image_nll(net, head, standardise: Standardiser, x0: torch.Tensor, t: torch.Tensor, z: torch.Tensor,
              rule, shift: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image cross-entropy (B, D + 1, m) for every radius and element of A, noise z on all pixels; with
    ``shift`` (B, 2), of the site A + shift of each image (site pooling: neural_net.translate)."""
    b = len(x0)
    xt = add_noise(x0, t.reshape(-1, 1, 1, 1), z)
    x = standardise(xt, t)
    valid = None
    if shift is not None:
        (x, valid), (x0, _) = translate(x, shift), translate(x0, shift)
    target = x.reshape(b, -1)[:, net.target_index]
    out = net(x, t, target, valid=valid, shift=shift)  # bf16 under autocast; expected_nll takes the density in fp32
    x0_a = x0.reshape(b, -1)[:, net.target_index][:, None, :]  # (B, 1, m): the same target for every radius
    return expected_nll(head, out, x0_a, t[:, None, None], rule, scale=standardise.sigma, offset=standardise.mu)


def _validation_set(x0: torch.Tensor, seed: int, fixed_t: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed t (cycling over VAL_TIMES, or ``fixed_t``) and a fixed noise draw per validation image."""
    g = torch.Generator().manual_seed(seed)
    times = VAL_TIMES if fixed_t is None else [fixed_t]
    t = torch.tensor(times, dtype=torch.float32).repeat(len(x0) // len(times) + 1)[: len(x0)]
    return t, torch.randn(x0.shape, generator=g)


def validation_loss(net, head, standardise, x0, t, z, batch: int = 512) -> float:
    rule = hermite_rule(TRAIN_NODES)
    net.eval()
    with torch.no_grad():
        total = sum(float(image_nll(net, head, standardise, x0[i: i + batch], t[i: i + batch], z[i: i + batch],
                                    rule).sum(-1).mean(-1).sum()) for i in range(0, len(x0), batch))
    net.train()
    return total / len(x0)


def validation_loss_at(net, head, standardise, x_val: torch.Tensor, t: float, seed: int) -> float:
    """The validation cross-entropy at t alone that ``train(..., seed=seed, fixed_t=t)`` compares against."""
    val_t, val_z = _validation_set(x_val, seed + 1, t)
    loss = validation_loss(net, head, standardise, x_val, val_t, val_z)
    net.eval()
    return loss


def _times(n: int, g: torch.Generator, fixed_t: float | None = None) -> torch.Tensor:
    """Stratified uniform t on (0, 1], with a fraction ZERO_T_FRACTION set to exactly 0 (or all ``fixed_t``)."""
    if fixed_t is not None:
        return torch.full((n,), float(fixed_t))
    t = 1 - (torch.randperm(n, generator=g) + torch.rand(n, generator=g)) / n
    return torch.where(torch.rand(n, generator=g) < ZERO_T_FRACTION, torch.zeros_like(t), t)


def loss_at_a(nll: torch.Tensor, shift: torch.Tensor | None) -> torch.Tensor:
    """Per-image training loss (mean over radii and elements of A) of the images read at A itself: with site
    pooling only those with shift 0, so that the training loss compares with the validation at A."""
    per_image = nll.mean((1, 2))
    return per_image if shift is None else per_image[(shift == 0).all(1)]


def train(net, head, standardise: Standardiser, x_train: torch.Tensor, x_val: torch.Tensor, config: TrainConfig,
          seed: int = 0, fixed_t: float | None = None) -> dict:
    """Fit ``net`` in place (keeping the best validation weights); returns the training history (``train``:
    the running training loss at A over each validation interval, ``loss_at_a``).

    With ``fixed_t``: the specialisation at that t (config.specialise steps at config.specialise_lr).
    """
    check_precision(config.precision)
    g = torch.Generator().manual_seed(seed)
    val_t, val_z = _validation_set(x_val, seed + 1, fixed_t)
    batch = min(config.batch, len(x_train))
    steps_per_epoch = max(1, len(x_train) // batch)
    total = max(1, int(round(config.epochs * steps_per_epoch)) if fixed_t is None else config.specialise)
    warm = max(1, int(config.warmup * total))
    start = time.perf_counter()

    def done(k: int) -> float:
        """Fraction of the run behind us: of the steps, or of the time budget if that is further along."""
        return max(k / total, 0.0 if config.budget is None else (time.perf_counter() - start) / config.budget)

    lr = config.lr if fixed_t is None else config.specialise_lr
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min((k + 1) / warm, 0.5 * (1 + math.cos(math.pi * min(done(k), 1.0)))))
    rule = hermite_rule(TRAIN_NODES)
    best = (validation_loss(net, head, standardise, x_val, val_t, val_z), 0)
    best_state = {k: v.clone() for k, v in net.state_dict().items()}
    history = {"step": [0], "val": [best[0]], "train": [float("nan")]}
    running, stop = [], "epochs"
    order = torch.randperm(len(x_train), generator=g)
    cursor = 0
    desc = "training CMI network" if fixed_t is None else f"specialising at t = {fixed_t:g}"
    bar = progress(range(1, total + 1), desc=desc, unit="step")
    for step in bar:
        if cursor + batch > len(order):
            order, cursor = torch.randperm(len(x_train), generator=g), 0
        x0 = x_train[order[cursor: cursor + batch]]
        cursor += batch
        t = _times(batch, g, fixed_t)
        z = torch.randn(x0.shape, generator=g)
        pool = net.config.pool
        shift = torch.randint(-pool, pool + 1, (batch, 2), generator=g) if pool else None
        with autocast(config.precision, x0.device.type):
            nll = image_nll(net, head, standardise, x0, t, z, rule, shift).float()
            loss = nll.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        schedule.step()
        running.append(loss_at_a(nll.detach(), shift))
        out_of_time = config.budget is not None and done(step) >= 1
        if step % config.eval_every == 0 or step == total or out_of_time:
            val = validation_loss(net, head, standardise, x_val, val_t, val_z)
            history["step"].append(step)
            history["val"].append(val)
            history["train"].append(float(torch.cat(running).double().mean()))
            running = []
            bar.set_postfix(val=f"{val:.4f}")
            if val < best[0]:
                best = (val, step)
                best_state = {k: v.clone() for k, v in net.state_dict().items()}
            elif fixed_t is None and (step - best[1]) >= config.patience * config.eval_every:
                stop = "early stopping"
                break
            if out_of_time:
                stop = "time budget"
                break
    net.load_state_dict(best_state)
    net.eval()
    history.update(best_step=best[1], best_val=best[0], steps=step, stop=stop,
                   seconds=time.perf_counter() - start, steps_per_epoch=steps_per_epoch)
    return history
