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

Under ``torchrun`` (gloo for the CPU tensors the estimator trains on, nccl beside it where CUDA is present) a
``team`` of processes trains one network data-parallel: each step's batch is drawn as by one process and each
takes its slice of it (so the effective batch is config.batch), and the gradients are averaged (all-reduce).
The validation images are split between the processes and their sums added in rank order, and the time budget is
read on the slowest clock, so that every process takes the same steps and keeps the same best weights.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from phasediff.errors import PhasediffError
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


ALONE = (0, 1)  # the team of a process that trains by itself


def world() -> tuple[int, int]:
    """(rank, number of processes) of the ``torchrun`` this process is part of, ALONE outside one; the process
    group starts on first use (gloo, with nccl for CUDA tensors where CUDA is present), as in `phasediff train`.
    A ``team`` below is ALONE or world(): all the processes."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    return int(os.environ.get("RANK", "0")), size


def leave_world() -> None:
    """Tear the process group down, if one started (explicitly: at the interpreter's exit it can abort)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def _gathered(values: torch.Tensor, team: tuple[int, int]) -> torch.Tensor:
    """(processes, ...): every member's ``values`` in rank order, the same bits on each member."""
    if team[1] == 1:
        return values[None]
    parts = [torch.empty_like(values) for _ in range(team[1])]
    dist.all_gather(parts, values)
    return torch.stack(parts)


def gathered_objects(obj, team: tuple[int, int]) -> list:
    """Every member's ``obj`` (anything picklable) in rank order, on each member."""
    if team[1] == 1:
        return [obj]
    out = [None] * team[1]
    dist.all_gather_object(out, obj)
    return out


def shared(obj, team: tuple[int, int]):
    """The first member's ``obj`` (anything picklable) on every member."""
    if team[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _team_mean(total: float, count: int, team: tuple[int, int]) -> float:
    """sum(total) / sum(count) over the members, added in rank order (the same value on each)."""
    sums = _gathered(torch.tensor([total, count], dtype=torch.float64), team).sum(0)
    return float(sums[0] / sums[1])


def _average_gradients(net, processes: int) -> None:
    """Each gradient replaced by its mean over the processes (one all-reduce; a missing gradient counts as 0)."""
    params = [p for p in net.parameters() if p.requires_grad]
    flat = torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= processes
    for p, grad in zip(params, flat.split([p.numel() for p in params])):
        p.grad = grad.view_as(p)


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


def validation_loss(net, head, standardise, x0, t, z, batch: int = 512, team: tuple[int, int] = ALONE) -> float:
    """Mean over the images of the cross-entropy of A (mean over radii); a team splits the images (member k takes
    k, k + processes, ...) and adds the members' sums in rank order, so that each member gets the same value."""
    rule, device = hermite_rule(TRAIN_NODES), next(net.parameters()).device
    rank, size = team
    x0, t, z = x0[rank::size], t[rank::size], z[rank::size]
    net.eval()
    with torch.no_grad():
        total = sum(float(image_nll(net, head, standardise, x0[i: i + batch].to(device), t[i: i + batch].to(device),
                                    z[i: i + batch].to(device), rule).sum(-1).mean(-1).sum())
                    for i in range(0, len(x0), batch))
    net.train()
    return _team_mean(total, len(x0), team)


def validation_loss_at(net, head, standardise, x_val: torch.Tensor, t: float, seed: int,
                       team: tuple[int, int] = ALONE) -> float:
    """The validation cross-entropy at t alone that ``train(..., seed=seed, fixed_t=t, team=team)`` compares
    against."""
    val_t, val_z = _validation_set(x_val, seed + 1, t)
    loss = validation_loss(net, head, standardise, x_val, val_t, val_z, team=team)
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
          seed: int = 0, fixed_t: float | None = None, team: tuple[int, int] = ALONE) -> dict:
    """Fit ``net`` in place (keeping the best validation weights); returns the training history (``train``:
    the running training loss at A over each validation interval, ``loss_at_a``).

    With ``fixed_t``: the specialisation at that t (config.specialise steps at config.specialise_lr). With a
    ``team`` of processes (world()), data-parallel: every member starts from the same weights and leaves with
    the first member's.
    """
    check_precision(config.precision)
    rank, size = team
    g = torch.Generator().manual_seed(seed)
    val_t, val_z = _validation_set(x_val, seed + 1, fixed_t)
    batch = min(config.batch, len(x_train))
    if batch % size:
        raise PhasediffError(f"the batch of {batch} images must be divisible by the {size} processes")
    mine = slice(rank * batch // size, (rank + 1) * batch // size)  # this member's share of each batch
    steps_per_epoch = max(1, len(x_train) // batch)
    total = max(1, int(round(config.epochs * steps_per_epoch)) if fixed_t is None else config.specialise)
    warm = max(1, int(config.warmup * total))
    start, elapsed = time.perf_counter(), 0.0  # elapsed: seconds on the team's slowest clock, read every step

    def done(k: int) -> float:
        """Fraction of the run behind us: of the steps, or of the time budget if that is further along."""
        return max(k / total, 0.0 if config.budget is None else elapsed / config.budget)

    lr = config.lr if fixed_t is None else config.specialise_lr
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min((k + 1) / warm, 0.5 * (1 + math.cos(math.pi * min(done(k), 1.0)))))
    rule = hermite_rule(TRAIN_NODES)
    best = (validation_loss(net, head, standardise, x_val, val_t, val_z, team=team), 0)
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
        x0 = x_train[order[cursor: cursor + batch][mine]]
        cursor += batch
        t = _times(batch, g, fixed_t)[mine]
        z = torch.randn((batch,) + x0.shape[1:], generator=g)[mine]
        pool = net.config.pool
        shift = torch.randint(-pool, pool + 1, (batch, 2), generator=g)[mine] if pool else None
        with autocast(config.precision, x0.device.type):
            nll = image_nll(net, head, standardise, x0, t, z, rule, shift).float()
            loss = nll.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if size > 1:
            _average_gradients(net, size)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        if config.budget is not None:
            elapsed = float(_gathered(torch.tensor([time.perf_counter() - start], dtype=torch.float64), team).max())
        schedule.step()
        running.append(loss_at_a(nll.detach(), shift))
        out_of_time = config.budget is not None and done(step) >= 1
        if step % config.eval_every == 0 or step == total or out_of_time:
            val = validation_loss(net, head, standardise, x_val, val_t, val_z, team=team)
            seen = torch.cat(running).double()
            history["step"].append(step)
            history["val"].append(val)
            history["train"].append(_team_mean(float(seen.sum()), len(seen), team))
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
    if size > 1:  # the members agree already, up to the order in which the all-reduce adds
        for tensor in net.state_dict().values():
            dist.broadcast(tensor, src=0)
    net.eval()
    history.update(best_step=best[1], best_val=best[0], steps=step, stop=stop,
                   seconds=time.perf_counter() - start, steps_per_epoch=steps_per_epoch)
    return history
