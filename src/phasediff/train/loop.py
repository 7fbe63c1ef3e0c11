"""The training loop shared by every network: AdamW, EMA weights, optional bf16 autocast, checkpoints
with resume, and data parallelism across processes launched by ``torchrun`` (gloo on CPU, nccl on GPU).

Run directory::

    model.safetensors, model.json   EMA weights for inference + sidecar (architecture, data, step, losses)
    state.pt                        resume state: raw weights, EMA, optimiser, torch RNG, step, settings
    log.jsonl                       one JSON row per logged step
    config.yaml                     settings, model and data

Every random draw of step k comes from a generator seeded by (seed, k) and is sliced per process, so a run
resumed from a checkpoint sees exactly the batches and noise of an uninterrupted one.

The first process holds the run directory's lock (`output_lock`) for the whole training: a second
``train --out`` of the same directory fails at once. Every file is written atomically except the log, which
grows by appended lines; a resumed run drops a last line torn by a crash.
"""

from __future__ import annotations

import copy
import json
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from phasediff.data.dataset import Dataset
from phasediff.denoisers.checkpoint import save
from phasediff.errors import PhasediffError
from phasediff.precision import autocast, check_precision
from phasediff.progress import progress
from phasediff.rundir import output_lock, save_yaml, write_atomic
from phasediff.specs import check_seed

VALIDATION_SEED = 12345


@dataclass
class TrainSettings:
    steps: int = 10_000
    batch_size: int = 128
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup: int = 200
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    checkpoint_every: int = 1000
    log_every: int = 50
    seed: int = 0
    precision: str = "fp32"
    device: str = "cpu"

    def check(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1 or self.log_every < 1:
            raise PhasediffError("steps, batch size, checkpoint and log intervals must be >= 1")
        if not self.lr > 0 or self.weight_decay < 0 or self.warmup < 0 or not 0 <= self.ema_decay < 1:
            raise PhasediffError("need lr > 0, weight_decay >= 0, warmup >= 0 and 0 <= ema_decay < 1")
        check_precision(self.precision)
        check_seed(self.seed)


class _LossModule(nn.Module):
    """net + objective as one module, so DistributedDataParallel sees the forward that makes the loss."""

    def __init__(self, net: nn.Module, objective):
        super().__init__()
        self.net, self.objective = net, objective

    def forward(self, draw: dict) -> torch.Tensor:
        return self.objective.loss(self.net, draw)


def _world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment, initialising the process group when needed."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return int(os.environ.get("RANK", "0")), world


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def _slice(draw: dict, rank: int, world: int, device: str) -> dict:
    """This process's share of a step's draw (every tensor in it is per sample), moved to the device."""
    out = {}
    for key, value in draw.items():
        if isinstance(value, torch.Tensor):
            part = len(value) // world
            value = value[rank * part : (rank + 1) * part].to(device)
        out[key] = value
    return out


@torch.no_grad()
def _update_ema(ema: nn.Module, net: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), net.parameters()):
        e.lerp_(p.detach(), 1 - decay)
    for e, b in zip(ema.buffers(), net.buffers()):
        e.copy_(b)


def _learning_rate(settings: TrainSettings, step: int) -> float:
    """Linear warm-up, then constant: the schedule does not depend on the total, so a run can be extended."""
    return settings.lr * min(1.0, (step + 1) / max(1, settings.warmup))


def _ema_decay(settings: TrainSettings, step: int) -> float:
    """EMA decay, warmed up as min(decay, (1 + step) / (10 + step)) so that early averages are not stale."""
    return min(settings.ema_decay, (1 + step) / (10 + step))


def _draw(objective, data: Dataset, settings: TrainSettings, step: int, seed: int) -> dict:
    generator = _step_generator(seed, step)
    index = torch.randint(0, len(data), (settings.batch_size,), generator=generator)
    images = torch.from_numpy(data.images[index.numpy()])
    labels = None if data.labels is None else torch.from_numpy(data.labels[index.numpy()])
    return objective.draw(images, labels, generator)


def _validation_loss(objective, net: nn.Module, data: Dataset, settings: TrainSettings) -> float:
    net.eval()
    with torch.no_grad():
        draw = _slice(_draw(objective, data, settings, 0, VALIDATION_SEED), 0, 1, settings.device)
        loss = float(objective.loss(net, draw))
    net.train()
    return loss


def _state(step, net, ema, optimizer, settings, model_config) -> dict:
    return {"step": step, "net": net.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(), "settings": asdict(settings), "model": model_config}


def _load_state(path: Path, settings: TrainSettings, model_config: dict) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is one clear message
        raise PhasediffError(f"cannot read the resume state {path}: {type(error).__name__}") from None
    if not isinstance(state, dict) or not {"step", "net", "ema", "optimizer", "settings", "model"} <= state.keys():
        raise PhasediffError(f"{path} is not a phasediff training state")
    if json.loads(json.dumps(state["model"])) != json.loads(json.dumps(model_config)):
        raise PhasediffError(f"{path} was written for another architecture; start a new run directory")
    saved = {k: v for k, v in state["settings"].items() if k not in ("steps", "checkpoint_every", "log_every")}
    current = {k: v for k, v in asdict(settings).items() if k not in ("steps", "checkpoint_every", "log_every")}
    if saved != current:
        changed = sorted(k for k in current if saved.get(k) != current[k])
        raise PhasediffError(f"{path} was trained with other settings ({', '.join(changed)}); resume needs the same")
    return state


def check_out(out: Path, resume: bool) -> None:
    """The run directory ``out`` must be a folder (or not exist yet) that holds a run exactly when resuming."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PhasediffError(f"{out} exists and is not a folder")
    state_path = out / "state.pt"
    if state_path.exists() and not resume:
        raise PhasediffError(f"{out} holds a training run; pass --resume to continue it or choose another --out")
    if resume and not state_path.exists():
        raise PhasediffError(f"nothing to resume in {out} (no state.pt)")


def train(net: nn.Module, objective, data: Dataset, settings: TrainSettings, out: Path, resume: bool = False,
          validation: Dataset | None = None, info: dict | None = None) -> dict:
    """Train ``net`` on ``data`` with ``objective``; returns a summary. ``info`` goes into the sidecar."""
    settings.check()
    out = Path(out)
    rank, world = _world()
    if settings.batch_size % world:
        raise PhasediffError(f"batch size {settings.batch_size} must be divisible by the {world} processes")
    check_out(out, resume)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with output_lock(out) if rank == 0 else nullcontext():
            check_out(out, resume)  # again, now that no other process can start a run here
            out.mkdir(exist_ok=True)
            return _train(net, objective, data, settings, out, resume, validation or data, info or {}, rank, world)
    finally:
        if world > 1 and dist.is_initialized():  # torn down here, not by the interpreter's exit, which can abort
            dist.destroy_process_group()


def _train(net: nn.Module, objective, data: Dataset, settings: TrainSettings, out: Path, resume: bool,
           validation: Dataset, info: dict, rank: int, world: int) -> dict:
    """The loop of `train` in the checked (and, on the first process, locked) run directory ``out``."""
    state_path = out / "state.pt"
    model_config = net.config()
    net.to(settings.device).train()
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    start = 0
    if resume:
        state = _load_state(state_path, settings, model_config)
        net.load_state_dict(state["net"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        start = int(state["step"])
    else:
        torch.manual_seed(settings.seed + rank)
    module = _LossModule(net, objective)
    if world > 1:
        module = nn.parallel.DistributedDataParallel(module)
    log_path = out / "log.jsonl"
    if rank == 0:
        save_yaml(out / "config.yaml", {"settings": asdict(settings), "model": model_config, **info})
        _truncate_log(log_path, start)
    mixed_precision = autocast(settings.precision, settings.device.split(":")[0])
    steps = range(start, settings.steps)
    bar = progress(steps, initial=start, total=settings.steps, desc="train", unit="step") if rank == 0 else steps
    began, loss_sum, loss_count, last = time.perf_counter(), 0.0, 0, {}
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(settings, step)
        draw = _slice(_draw(objective, data, settings, step, settings.seed), rank, world, settings.device)
        with mixed_precision:
            loss = module(draw)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.grad_clip > 0:
            nn.utils.clip_grad_norm_(net.parameters(), settings.grad_clip)
        optimizer.step()
        _update_ema(ema, net, _ema_decay(settings, step))
        loss_sum, loss_count = loss_sum + loss.item(), loss_count + 1
        done = step + 1
        if rank == 0 and (done % settings.log_every == 0 or done == settings.steps):
            last = {"step": done, "loss": loss_sum / loss_count, "lr": optimizer.param_groups[0]["lr"],
                    "seconds": time.perf_counter() - began}
            loss_sum, loss_count = 0.0, 0
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{last['loss']:.4f}")
            with open(log_path, "a") as handle:
                handle.write(json.dumps(last) + "\n")
        if done % settings.checkpoint_every == 0 or done == settings.steps:
            if rank == 0:
                val = _validation_loss(objective, ema, validation, settings)
                last = {**last, "val_loss": val}
                write_atomic(state_path, lambda tmp: torch.save(
                    _state(done, net, ema, optimizer, settings, model_config), tmp))
                save(out / "model", ema, {"step": done, "train_loss": last.get("loss"), "val_loss": val,
                                          "settings": asdict(settings), **info}, weights="ema")
            if world > 1:
                dist.barrier()
    return {"out": str(out), "step": settings.steps, "world_size": world, **{k: v for k, v in last.items()}}


def _log_rows(path: Path) -> list[tuple[str, int]]:
    """(line, step) of every row of a log. A last line that is not a JSON row was torn by a crash (full disk,
    power cut) and is dropped; a damaged line before it is an error."""
    lines = [line for line in path.read_bytes().decode(errors="replace").splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
            rows.append((line, int(row["step"])))
        except (ValueError, TypeError, KeyError):
            if number < len(lines):
                raise PhasediffError(f"{path}: line {number} is not a log row; repair or delete the log to "
                                     "resume") from None
    return rows


def _truncate_log(path: Path, step: int) -> None:
    """Keep the log rows of steps <= ``step`` (a resumed run rewrites what came after its checkpoint)."""
    if not path.exists():
        return
    rows = [line for line, logged in _log_rows(path) if logged <= step]
    write_atomic(path, lambda tmp: tmp.write_text("".join(row + "\n" for row in rows)))
