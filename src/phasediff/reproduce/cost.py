"""The expected cost of the stages that will run, printed before they run.

Each step module's ``workload(stage)`` counts its work: image-evaluations of each checkpoint it runs and, for
the neural CMI estimator, training steps and held-out evaluations. This module times those units on this
machine (a forward pass of each checkpoint on a batch, a few training steps and evaluations of the estimator's
network on the real data) and multiplies. It is an estimate: the judge's features, bootstraps, figures and
the data's loading are not counted, and a chained CMI link that is retrained costs twice.
"""

from __future__ import annotations

import time
from pathlib import Path

from phasediff.reproduce import cache
from phasediff.reproduce.stages import (
    Options,
    Stage,
    data_identity,
    key_inputs,
    stage_key,
)

BATCH = 64


def expected_cost(stages: list[Stage], options: Options, out: Path, spec: str) -> tuple[str, dict]:
    """(one line, {stage: seconds or None}) for the stages that are neither skipped nor already finished in
    ``out`` (keys predicted as if every earlier stage finishes; ``spec``: the data of stages without their own)."""
    keys: dict[str, str | None] = {}
    pending = []
    for stage in stages:
        if stage.skip is not None:
            continue
        key = stage_key(key_inputs(stage, data_identity(stage.settings.get("spec", spec)), keys))
        keys[stage.name] = key
        if cache.finished(cache.stage_dir(out, stage.name, key)) is None:
            pending.append(stage)
    if not pending:
        return "expected cost: nothing to compute (every stage is finished or skipped)", {}
    speeds: dict[tuple[str, str], float] = {}
    estimates = {}
    for stage in pending:
        work = stage.step().workload(stage)
        seconds = 0.0
        for role, count in work.get("evaluations", {}).items():
            path = stage.checkpoints[role]
            key = (str(path), stage.settings.get("precision", "fp32"))
            if key not in speeds:
                speeds[key] = network_seconds(path, stage.settings.get("precision", "fp32"), options.device)
            seconds += count * speeds[key]
        if "cmi" in work:
            seconds += cmi_seconds(stage, work["cmi"])
        estimates[stage.name] = seconds + work.get("seconds", 0.0)
    total = sum(estimates.values())
    parts = ", ".join(f"{name} {_minutes(s)}" for name, s in estimates.items())
    return (f"expected cost: about {_minutes(total)} on this machine, a rough guess ({parts}; from timed forward "
            "passes and training steps at this moment's load, not counting data loading, sampling overhead and "
            "judging)"), estimates


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"


def network_seconds(path: Path, precision: str, device: str) -> float:
    """Seconds per image of one forward pass of a checkpoint (a batch of BATCH, the second of two passes)."""
    import torch

    from phasediff.denoisers.checkpoint import load, read_info
    from phasediff.precision import autocast

    model = load(path, device)
    shape = tuple(read_info(path).get("image_shape") or (1, 28, 28))
    x = torch.rand((BATCH, *shape), device=device)
    t = torch.full((BATCH,), 0.5, device=device)
    classifier = read_info(path).get("model", {}).get("arch") == "classifier"
    with torch.no_grad(), autocast(precision, torch.device(device).type):
        for _ in range(2):
            start = time.perf_counter()
            model(x) if classifier else model(x, t)
            seconds = time.perf_counter() - start
    return seconds / BATCH


def cmi_seconds(stage: Stage, work: dict) -> float:
    """Training steps and held-out evaluations of the neural estimator, timed on a few batches of the data."""
    import torch

    from phasediff.data.registry import load_dataset
    from phasediff.info.neural import choose_head, test_nll
    from phasediff.info.neural_net import Geometry, NetConfig, RingNet
    from phasediff.info.neural_train import Standardiser, TrainConfig, train
    from phasediff.regions import tripartition

    s = stage.settings
    data = load_dataset(s["spec"], n=min(s["n"] or 10**9, 1000), seed=s["seed"])
    x = torch.as_tensor(data.images)
    site = tripartition(data.shape[1:], 1).site
    head = choose_head(data.images, "auto", 8)
    net = RingNet(Geometry(tuple(data.shape), tuple(site), 1), head.n_outputs, NetConfig())
    standardise = Standardiser(float(x.mean()), float(x.std()) or 1.0)
    batch = min(128, len(x) // 6)
    config = TrainConfig(epochs=1.0, batch=batch, precision=s["profile"].get("precision", "fp32"), eval_every=1000)
    seconds = {}
    for steps in (1, 2, 5):  # a warm-up, then two runs whose difference removes the fixed cost of a run
        start = time.perf_counter()
        train(net, head, standardise, x[: steps * batch], x[-32:], config)
        seconds[steps] = time.perf_counter() - start
    per_step = max(seconds[5] - seconds[2], 0.0) / 3
    start = time.perf_counter()
    test_nll(net, head, standardise, x[:200], [0.5], 1, 0)
    per_evaluation = (time.perf_counter() - start) / 200
    return work["steps"] * per_step + work["evaluations"] * per_evaluation
